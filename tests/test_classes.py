"""The class schema (the dataset code mappings onto it are tested with their layouts, test_layouts.py)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from landsentry.models.vocabulary.classes import CLASS_NAMES, CLASSES, IGNORE_INDEX, NUM_CLASSES, palette, schema_dict

SCHEMA_IDS = set(range(NUM_CLASSES))


def test_schema_ids_are_contiguous_and_named():
    assert [c.id for c in CLASSES] == list(range(NUM_CLASSES)) == list(range(6))
    assert CLASS_NAMES == ("background", "building", "road", "bare_soil", "vegetation", "water")
    assert IGNORE_INDEX == 255 and IGNORE_INDEX not in SCHEMA_IDS
    assert [d["id"] for d in schema_dict()] == list(range(6))
    assert [d["name"] for d in schema_dict()] == list(CLASS_NAMES)


def test_palette():
    table = palette()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    for c in CLASSES:
        assert tuple(table[c.id]) == c.color
    assert tuple(table[IGNORE_INDEX]) == (0, 0, 0)
    assert not table[NUM_CLASSES:].any(), "ids beyond the schema are black"
    assert len({tuple(table[i]) for i in range(NUM_CLASSES)}) == NUM_CLASSES, "class colours must differ"


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(shared_file, monkeypatch, tmp_path):
    """The rule from ../shared/data/README.md: under CI=true a missing file fails the run."""
    monkeypatch.setattr(sys.modules[shared_file.__module__], "SHARED", tmp_path / "nowhere")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared test data missing"):
        shared_file("loveda/Val/Rural/masks_png/0.png")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="shared test data missing"):
        shared_file("loveda/Val/Rural/masks_png/0.png")
