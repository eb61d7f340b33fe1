"""Per-class scores of a segmentation predictor on whole labelled images, tiled exactly as inference tiles them."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from landsentry.models.data.metrics import ConfusionMatrix
from landsentry.models.inference.runner import Predictor

LabelledImage = tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]
"""(uint8 C x H x W image, H x W schema ids with IGNORE_INDEX), as numpy arrays or CPU tensors."""


def source_of(record_source: str) -> str:
    """The dataset a record comes from ('dubai/t8/x' -> 'dubai'): the unit held-out scores are averaged over."""
    return record_source.split("/", 1)[0]


def score_by_source(predictor: Predictor, images: Sequence[LabelledImage], sources: Sequence[str],
                    rank: int = 0, world: int = 1, zooms: Sequence[float] | None = None) -> dict[str, ConfusionMatrix]:
    """One confusion matrix per source (`sources[i]` names image i's), each summed across DDP ranks.
    `zooms[i]`: image i's resampling factor (`models.inference.resolution`; default 1)."""
    matrices = {name: ConfusionMatrix(predictor.checkpoint.num_classes) for name in sorted(set(sources))}
    for i in range(rank, len(images), world):
        image, mask = images[i]
        probs = predictor.predict_array(np.asarray(image, dtype=np.float32), zoom=zooms[i] if zooms else 1.0)
        matrices[sources[i]].update(mask, probs.argmax(0))
    for matrix in matrices.values():  # every rank reduces every source, in the same order
        matrix.all_reduce()
    return matrices


def held_out_metrics(matrices: dict[str, ConfusionMatrix]) -> dict:
    """Scores of whole held-out images from several sources; `miou` is the mean of the sources' mIoU.

    A model is selected by how it does on each place, not by the place with the most pixels: the
    pooled matrix (all images together) is reported beside it (`pooled_miou`, `iou`, `pixel_accuracy`).
    """
    pooled = ConfusionMatrix(next(iter(matrices.values())).num_classes)
    for matrix in matrices.values():
        pooled.matrix += matrix.matrix
        pooled.ruled_out += matrix.ruled_out
    per_source = {name: matrix.as_dict() for name, matrix in matrices.items()}
    scores = [s["miou"] for s in per_source.values() if s["miou"] == s["miou"]]
    overall = pooled.as_dict()
    return {"miou": round(float(np.mean(scores)), 4) if scores else None, "iou": overall["iou"],
            "pixel_accuracy": overall["pixel_accuracy"], "pooled_miou": overall["miou"], "sources": per_source}
