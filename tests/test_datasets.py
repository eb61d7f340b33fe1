"""Dataset layouts (the data layer), validation and the torch datasets' sampling on the real shared imagery (../shared/data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED, require_shared
import torch
from PIL import Image

from landsentry.models.data.change_layouts import SztakiAirChange
from landsentry.models.data.images import read_image
from landsentry.models.data.layouts import DubaiAerial, LabelledFolder, LoveDA
from landsentry.models.data.splits import DUBAI_VAL_GROUPS, groups_of, holdout_groups, shared_data_split, split_by_group
from landsentry.models.data.statistics import class_pixel_counts
from landsentry.models.vocabulary.classes import IGNORE_INDEX, lookup_table
from landsentry.models.vocabulary.errors import InputError
from landsentry.training.datasets import ChangePairDataset, LevirCDDataset, SegmentationDataset
from landsentry.training.transforms import eval_transform, pair_train_transform, train_transform

SCHEMA_VALUES = {0, 1, 2, 3, 4, 5, IGNORE_INDEX}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shared(*parts: str) -> Path:
    """A file or folder of the shared real data (conftest's rule: missing fails under CI=true, else skips)."""
    return require_shared("/".join(parts))


def values(t: torch.Tensor) -> set[int]:
    return set(t.unique().tolist())


# --- layouts on real data ----------------------------------------------------------------------
def test_loveda_records_and_mapping_on_real_tiles() -> None:
    records = LoveDA.records(shared("loveda"))
    assert [r.source for r in records] == ["loveda/Val/Rural/0", "loveda/Val/Rural/1", "loveda/Val/Rural/2"]
    assert len(groups_of(records)) == 3
    ds = SegmentationDataset(records[:1])
    sample = ds[0]
    assert sample["image"].shape == (3, 1024, 1024) and sample["image"].dtype == torch.uint8
    assert sample["mask"].shape == (1024, 1024) and sample["mask"].dtype == torch.int64
    assert values(sample["mask"]) <= SCHEMA_VALUES
    raw = np.asarray(Image.open(records[0].mask))
    assert np.array_equal(sample["mask"].numpy(), lookup_table(LoveDA.codes)[raw])
    assert values(sample["mask"]) >= {1, 2, 4}  # the village tile: buildings, a road, farmland


def test_dubai_records_groups_and_index_masks() -> None:
    root = shared("dubai_aerial")
    records = DubaiAerial.records(root)
    assert len(records) == 53
    assert groups_of(records) == [f"dubai/t{t}" for t in range(3, 9)]
    assert DubaiAerial.tile("image_part_001t3") == "3" and DubaiAerial.tile("image_part_004 t 8") == "8"
    first = records[0]
    assert first.source == "dubai/image_part_001t3" and first.group == "dubai/t3"
    sample = SegmentationDataset([first])[0]  # the smallest tile: 682 x 658
    raw = np.asarray(Image.open(first.mask))
    assert raw.ndim == 2 and set(np.unique(raw).tolist()) <= set(range(6))  # index masks, as README says
    assert np.array_equal(sample["mask"].numpy(), lookup_table(DubaiAerial.codes)[raw])
    assert values(sample["mask"]) <= SCHEMA_VALUES
    assert sample["image"].shape[1:] == sample["mask"].shape


def test_dubai_original_rgb_colour_masks_are_mapped(tmp_path: Path) -> None:
    """The Kaggle release codes classes as colours; a colour copy of a real mask maps to the same ids."""
    real = DubaiAerial.records(shared("dubai_aerial"))[0]
    raw = np.asarray(Image.open(real.mask))
    colours = np.array([[155, 155, 155], [60, 16, 152], [132, 41, 246], [110, 193, 228], [254, 221, 58], [226, 169, 41]], np.uint8)
    (tmp_path / "Tile 3" / "images").mkdir(parents=True)
    (tmp_path / "Tile 3" / "masks").mkdir()
    Image.open(real.image).save(tmp_path / "Tile 3" / "images" / "image_part_001.jpg", quality=95)
    Image.fromarray(colours[raw]).save(tmp_path / "Tile 3" / "masks" / "image_part_001.png")
    records = DubaiAerial.records(tmp_path)
    assert records[0].group == "dubai/t3" and records[0].source == "dubai/t3/image_part_001"
    mapped = SegmentationDataset(records)[0]["mask"].numpy()
    assert np.array_equal(mapped, lookup_table(DubaiAerial.codes)[raw])


def make_folder(tmp_path: Path, n: int = 3, size: int = 96, classes: dict | None = None) -> Path:
    """A user-style folder from real LoveDA crops, masks re-coded to a custom scheme 10/20/30/40."""
    root = tmp_path / "mydata"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    src = LoveDA.records(shared("loveda"))[0]
    image = Image.open(src.image).convert("RGB")
    raw = np.asarray(Image.open(src.mask))
    recode = np.array([0, 10, 20, 30, 40, 40, 40, 40], np.uint8)  # ignore, background, building, road, vegetation
    for i in range(n):
        box = (i * 200, 100, i * 200 + size, 100 + size)
        image.crop(box).save(root / "images" / f"tile_{i}.{'png' if i % 2 else 'jpg'}")
        Image.fromarray(recode[raw[box[1]:box[3], box[0]:box[2]]]).save(root / "masks" / f"tile_{i}.png")
    classes = classes or {"0": "ignore", "10": "background", "20": "building", "30": "road", "40": "vegetation"}
    (root / "classes.json").write_text(json.dumps(classes))
    return root


def test_folder_dataset_with_classes_json(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    records = LabelledFolder.records(root)
    assert [r.source for r in records] == ["mydata/tile_0", "mydata/tile_1", "mydata/tile_2"]
    ds = SegmentationDataset(records)
    src = LoveDA.records(shared("loveda"))[0]
    expected = lookup_table(LoveDA.codes)[np.asarray(Image.open(src.mask))[100:196, 200:296]]
    sample = ds[1]
    assert sample["source"] == "mydata/tile_1"
    assert np.array_equal(sample["mask"].numpy(), expected)
    for s in ds:
        assert values(s["mask"]) <= {0, 1, 2, 4, IGNORE_INDEX}


def test_folder_without_classes_json_holds_schema_ids(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    (root / "classes.json").unlink()
    with pytest.raises(InputError) as err:
        SegmentationDataset(LabelledFolder.records(root))
    message = str(err.value)
    assert "3 problem(s)" in message  # all offending masks listed at once, not just the first
    assert "tile_0.png: mask codes [20, 30, 40] are not in the class map" in message
    assert "tile_1.png: mask codes [10, 40]" in message


def test_folder_colour_masks_with_hex_codes(tmp_path: Path) -> None:
    root = make_folder(tmp_path, n=1, classes={"#000000": "ignore", "#FF0000": "building", "#FFFFFF": "background"})
    mask_path = root / "masks" / "tile_0.png"
    codes = np.asarray(Image.open(mask_path))
    rgb = np.zeros(codes.shape + (3,), np.uint8)
    rgb[codes == 20] = (255, 0, 0)
    rgb[codes != 20] = (255, 255, 255)
    Image.fromarray(rgb).save(mask_path)
    expected = torch.from_numpy(np.where(codes == 20, 1, 0))
    assert torch.equal(SegmentationDataset(LabelledFolder.records(root))[0]["mask"], expected)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(mask_path)  # palette PNG
    assert torch.equal(SegmentationDataset(LabelledFolder.records(root))[0]["mask"], expected)


# --- validation: every bad input names its file ------------------------------------------------
def test_image_without_mask_is_reported(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    (root / "masks" / "tile_2.png").unlink()
    with pytest.raises(InputError, match=r"tile_2\.jpg: no mask"):
        LabelledFolder.records(root)


def test_mask_size_mismatch_is_reported(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    mask = root / "masks" / "tile_1.png"
    Image.open(mask).crop((0, 0, 90, 96)).save(mask)
    with pytest.raises(InputError, match=r"tile_1\.png: image is 96x96 px but its mask tile_1\.png is 90x96"):
        SegmentationDataset(LabelledFolder.records(root))


def test_codes_outside_class_map_are_reported(tmp_path: Path) -> None:
    root = make_folder(tmp_path, classes={"0": "ignore", "10": "background", "20": "building", "40": "vegetation"})
    with pytest.raises(InputError) as err:
        SegmentationDataset(LabelledFolder.records(root))
    message = str(err.value)
    assert "tile_0.png: mask codes [30] are not in the class map" in message and "classes.json" in message
    assert "tile_1.png" not in message


def test_empty_and_malformed_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no samples found under .*empty \(expected images/ and masks/\)"):
        LabelledFolder.records(tmp_path / "empty")
    (tmp_path / "bare" / "images").mkdir(parents=True)
    (tmp_path / "bare" / "masks").mkdir()
    with pytest.raises(InputError, match="no samples found"):
        LabelledFolder.records(tmp_path / "bare")
    with pytest.raises(InputError, match="no samples found"):
        LoveDA.records(tmp_path)
    root = make_folder(tmp_path, classes={"0": "ignore", "10": "houses"})
    with pytest.raises(InputError, match=r"unknown class 'houses'.*building"):
        LabelledFolder.records(root)


def test_unreadable_image_and_jpeg_mask_are_reported_before_training(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    (root / "images" / "tile_0.jpg").write_bytes(b"")
    mask = root / "masks" / "tile_1.png"
    Image.open(mask).convert("L").save(mask.with_suffix(".tif.jpg"), format="JPEG")
    mask.with_suffix(".tif.jpg").replace(mask)  # a JPEG hiding behind .png
    with pytest.raises(InputError) as err:
        SegmentationDataset(LabelledFolder.records(root))
    message = str(err.value)
    assert "2 problem(s)" in message
    assert "tile_0.jpg" in message and "empty" in message
    assert "tile_1.png" in message and "JPEG" in message


def test_corrupt_image_mid_epoch_is_skipped_and_counted(tmp_path: Path) -> None:
    root = make_folder(tmp_path, n=4)
    broken = root / "images" / "tile_1.png"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: the header passes validation, decoding fails
    ds = SegmentationDataset(LabelledFolder.records(root))
    with pytest.warns(RuntimeWarning, match="tile_1.png") as caught:
        sources = [ds[i]["source"] for i in range(len(ds))]
        sources += [ds[i]["source"] for i in range(len(ds))]  # second epoch: no second warning
    assert len([w for w in caught if "tile_1.png" in str(w.message)]) == 1
    assert ds.skipped == {broken}
    assert "mydata/tile_1" not in sources and len(sources) == 8
    assert sources[1] == "mydata/tile_2"  # replaced by the next sample


# --- splits ------------------------------------------------------------------------------------
def test_split_by_group_keeps_source_tiles_disjoint() -> None:
    records = DubaiAerial.records(shared("dubai_aerial"))
    train, val = split_by_group(records, ["dubai/t4", "dubai/t6"])
    assert {r.group for r in val} == {"dubai/t4", "dubai/t6"}
    assert not {r.group for r in train} & {r.group for r in val}
    assert not {r.image for r in train} & {r.image for r in val}
    assert len(train) + len(val) == len(records)
    with pytest.raises(InputError, match="unknown validation group"):
        split_by_group(records, ["dubai/t9"])
    train, val = holdout_groups(records, val_fraction=0.2, seed=1)
    assert val and train and not {r.group for r in train} & {r.group for r in val}


def test_default_shared_split_holds_out_a_whole_representative_tile() -> None:
    shared("dubai_aerial")
    shared("loveda")
    train, val = shared_data_split(SHARED)
    assert {r.group for r in val} == set(DUBAI_VAL_GROUPS) == {"dubai/t8"}
    assert len(val) == 9 and len(train) == 44 + 3
    counts = class_pixel_counts(val[:2], by="all")["all"]
    assert (counts[[1, 2, 3]] > 0).all()  # buildings, roads and bare soil are in the held-out tile


# --- sampling ----------------------------------------------------------------------------------
def test_random_crops_epoch_length_and_reproducibility() -> None:
    records = [r for r in DubaiAerial.records(shared("dubai_aerial")) if r.group == "dubai/t3"][:3]
    ds = SegmentationDataset(records, transform=train_transform(128), samples_per_epoch=12, seed=5)
    assert len(ds) == 12
    samples = [ds[i] for i in range(12)]
    for s in samples:
        assert s["image"].shape == (3, 128, 128) and s["mask"].shape == (128, 128)
        assert values(s["mask"]) <= SCHEMA_VALUES
    assert torch.equal(ds[3]["image"], samples[3]["image"])  # seeded: same crop for the same (epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["image"], samples[3]["image"])
    assert len(ds._cache) == 3  # each image decoded once
    with pytest.raises(IndexError):
        ds[12]


def test_dataloader_with_workers_and_eval_padding() -> None:
    records = LoveDA.records(shared("loveda"))[:2]
    train = SegmentationDataset(records, transform=train_transform(64), samples_per_epoch=4)
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4, num_workers=2)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].dtype == torch.int64
    full = SegmentationDataset(records[:1], transform=eval_transform(), cache_mb=0)
    sample = full[0]
    assert sample["image"].shape == (3, 1024, 1024) and not full._cache


def test_band_handling_one_and_four_band_inputs(tmp_path: Path) -> None:
    naip = shared("naip_pair", "m_4709963_se_14_1_20100629.tif")  # real 4-band RGBN
    rgb, valid = read_image(naip, 3)
    rgbn, _ = read_image(naip, 4)
    assert rgb.shape == (3, 723, 934) and rgbn.shape == (4, 723, 934) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, rgbn[:3]) and valid.shape == (723, 934)
    root = make_folder(tmp_path, n=1)
    image = root / "images" / "tile_0.jpg"
    Image.open(image).convert("L").save(image, quality=95)  # panchromatic
    sample = SegmentationDataset(LabelledFolder.records(root))[0]
    assert sample["image"].shape == (3, 96, 96)
    assert torch.equal(sample["image"][0], sample["image"][2])
    assert SegmentationDataset(LabelledFolder.records(root), in_channels=1)[0]["image"].shape == (1, 96, 96)
    pan16 = shared("spacenet_atlanta", "sample_geotiff.tif")  # real 1-band uint16: stretched, repeated
    grey, _ = read_image(pan16, 3)
    assert grey.shape == (3, 900, 900) and grey.dtype == np.uint8 and grey.max() == 255
    assert np.array_equal(grey[0], grey[1])


def test_band_count_is_checked_against_in_channels(tmp_path: Path) -> None:
    root = make_folder(tmp_path, n=1)
    naip = shared("naip_pair", "m_4709963_se_14_1_20100629.tif")
    (root / "images" / "naip.tif").symlink_to(naip)
    Image.fromarray(np.zeros((723, 934), np.uint8)).save(root / "masks" / "naip.png")
    (root / "classes.json").write_text(json.dumps({"0": "background", "10": "background", "20": "building", "30": "road", "40": "vegetation"}))
    records = LabelledFolder.records(root)
    assert [r.source for r in records] == ["mydata/naip", "mydata/tile_0"]
    assert SegmentationDataset(records)[0]["image"].shape == (3, 723, 934)
    with pytest.raises(InputError) as err:
        SegmentationDataset(LabelledFolder.records(root), in_channels=4)
    message = str(err.value)
    assert "1 problem(s)" in message and "tile_0.jpg: has 3 data band(s); a 4-band model" in message
    assert SegmentationDataset(records[:1], in_channels=4)[0]["image"].shape == (4, 723, 934)


# --- change pairs ------------------------------------------------------------------------------
def test_levir_cd_pairs_load_with_binary_change() -> None:
    ds = LevirCDDataset(shared("levir_cd"), "test")
    assert len(ds) == 7
    groups = [p.group for p in ds.records]
    assert groups.count("levir/test_2") == 2  # two crops of one scene share a group
    for i in range(len(ds)):
        s = ds[i]
        assert s["before"].shape == s["after"].shape == (3, 256, 256)
        assert s["change"].shape == (256, 256) and s["change"].dtype == torch.int64
        assert values(s["change"]) <= {0, 1}
    raw = np.asarray(Image.open(ds.records[0].label))
    assert torch.equal(ds[0]["change"], torch.from_numpy((raw == 255).astype(np.int64)))
    assert values(LevirCDDataset(shared("levir_cd"), "train")[1]["change"]) == {0}  # a pair with no change


def test_sztaki_pairs_load_with_binary_change() -> None:
    pairs = SztakiAirChange.pairs(shared("sztaki_airchange"))
    assert {p.group for p in pairs} == {"sztaki/Szada", "sztaki/Tiszadob", "sztaki/Archieve"}
    assert len(pairs) == 10
    szada = [p for p in pairs if p.group == "sztaki/Szada"][:2]
    ds = ChangePairDataset(szada, transform=pair_train_transform(128, class_aware_p=1.0), samples_per_epoch=4, seed=0)
    for i in range(4):
        s = ds[i]
        assert s["before"].shape == s["after"].shape == (3, 128, 128)
        assert values(s["change"]) <= {0, 1, IGNORE_INDEX} and 1 in values(s["change"])


def test_change_label_with_unexpected_values_is_reported(tmp_path: Path) -> None:
    src = SztakiAirChange.pairs(shared("sztaki_airchange"))[1]
    site = tmp_path / "Szada_9"
    site.mkdir()
    for name in ("A.png", "B.png"):
        Image.open(getattr(src, "before" if name == "A.png" else "after")).crop((0, 0, 64, 64)).save(site / name)
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(site / "label.png")
    with pytest.raises(InputError, match=r"Szada_9/label\.png: change label values \[7\]"):
        ChangePairDataset(SztakiAirChange.pairs(tmp_path))
    Image.fromarray(np.zeros((60, 64), np.uint8)).save(site / "label.png")
    with pytest.raises(InputError, match="sizes differ"):
        ChangePairDataset(SztakiAirChange.pairs(tmp_path))
