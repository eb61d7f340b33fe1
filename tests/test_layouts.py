"""Dataset layouts: their code maps onto the schema, their metadata, the spec registry and pair discovery."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landsentry.models.data.change_layouts import EgyBCD, LevirCD, SztakiAirChange, find_pairs
from landsentry.models.data.layouts import DubaiAerial, LabelledFolder, LoveDA
from landsentry.models.data.masks import read_change
from landsentry.models.data.samples import load_pair
from landsentry.models.data.registry import LAYOUTS, change_folder, pairs_from_spec, records_from_spec
from landsentry.models.vocabulary.classes import CLASS_ID, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, lookup_table, remap
from landsentry.models.vocabulary.errors import InputError

SCHEMA_IDS = set(range(NUM_CLASSES))
ROOT = Path(__file__).resolve().parents[1]


def test_loveda_mapping():
    assert set(LoveDA.codes) == set(range(8)), "every LoveDA code 0..7 must be mapped"
    assert LoveDA.codes[0] == IGNORE_INDEX  # no-data
    expected = {1: "background", 2: "building", 3: "road", 4: "water", 5: "bare_soil", 6: "vegetation", 7: "vegetation"}
    assert {k: CLASS_NAMES[v] for k, v in LoveDA.codes.items() if k} == expected


def test_dubai_mapping():
    assert set(DubaiAerial.codes) == set(range(6)), "every Dubai code 0..5 must be mapped"
    assert DubaiAerial.codes[0] == IGNORE_INDEX  # unlabeled
    expected = {1: "building", 2: "bare_soil", 3: "road", 4: "vegetation", 5: "water"}
    assert {k: CLASS_NAMES[v] for k, v in DubaiAerial.codes.items() if k} == expected


@pytest.mark.parametrize("mapping", [LoveDA.codes, DubaiAerial.codes], ids=["loveda", "dubai"])
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
    out = remap(mask, LoveDA.codes)
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
        remap(np.zeros((2, 2), np.int32), LoveDA.codes)


def test_layouts_carry_their_metadata():
    assert set(LAYOUTS) == {"dubai", "loveda", "roads_cil", "deepglobe_roads", "spacenet", "folder", "levir", "egy", "sztaki"}
    assert {name for name, layout in LAYOUTS.items() if layout.labels == "change"} == {"levir", "egy", "sztaki"}
    assert LoveDA.gsd == 0.3 and LevirCD.gsd == 0.5 and SztakiAirChange.gsd == 1.5 and EgyBCD.gsd == 0.25
    assert LoveDA.url.startswith("https://zenodo.org/") and LoveDA.licence == "CC BY-NC-SA 4.0"
    for layout in LAYOUTS.values():
        assert layout.title and layout.folders and layout.licence is not None


def test_registry_maps_specs_to_layouts(shared_file, tmp_path):
    levir = shared_file("levir_cd/test/A/test_2_0000_0000.png").parents[2]
    sztaki = shared_file("sztaki_airchange/Szada_1/A.png").parents[1]
    loveda = shared_file("loveda/Val/Rural/images_png/0.png").parents[3]
    assert [r.source for r in records_from_spec(f"loveda:{loveda}")] == [r.source for r in LoveDA.records(loveda)]
    assert [p.source for p in pairs_from_spec(f"levir:{levir}")] == [p.source for p in LevirCD.pairs(levir)]
    assert len(pairs_from_spec(f"sztaki:{sztaki}")) == 10
    with pytest.raises(InputError, match="holds change pairs, not labelled images"):
        records_from_spec(f"levir:{levir}")
    with pytest.raises(InputError, match="holds labelled images, not change pairs"):
        pairs_from_spec(f"loveda:{loveda}")
    with pytest.raises(InputError, match="dataset folder not found"):
        records_from_spec(f"dubai:{tmp_path / 'missing'}")


def test_one_pair_discovery_for_training_and_evaluation(shared_file):
    """`find_pairs` (evaluate-change) lists exactly the layouts' pairs, named by their source without the prefix."""
    levir = shared_file("levir_cd/test/A/test_2_0000_0000.png").parents[2]
    sztaki = shared_file("sztaki_airchange/Szada_1/A.png").parents[1]
    assert [(f"levir/{n}", b, a, l) for n, b, a, l in find_pairs(levir, "all")] == [
        (p.source, p.before, p.after, p.label) for p in LevirCD.pairs(levir)]
    assert [n for n, *_ in find_pairs(sztaki)] == [p.source.removeprefix("sztaki/") for p in SztakiAirChange.pairs(sztaki)]
    assert [p.source for p in SztakiAirChange.pairs(sztaki / "Szada_1")] == ["sztaki/Szada_1"]


