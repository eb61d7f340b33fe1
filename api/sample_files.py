"""One way into the sample store, for the API (POST /v1/samples) and the CLI (`landsentry samples add`).

A sample is an image and a mask of class ids on its grid. The mask comes as a PNG of ids (the page's
annotation) or as labelled polygons rasterised onto the image (`vector_mask`); either way it is checked
the same way and written the same way, so a sample means the same thing whichever door it came in by.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from landsentry.models.data.vector_labels import VectorLabels, parse_mapping, read_vector_labels
from landsentry.models.io.raster import RasterSource
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.models.vocabulary.errors import InputError

from landsentry.api.inference import probe_size
from landsentry.api.masks import class_pixels
from landsentry.api.store import Store, atomic_copy, atomic_write_bytes

SQLITE_MAGIC = b"SQLite format 3\x00"


def check_image(path: Path, max_pixels: int, setting: str, channels: int, name: str) -> tuple[int, int]:
    """(width, height) of an image training can read: size within the limit, decoded the way training reads it."""
    width, height = probe_size(path, max_pixels, setting, name)
    with RasterSource(path, channels=channels, name=name):
        pass
    return width, height


def vector_suffix(path: Path) -> str:
    """'.gpkg' for a GeoPackage (an SQLite file), '.geojson' otherwise: GDAL picks its driver by content and name."""
    with path.open("rb") as fh:
        return ".gpkg" if fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC else ".geojson"


def parse_class_map(text: str | None) -> dict[str, int] | None:
    """The request's class mapping: a JSON object {"property value": "class name"}, or nothing (values are class names)."""
    if text is None or not text.strip():
        return None
    try:
        pairs = json.loads(text)
    except ValueError as exc:
        raise InputError(f'class_map is not JSON ({str(exc)[:80]}); send an object such as {{"yes": "building"}}') from None
    return parse_mapping(pairs)


def vector_mask(image: Path, vectors: Path, class_field: str | None, class_map: dict[str, int] | None,
                layer: str | None, name: str) -> VectorLabels:
    """Rasterise labelled polygons onto the image grid (everything unlabelled: IGNORE_INDEX)."""
    if not class_field:
        raise InputError("vector labels need class_field: the property that holds each polygon's class")
    return read_vector_labels(vectors, image, class_field, class_map, layer, name)


def require_labels(ids: np.ndarray) -> None:
    """An annotation must label something: an all-ignore mask would train on nothing."""
    if (ids == IGNORE_INDEX).all():
        raise InputError("the annotation labels no pixel (every pixel is ignore/unknown): paint or map at least one class")


def save_sample(store: Store, sample_id: str, image: Path, ids: np.ndarray, source: str) -> dict:
    """Write the mask and a copy of the image under the store's samples folder, then the record (last: a
    crash may leave files without a record, never a record without its files)."""
    require_labels(ids)
    buffer = io.BytesIO()
    Image.fromarray(ids, mode="L").save(buffer, format="PNG")
    atomic_write_bytes(store.samples_dir / "masks" / f"{sample_id}.png", buffer.getvalue())
    image_file = sample_id + image.suffix
    atomic_copy(image, store.samples_dir / "images" / image_file)
    height, width = ids.shape
    return store.add_sample(sample_id, width, height, class_pixels(ids), source, image_file)
