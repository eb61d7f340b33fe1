"""The class schema and the dataset code mappings onto it (LoveDA, Dubai aerial)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from landsentry.models.vocabulary.classes import (
    CLASS_ID, CLASS_NAMES, CLASSES, DUBAI_TO_SCHEMA, IGNORE_INDEX, LOVEDA_TO_SCHEMA, NUM_CLASSES,
    lookup_table, palette, remap, schema_dict,
)

SCHEMA_IDS = set(range(NUM_CLASSES))


def test_schema_ids_are_contiguous_and_named():
    assert [c.id for c in CLASSES] == list(range(NUM_CLASSES)) == list(range(6))
    assert CLASS_NAMES == ("background", "building", "road", "bare_soil", "vegetation", "water")
    assert IGNORE_INDEX == 255 and IGNORE_INDEX not in SCHEMA_IDS
    assert [d["id"] for d in schema_dict()] == list(range(6))
    assert [d["name"] for d in schema_dict()] == list(CLASS_NAMES)


def test_loveda_mapping():
    assert set(LOVEDA_TO_SCHEMA) == set(range(8)), "every LoveDA code 0..7 must be mapped"
    assert LOVEDA_TO_SCHEMA[0] == IGNORE_INDEX  # no-data
    expected = {1: "background", 2: "building", 3: "road", 4: "water", 5: "bare_soil", 6: "vegetation", 7: "vegetation"}
    assert {k: CLASS_NAMES[v] for k, v in LOVEDA_TO_SCHEMA.items() if k} == expected


def test_dubai_mapping():
    assert set(DUBAI_TO_SCHEMA) == set(range(6)), "every Dubai code 0..5 must be mapped"
    assert DUBAI_TO_SCHEMA[0] == IGNORE_INDEX  # unlabeled
    expected = {1: "building", 2: "bare_soil", 3: "road", 4: "vegetation", 5: "water"}
    assert {k: CLASS_NAMES[v] for k, v in DUBAI_TO_SCHEMA.items() if k} == expected


@pytest.mark.parametrize("mapping", [LOVEDA_TO_SCHEMA, DUBAI_TO_SCHEMA], ids=["loveda", "dubai"])
def test_lookup_table_maps_known_codes_and_ignores_the_rest(mapping):
    table = lookup_table(mapping)
    assert table.shape == (256,) and table.dtype == np.uint8
    for src, dst in mapping.items():
        assert table[src] == dst
    unknown = [c for c in range(256) if c not in mapping]
    assert (table[unknown] == IGNORE_INDEX).all()


def test_remap_real_loveda_mask(shared_file):
    mask = np.asarray(Image.open(shared_file("loveda/Val/Rural/masks_png/0.png")))
    assert mask.dtype == np.uint8 and mask.ndim == 2
    codes = np.bincount(mask.ravel(), minlength=256)
    assert (codes[8:] == 0).all(), "LoveDA masks hold codes 0..7 only"
    out = remap(mask, LOVEDA_TO_SCHEMA)
    assert out.shape == mask.shape and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= SCHEMA_IDS | {IGNORE_INDEX}
    counts = np.bincount(out.ravel(), minlength=256)
    # pixel for pixel: forest + agriculture became vegetation, no-data became ignore, and so on
    assert counts[CLASS_ID["vegetation"]] == codes[6] + codes[7]
    assert counts[IGNORE_INDEX] == codes[0]
    assert counts[CLASS_ID["building"]] == codes[2] and counts[CLASS_ID["road"]] == codes[3]
    assert counts[CLASS_ID["water"]] == codes[4] and counts[CLASS_ID["bare_soil"]] == codes[5]
    # tile 0 is farmland with a village and a road (README): those classes really are there
    for name in ("vegetation", "building", "road"):
        assert counts[CLASS_ID[name]] > 1000, name


def test_remap_refuses_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        remap(np.zeros((2, 2), np.int32), LOVEDA_TO_SCHEMA)


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
