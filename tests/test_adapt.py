"""Retraining for a new place: what is held out of the user's samples, the checks beside the parent's,
the activate-if-not-worse rule, and `landsentry bench-adapt` end to end on real images (tiny runs).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landsentry.api.retrain import DEFAULT_RECIPE, held_out_rows, queue_train_job, snapshot_samples
from landsentry.api.settings import Settings
from landsentry.api.store import Store
from landsentry.api.train_checks import decide, validation_set
from landsentry.api.train_job import run_train_job
from landsentry.api.versions import register_initial
from landsentry.models.nn.checkpoint import BUNDLED_CHECKPOINT, load_checkpoint, save_checkpoint
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from tests.conftest import require_shared

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CIL_TILES = ("cil16_002", "cil16_003", "cil16_004")  # none of them in CIL's test or val groups
DUBAI = ("image_part_002t3", "image_part_003t5", "image_part_004t6")


DUBAI_CLASSES = {"0": "ignore", "1": "building", "2": "bare_soil", "3": "road", "4": "vegetation", "5": "water"}


def crop_folder(root: Path, source: str, stems: tuple[str, ...], side: int, classes: dict | None = None) -> Path:
    """`root/images` + `root/masks`: the top-left `side`² of real images and their masks (real pixels, small runs);
    `classes` becomes the folder's classes.json (for the `folder:` layout)."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if classes:
        (root / "classes.json").write_text(json.dumps(classes))
    for stem in stems:
        image = require_shared(f"{source}/images/{stem}.jpg")
        mask = require_shared(f"{source}/masks/{stem}.png")
        Image.open(image).convert("RGB").crop((0, 0, side, side)).save(root / "images" / f"{stem}.jpg", quality=95)
        Image.open(mask).crop((0, 0, side, side)).save(root / "masks" / f"{stem}.png")
    return root


def base_with_validation(path: Path, weights: Path, val_root: Path) -> Path:
    """A parent checkpoint (given weights) whose metadata says it was validated on the images of `val_root`."""
    ckpt = load_checkpoint(weights)
    groups = [f"{val_root.name}/{p.stem}" for p in sorted((val_root / "images").iterdir())]
    ckpt.metadata = {"data": {"data": [f"folder:{val_root}"], "holdout": groups}, "metrics": {}}
    save_checkpoint(ckpt, path)
    return path


def add_samples(store: Store, folder: Path) -> list[str]:
    """The folder's image/mask pairs as stored samples (masks as schema ids), as POST /v1/samples leaves them."""
    from landsentry.api.adapt_bench import store_samples
    from landsentry.models.data.registry import records_from_spec

    return store_samples(store, records_from_spec(f"dubai:{folder}"))


# --- what is held out -------------------------------------------------------------------------------
def test_held_out_rows_hold_a_quarter_of_the_labelled_pixels():
    mask = np.zeros((100, 10), np.uint8)
    assert held_out_rows(mask) == 75
    mask[:40] = IGNORE_INDEX  # labelled rows 40-99: a quarter of them is the last 15
    assert held_out_rows(mask) == 85
    assert held_out_rows(np.full((8, 8), IGNORE_INDEX, np.uint8)) == 8  # nothing labelled: nothing to hold out


