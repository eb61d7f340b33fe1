"""Class balance of labelled data: pixels per schema class, for reports, hold-out choices and loss weights."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from landsentry.models.data.masks import read_labels
from landsentry.models.data.records import Record
from landsentry.models.vocabulary.classes import IGNORE_INDEX, NUM_CLASSES


def label_counts(ids: np.ndarray) -> np.ndarray:
    """Pixels per schema class (NUM_CLASSES entries, then ignore) of a uint8 mask of schema ids."""
    counts = np.bincount(ids.ravel(), minlength=256)
    return np.append(counts[:NUM_CLASSES], counts[IGNORE_INDEX])


def class_pixel_counts(records: Iterable[Record], by: str = "group") -> dict[str, np.ndarray]:
    """`label_counts` summed per group (or 'source', or 'all'); decodes every mask."""
    counts: dict[str, np.ndarray] = {}
    for r in records:
        mask, _ = read_labels(r.mask, r.mapping)
        key = "all" if by == "all" else getattr(r, by)
        counts[key] = counts.get(key, np.zeros(NUM_CLASSES + 1, np.int64)) + label_counts(mask)
    return counts


def class_shares(counts: np.ndarray) -> np.ndarray:
    """Fractions of labelled pixels per class (ignore excluded) from a `class_pixel_counts` entry."""
    labelled = counts[:NUM_CLASSES].astype(np.float64)
    total = labelled.sum()
    return labelled / total if total else labelled
