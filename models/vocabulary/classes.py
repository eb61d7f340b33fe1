"""The one class schema shared by datasets, metrics, checkpoints, the API and the web page.

Each dataset's own code mapping onto it lives on its layout class (`landsentry.models.data.layouts`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255
"""Mask value for pixels that carry no label (no-data, unlabeled); losses and metrics skip it."""
NOT_CLASS_OFFSET = 128
"""Mask value NOT_CLASS_OFFSET + k: a partial label, "some class other than k". Single-class sources
(road-only, building-only) say "road" or "not road", never which other class: the loss pushes down
only class k's probability there, and metrics count class k predicted there as a false positive."""


@dataclass(frozen=True)
class LandClass:
    id: int
    name: str
    title: str
    color: tuple[int, int, int]


CLASSES: tuple[LandClass, ...] = (
    LandClass(0, "background", "Background", (190, 190, 190)),
    LandClass(1, "building", "Building", (230, 25, 75)),
    LandClass(2, "road", "Road", (255, 225, 25)),
    LandClass(3, "bare_soil", "Bare soil / earthwork", (205, 133, 63)),
    LandClass(4, "vegetation", "Vegetation (farmland, forest)", (60, 180, 75)),
    LandClass(5, "water", "Water", (0, 130, 200)),
)
NUM_CLASSES = len(CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
CLASS_ID: dict[str, int] = {c.name: c.id for c in CLASSES}


def not_class(class_id: int) -> int:
    """The mask value meaning "not this class" (a partial label)."""
    return NOT_CLASS_OFFSET + class_id


def negated_class(value: int) -> int | None:
    """The class a partial-label mask value rules out, or None for a full label or IGNORE_INDEX."""
    k = value - NOT_CLASS_OFFSET
    return k if 0 <= k < NUM_CLASSES else None


def lookup_table(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry table turning source codes into schema ids; unmapped codes become IGNORE_INDEX."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    return table


def remap(mask: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map a uint8 mask of source codes onto schema ids."""
    if mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8, got {mask.dtype}")
    return lookup_table(mapping)[mask]


def palette() -> np.ndarray:
    """A 256x3 uint8 colour table indexed by class id (ignore and unknown ids are black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    for c in CLASSES:
        table[c.id] = c.color
    return table


def schema_dict() -> list[dict]:
    """The schema as plain data, stored in checkpoints and served by the API."""
    return [{"id": c.id, "name": c.name, "title": c.title, "color": list(c.color)} for c in CLASSES]
