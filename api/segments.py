"""Image segments (SLIC superpixels) of an interpreted image, for the page's one-click segment fill.

Computed on the server (scikit-image) from the job's after.png preview - the grid the page annotates -
once per job and segment size, then kept beside the job's files. Sent as a 16-bit greyscale PNG of
segment numbers (0..n-1): a file any tool reads, and the page decodes exactly.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from landsentry.models.vocabulary.atomic import write_atomic

SEGMENT_PIXELS = {"small": 100, "medium": 400, "large": 1600}
"""Sizes the page offers: about this many pixels per segment."""
MAX_SEGMENTS = 65_000  # segment numbers fit a 16-bit PNG


def slic_segments(image: np.ndarray, pixels_per_segment: int) -> np.ndarray:
    """H x W uint16 segment numbers of an H x W (x 3) uint8 image; each segment is one connected patch."""
    from skimage.segmentation import slic

    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    height, width = rgb.shape[:2]
    n = int(min(MAX_SEGMENTS, max(1, height * width // pixels_per_segment)))
    labels = slic(rgb, n_segments=n, compactness=10.0, start_label=0, channel_axis=-1)
    if labels.max() >= 1 << 16:
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    return labels.astype(np.uint16)


def segments_png(job_dir: Path, size: str) -> Path:
    """JOB/segments/slic-SIZE.png, computed on first use from JOB/out/after.png."""
    path = job_dir / "segments" / f"slic-{size}.png"
    if not path.is_file():
        with Image.open(job_dir / "out" / "after.png") as picture:
            image = np.asarray(picture.convert("L" if picture.mode in ("L", "I;16", "I") else "RGB"))
        labels = slic_segments(image, SEGMENT_PIXELS[size])
        buffer = io.BytesIO()
        Image.fromarray(labels).save(buffer, format="PNG")
        write_atomic(path, buffer.getvalue())
    return path