def test_egy_bcd_pairs_on_the_real_files(shared_file):
    """EGY-BCD has LEVIR-CD's folder shape: 4 train, 3 val, 2 test crops of 256 px, each its own group."""
    egy = shared_file("egy_bcd/test/A/test_1.png").parents[2]
    pairs = EgyBCD.pairs(egy)
    assert [p.source for p in pairs] == [f"egy/train/train_{i}" for i in range(1, 5)] + [
        f"egy/val/val_{i}" for i in range(1, 4)] + ["egy/test/test_1", "egy/test/test_2"]
    assert len({p.group for p in pairs}) == 9 and pairs[0].group == "egy/train_1"
    assert all(p.before.parent.name == "A" and p.after.parent.name == "B" and p.label.parent.name == "label" for p in pairs)
    assert [p.source for p in EgyBCD.pairs(egy, ("test",))] == ["egy/test/test_1", "egy/test/test_2"]
    assert [p.source for p in pairs_from_spec(f"egy:{egy}")] == [p.source for p in pairs]
    before, after, change = load_pair(pairs[-1])
    assert before.shape == after.shape == (3, 256, 256) and change.shape == (256, 256)
    assert set(np.unique(change)) == {0, 1} and 0.3 < change.mean() < 0.4, "test_2 is 35% changed"
    # evaluate-change's discovery names them like the layout, without the prefix
    assert [n for n, *_ in find_pairs(egy, "test", layout=EgyBCD)] == ["test/test_1", "test/test_2"]
    assert change_folder(f"egy:{egy}") == (EgyBCD, egy) and change_folder(str(egy)) == (None, egy)
    with pytest.raises(InputError, match="holds labelled images, not change pairs"):
        change_folder(f"dubai:{egy}")


def test_missing_pair_files_are_listed_together(tmp_path):
    for site in ("Szada_1", "Szada_2"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "A.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"2 problem\(s\) in SZTAKI folder") as err:
        find_pairs(tmp_path)
    assert "Szada_1: missing B.png, label.png" in str(err.value) and "Szada_2" in str(err.value)


def test_change_label_reader(tmp_path):
    label = np.zeros((8, 10), np.uint8)
    label[2:4, 3:5] = 255
    Image.fromarray(label).save(tmp_path / "l.png")
    assert read_change(tmp_path / "l.png", (8, 10)).sum() == 4
    Image.fromarray((label > 0).astype(np.uint8)).save(tmp_path / "01.png")  # 0/1-coded
    assert read_change(tmp_path / "01.png").sum() == 4
    with pytest.raises(InputError, match="is 10x8 px but the images are 12x8"):
        read_change(tmp_path / "l.png", (8, 12))
    Image.fromarray(np.dstack([label, label * 0, label])).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="single-band"):
        read_change(tmp_path / "rgb.png")


def test_folder_layout_reads_a_class_map(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "a_gt.png")
    (tmp_path / "classes.json").write_text(json.dumps({"0": "building", "#FFFFFF": "void"}))
    [record] = LabelledFolder.records(tmp_path)
    assert record.mask.name == "a_gt.png" and record.mapping == {0: CLASS_ID["building"], (255, 255, 255): IGNORE_INDEX}


@pytest.mark.parametrize("package, allowed", [
    ("data", {"vocabulary", "io", "data"}),
    ("evaluation", {"vocabulary", "io", "data", "nn", "inference", "analysis", "evaluation"}),
])
def test_data_and_evaluation_import_only_lower_layers(package, allowed):
    """The data layer is importable by everyone (vocabulary and io below it); evaluation never imports training or the service."""
    for path in sorted((ROOT / "models" / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("landsentry."):
                    parts = name.split(".")
                    assert parts[1] == "models" and parts[2] in allowed, f"{path.name} imports {name}"