def test_few_samples_hold_out_a_part_of_each_many_hold_out_whole_images(tmp_path):
    store = Store(tmp_path / "data")
    rng = np.random.default_rng(0)
    for n in (3, 6):
        for s in store.list_samples():
            store.delete_sample(s["id"])
        for i in range(n):
            sid = f"s_{n}_{i}"
            (store.samples_dir / "images").mkdir(parents=True, exist_ok=True)
            (store.samples_dir / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(store.samples_dir / "images" / f"{sid}.png")
            Image.fromarray(np.full((40, 32), 1 + i % 5, np.uint8), mode="L").save(store.samples_dir / "masks" / f"{sid}.png")
            store.add_sample(sid, 32, 40, {}, "upload", f"{sid}.png")
        plan = snapshot_samples(store, tmp_path / f"job{n}", store.list_samples())
        ids = [s["id"] for s in store.list_samples()]
        if n == 3:
            assert plan["held_out"] == [] and plan["train"] == ids and plan["held_out_rows"] == {i: 30 for i in ids}
            train = np.asarray(Image.open(tmp_path / "job3" / "data" / "train" / "masks" / f"{ids[0]}.png"))
            val = np.asarray(Image.open(tmp_path / "job3" / "data" / "val" / "masks" / f"{ids[0]}.png"))
            assert (train[:30] == 1).all() and (train[30:] == IGNORE_INDEX).all()
            assert (val[:30] == IGNORE_INDEX).all() and (val[30:] == 1).all()
        else:
            assert plan["held_out"] == [ids[1]] and plan["train"] == ids[:1] + ids[2:] and plan["held_out_rows"] == {}
            assert sorted(p.stem for p in (tmp_path / "job6" / "data" / "val" / "masks").iterdir()) == [ids[1]]


# --- the activation rule ----------------------------------------------------------------------------
def check(parent: float | None, new: float | None) -> dict:
    return {"parent": None if parent is None else {"miou": parent}, "new": None if new is None else {"miou": new}}


def test_the_rule_refuses_a_version_that_got_worse_on_either_check():
    assert decide({"samples": check(0.5, 0.6), "parent_validation": check(0.4, 0.395)}, 0.01)[0] is True
    ok, why = decide({"samples": check(0.5, 0.6), "parent_validation": check(0.4, 0.35)}, 0.01)
    assert not ok and "fell from 0.400 to 0.350" in why and "parent's validation" in why
    ok, why = decide({"samples": check(0.5, 0.45), "parent_validation": check(0.4, 0.45)}, 0.01)
    assert not ok and "held-out samples" in why
    ok, why = decide({"samples": check(0.5, 0.6), "parent_validation": check(None, None)}, 0.01)
    assert not ok and "no score" in why


@pytest.fixture(scope="module")
def dubai_parent(tmp_path_factory) -> tuple[Path, Path]:
    """The bundled model's weights, validated (its metadata says) on one real Dubai crop; two other crops as samples."""
    root = tmp_path_factory.mktemp("dubai")
    val = crop_folder(root / "val", "dubai_aerial", DUBAI[:1], 256, DUBAI_CLASSES)
    samples = crop_folder(root / "samples", "dubai_aerial", DUBAI[1:], 256)
    return base_with_validation(root / "parent.pt", BUNDLED_CHECKPOINT, val), samples


def test_checks_are_reported_and_a_worse_version_is_not_activated(tmp_path, dubai_parent):
    parent_file, samples = dubai_parent
    settings = Settings.from_env(data_dir=tmp_path / "data", worker=False, threads=1, device="cpu", replay=(),
                                 model=parent_file, activate_tolerance=0.0)
    store = Store(settings.data_dir)
    parent_id = register_initial(store, parent_file)["id"]
    add_samples(store, samples)
    wrecking = DEFAULT_RECIPE.with_(epochs=1, steps_per_epoch=3, lr=0.5, freeze_blocks=0)  # a learning rate that ruins the model
    job = queue_train_job(store, activate="if_not_worse", recipe=wrecking)
    run_train_job(store, settings, store.claim_job("train", "test"), threading.Event())
    done = store.get_job(job["id"])
    assert done["status"] == "done", done["error"]
    model = store.get_model(done["result"]["model"]["id"])
    checks = model["metrics"]["checks"]
    for name in ("samples", "parent_validation"):  # both measured, each beside the parent's number
        assert 0 <= checks[name]["parent"]["miou"] <= 1 and 0 <= checks[name]["new"]["miou"] <= 1, checks[name]
    assert "bottom rows of 2 sample(s)" in checks["samples"]["evaluated_on"]
    assert checks["parent_validation"]["new"]["miou"] < checks["parent_validation"]["parent"]["miou"]
    assert model["metrics"]["activation"]["activated"] is False and "fell from" in model["metrics"]["activation"]["reason"]
    assert store.active_model_id() == parent_id
    assert model["data"]["lr"] == 0.5 and model["data"]["freeze_blocks"] == 0 and model["data"]["held_out"] == []


def test_the_rule_activates_a_version_that_is_not_worse(tmp_path, dubai_parent):
    parent_file, samples = dubai_parent
    settings = Settings.from_env(data_dir=tmp_path / "data", worker=False, threads=1, device="cpu", replay=(),
                                 model=parent_file, activate_tolerance=1.0)  # any score counts as "not worse"
    store = Store(settings.data_dir)
    register_initial(store, parent_file)
    add_samples(store, samples)
    job = queue_train_job(store, epochs=1, steps_per_epoch=1, activate="if_not_worse")
    run_train_job(store, settings, store.claim_job("train", "test"), threading.Event())
    model = store.get_model(store.get_job(job["id"])["result"]["model"]["id"])
    assert model["metrics"]["activation"]["activated"] is True and store.active_model_id() == model["id"]


def test_the_validation_set_is_what_the_parent_held_out(dubai_parent):
    parent_file, _ = dubai_parent
    found = validation_set(parent_file)
    assert found["groups"] == [f"val/{DUBAI[0]}"] and found["missing"] == []


# --- bench-adapt ------------------------------------------------------------------------------------
def test_bench_adapt_runs_end_to_end_on_real_road_tiles(tmp_path, cli):
    """Three real CIL tiles (160 px crops): k = 1 and 2 annotated, the third scored; a tiny random-weight base."""
    from landsentry.models.nn.checkpoint import checkpoint_from_model
    from landsentry.models.nn.network import build_model

    source = crop_folder(tmp_path / "cil", "roads_cil", CIL_TILES, 160)
    val = crop_folder(tmp_path / "val", "dubai_aerial", DUBAI[:1], 128, DUBAI_CLASSES)
    torch.manual_seed(0)
    arch = {"name": "unet_lite0", "in_channels": 3, "num_classes": 6, "decoder_channels": [16, 16, 16, 16]}
    save_checkpoint(checkpoint_from_model(build_model(pretrained=False, **arch), arch), tmp_path / "random.pt")
    base = base_with_validation(tmp_path / "base.pt", tmp_path / "random.pt", val)
    out = tmp_path / "out" / "adapt.json"
    code, stdout, err = cli(["bench-adapt", "--base", base, "--data", f"roads_cil:{source}", "--k", "1", "2", "8",
                             "--steps", "1", "--epochs", "1", "--json", out])
    assert code == 0, err
    report = json.loads(out.read_text())
    assert [r["k"] for r in report["rows"]] == [1, 2] and report["skipped_k"] == [8]
    assert len(report["scored"]) == 1 and not set(report["scored"]) & {s for r in report["rows"] for s in r["annotated"]}
    for row in report["rows"]:
        assert len(row["annotated"]) == row["k"]
        for when in ("before", "after"):  # a road-only source: road is the one class scored
            assert [c for c, v in row[when]["iou"].items() if v is not None] == ["road"]
        assert row["minutes"] > 0 and row["samples_per_s"] > 0 and row["recipe"]["epochs"] == 1
        assert row["checks"]["parent_validation"]["parent"]["miou"] is not None
        assert row["checks"]["samples"]["new"]["miou"] is not None
    assert "| k | mIoU before → after |" in stdout and "\n| 1 | " in stdout and "\n| 2 | " in stdout
    png = Image.open(out.with_suffix(".png"))
    assert png.format == "PNG" and png.width >= 2 * 200
    assert not (tmp_path / "out" / "adapt.work").exists()  # its service data directory is removed


def test_bench_adapt_refuses_a_source_too_small_for_any_k(tmp_path, cli, tiny_checkpoint):
    source = crop_folder(tmp_path / "cil", "roads_cil", CIL_TILES[:2], 96)
    code, _, err = cli(["bench-adapt", "--base", tiny_checkpoint, "--data", f"roads_cil:{source}", "--k", "2", "4",
                        "--json", tmp_path / "x.json"])
    assert code == 2 and "has 2 images" in err and not (tmp_path / "x.json").exists()


def test_a_diverged_runs_curve_is_drawn(tmp_path):
    """A learning rate that blows the loss up (as the wrecking recipe above does) must not crash the epoch's plot."""
    from landsentry.training.curves import plot_curves

    path = plot_curves(tmp_path / "c.png", {"train loss": [3e12, 3e12 * (1 + 1e-17), float("inf")], "val mIoU": [float("nan")] * 3}, "x")
    assert Image.open(path).size == (720, 420)


def test_the_service_loop_reports_both_checks_and_applies_the_requested_rule(tmp_path, dubai_parent):
    """Real samples posted over HTTP, POST /v1/train with the rule asked for, the worker's job: the version's checks and decision."""
    import io
    import time

    from fastapi.testclient import TestClient

    from landsentry.api.app import create_app
    from landsentry.models.data.registry import records_from_spec
    from landsentry.models.data.samples import record_labels

    parent_file, samples = dubai_parent
    settings = Settings.from_env(data_dir=tmp_path / "data", model=parent_file, replay=(), activate_tolerance=1.0)
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/health").json()["model"]["id"]
        for record in records_from_spec(f"dubai:{samples}"):
            mask = io.BytesIO()
            Image.fromarray(record_labels(record)[0], mode="L").save(mask, format="PNG")
            r = client.post("/v1/samples", files={"image": (record.image.name, record.image.read_bytes()), "mask": ("m.png", mask.getvalue())})
            assert r.status_code == 201, r.text
        assert client.post("/v1/train", json={"activate": "sometimes"}).status_code == 422
        job = client.post("/v1/train", json={"epochs": 1, "steps_per_epoch": 2, "activate": "if_not_worse"}).json()
        deadline = time.monotonic() + 600
        while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.get(f"/v1/jobs/{job['id']}").json()
        assert job["status"] == "done", job["error"]
        model = job["result"]["model"]
        checks = model["metrics"]["checks"]
        assert checks["samples"]["parent"]["miou"] is not None and checks["parent_validation"]["parent"]["miou"] is not None
        assert model["metrics"]["activation"]["rule"] == "if_not_worse" and model["metrics"]["activation"]["activated"] is True
        assert model["active"] is True and model["parent"] == first
        assert client.get("/v1/health").json()["model"]["id"] == model["id"]  # the server answers with it now
