"""Partial labels: road-only sources say "road" or "not road", and training and scoring use exactly that.

Real files from ../shared/data (roads_cil, deepglobe_roads); small label arrays generated here.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from landsentry.models.data.layouts import DeepGlobeRoads, RoadsCIL
from landsentry.models.data.masks import read_class_map, read_labels
from landsentry.models.data.metrics import ConfusionMatrix
from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX, NUM_CLASSES, negated_class, not_class
from landsentry.training.losses import CEDiceLoss

ROAD = CLASS_ID["road"]
NOT_ROAD = not_class(ROAD)


def test_not_class_codes_round_trip():
    assert [negated_class(not_class(k)) for k in range(NUM_CLASSES)] == list(range(NUM_CLASSES))
    assert negated_class(ROAD) is None and negated_class(IGNORE_INDEX) is None


def test_road_only_sources_read_as_road_or_not_road(shared_file):
    root = shared_file("roads_cil/images/cil16_001.jpg").parents[1]
    records = RoadsCIL.records(root)
    assert len(records) == 244 and RoadsCIL.partial == ("road",)
    labels, unknown = read_labels(records[0].mask, records[0].mapping)
    assert unknown == [] and set(np.unique(labels).tolist()) == {ROAD, NOT_ROAD}
    assert (labels == ROAD).mean() == pytest.approx(31400 / 160000)  # counted on the real mask: 255 = road
    test, val = set(RoadsCIL.splits["test"]), set(RoadsCIL.splits["val"])
    groups = {r.group for r in records}
    assert test <= groups and val <= groups and not test & val
    assert len(test) == 49 and len(val) == 49  # every fifth tile of each edition, and the one after it
    deepglobe = DeepGlobeRoads.records(shared_file("deepglobe_roads/images/104.jpg").parents[1])
    assert [r.group for r in deepglobe] == ["deepglobe_roads/104", "deepglobe_roads/113", "deepglobe_roads/343", "deepglobe_roads/388"]


def test_class_maps_can_say_not_a_class(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"0": "not road", "1": "road", "2": "!building", "255": "ignore"}))
    assert read_class_map(path) == {0: NOT_ROAD, 1: ROAD, 2: not_class(CLASS_ID["building"]), 255: IGNORE_INDEX}


def test_loss_on_not_road_pushes_down_only_the_road_probability():
    torch.manual_seed(0)
    logits = torch.randn(1, NUM_CLASSES, 8, 8, requires_grad=True)
    target = torch.full((1, 8, 8), NOT_ROAD)
    CEDiceLoss(dice_weight=0.0)(logits, target).backward()
    grad = logits.grad[0]
    assert (grad[ROAD] > 0).all(), "descending the gradient lowers the road logit"
    # the other classes are only pulled up together (softmax), never told apart: no class is taught as "background"
    others = [k for k in range(NUM_CLASSES) if k != ROAD]
    probs = logits.detach().softmax(1)[0]
    ratio = grad[others] / probs[others]
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), atol=1e-6)


def test_loss_without_partial_labels_is_weighted_cross_entropy_plus_dice():
    torch.manual_seed(1)
    logits = torch.randn(2, NUM_CLASSES, 16, 16)
    target = torch.randint(0, NUM_CLASSES, (2, 16, 16))
    target[:, :2] = IGNORE_INDEX
    weights = torch.rand(NUM_CLASSES) + 0.5
    ce = torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
    assert float(CEDiceLoss(weights, dice_weight=0.0)(logits, target)) == pytest.approx(float(ce), rel=1e-5)


def test_confusion_matrix_counts_a_class_predicted_where_it_is_ruled_out():
    truth = np.array([ROAD, ROAD, NOT_ROAD, NOT_ROAD, NOT_ROAD, IGNORE_INDEX])
    pred = np.array([ROAD, 0, ROAD, 1, 4, ROAD])
    m = ConfusionMatrix(NUM_CLASSES)
    m.update(truth, pred)
    iou = m.iou()
    assert iou[ROAD] == pytest.approx(1 / 3)  # 1 true positive, 1 false negative, 1 false positive on "not road"
    assert m.miou() == pytest.approx(1 / 3), "a road-only source is scored on road only"


def test_footprints_are_rasterised_on_the_image_grid(shared_file):
    """SpaceNet Atlanta: 43 building polygons burnt onto the 900 x 900 panchromatic tile, everything else 'not building'."""
    import json as json_

    from shapely.geometry import shape

    from landsentry.models.data.layouts import SpaceNetBuildings
    from landsentry.models.data.samples import check_records, load_sample

    root = shared_file("spacenet_atlanta/sample_geotiff.tif").parent
    (record,) = SpaceNetBuildings.records(root)
    assert check_records([record]) == [(900, 900)]
    image, labels = load_sample(record)
    building = CLASS_ID["building"]
    assert image.shape == (3, 900, 900) and set(np.unique(labels).tolist()) <= {building, not_class(building), IGNORE_INDEX}
    footprints = json_.loads((root / "buildings.geojson").read_text())["features"]
    area = sum(shape(f["geometry"]).area for f in footprints)  # UTM metres; 0.25 m² per pixel
    assert len(footprints) == 43
    assert (labels == building).sum() == pytest.approx(area / 0.25, rel=0.03)
