"""The service end to end through FastAPI's TestClient, with its real worker process.

Health and classes; interpreting the real sample tile (inline, and as a background job when the
inline limit is lowered), a before/after pair, result files; samples; retraining on the samples to
a new model version, activating it and rolling back. A tiny random-weight model keeps this fast
(the bundled model's accuracy is tested elsewhere). Small images are generated here with numpy.
"""
from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from landsentry.api.app import create_app
from landsentry.api.settings import Settings
from tests.conftest import ROOT, require_shared

TILE = ROOT / "sample_tiles" / "spacenet_atlanta_pan.tif"  # real 900x900 GeoTIFF (SpaceNet, CC BY-SA 4.0)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def scene(seed: int, h: int = 96, w: int = 128, house: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A generated RGB image (noise, with a bright block for a 'house') and its index mask."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    if house:
        image[20:60, 30:90] = 220
        mask[20:60, 30:90] = 1
    mask[:4] = 255
    return image, mask


@pytest.fixture(scope="module")
def trainable_checkpoint(tmp_path_factory) -> Path:
    """Like conftest's tiny_checkpoint, but with the architecture stored as `landsentry train` stores it
    (a list of decoder channels), so `--init-from` accepts it."""
    from landsentry.models.nn.checkpoint import checkpoint_from_model, save_checkpoint
    from landsentry.models.nn.network import build_model

    torch.manual_seed(0)
    arch = {"name": "unet_lite0", "in_channels": 3, "num_classes": 6, "decoder_channels": [16, 16, 16, 16]}
    model = build_model(pretrained=False, **arch)
    path = tmp_path_factory.mktemp("api_ckpt") / "tiny-service.pt"
    save_checkpoint(checkpoint_from_model(model, arch, metadata={"purpose": "tests"}), path)
    return path


@pytest.fixture(scope="module")
def client(tmp_path_factory, trainable_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path_factory.mktemp("service"), model=trainable_checkpoint,
                                 inline_max_pixels=400 * 400, replay=())
    with TestClient(create_app(settings)) as c:
        c.settings = settings
        yield c


def wait_job(client: TestClient, job_id: str, timeout: float = 240) -> dict:
    """Poll a job until it is done or failed (the limit only guards against a hung test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_health_and_classes(client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["model"]["active"] and health["worker"] == "running"
    assert health["model"]["parent"] is None
    assert health["backend"] == "onnx"  # the service runs the fastest installed path (ONNX Runtime here)
    classes = client.get("/v1/classes").json()
    assert [c["name"] for c in classes["classes"]][:3] == ["background", "building", "road"]
    assert classes["ignore_index"] == 255 and classes["kinds"] == ["building", "road", "earthwork"]
    assert set(classes["kind_colors"]) >= {"building", "new_building", "new_earthwork"}
    assert "/v1/interpret" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_small_image_is_interpreted_inline(client):
    image, _ = scene(1)
    r = client.post("/v1/interpret", files={"image": ("whatever/../../name.png", png(image))})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "done" and job["kind"] == "single" and job["progress"] == 1.0
    result = job["result"]
    assert result["flags"]["type"] == "FeatureCollection"
    assert result["grid"]["width"] == 128 and result["grid"]["height"] == 96 and result["grid"]["crs"] is None
    classes = Image.open(io.BytesIO(client.get(result["files"]["classes_png"]).content))
    assert classes.size == (128, 96) and classes.mode == "L"
    after = Image.open(io.BytesIO(client.get(result["files"]["after"]).content))
    assert after.size == (128, 96)
    assert client.get(result["files"]["overlay"]).headers["content-type"] == "image/png"
    # the upload's name was not used for any file
    names = [p.name for p in (client.settings.data_dir / "jobs" / job["id"]).rglob("*")]
    assert "name.png" not in names and "after.png" in names


def test_large_real_tile_becomes_a_job(client):
    """The 900x900 SpaceNet tile is over this app's inline limit (400x400): 202, then the worker runs it
    (a new worker: the first is killed here, and the server starts another)."""
    first = client.app.state.worker
    first.send_signal(signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 30
    while client.app.state.worker is first:
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.2)
    with TILE.open("rb") as fh:
        r = client.post("/v1/interpret", files={"image": ("tile.tif", fh)}, data={"wgs84": "true"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running")
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["grid"]["crs"] == "EPSG:32616" and result["grid"]["transform"][0] == 0.5
    assert {"flags", "flags_wgs84", "classes_tif", "summary_csv", "after", "classes_png"} <= set(result["files"])
    tif = client.get(result["files"]["classes_tif"])
    assert tif.status_code == 200 and tif.content[:4] == b"II*\x00"
    assert client.get(f"/v1/jobs/{job['id']}/files/landsentry.db").status_code == 404
    listed = client.get("/v1/jobs").json()["jobs"]
    assert any(j["id"] == job["id"] and j["result"]["flags"] is None for j in listed)


def test_pair_with_a_new_building(client):
    before, _ = scene(2, house=False)
    after, _ = scene(2, house=True)
    r = client.post("/v1/interpret", files={"image": ("b.png", png(after)), "before": ("a.png", png(before))})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["kind"] == "pair"
    files = job["result"]["files"]
    assert {"before", "after", "classes_png", "classes_tif", "overlay"} <= set(files)
    assert files["classes_tif"].endswith("/after_classes.tif")
    for feature in job["result"]["flags"]["features"]:
        assert feature["properties"]["kind"].startswith("new_")


def test_real_georeferenced_pair_as_a_job(client):
    """Real NAIP 2010/2020 4-band GeoTIFFs (../shared/data): aligned on the after grid, previews on that grid."""
    before = require_shared("naip_pair/m_4709963_se_14_1_20100629.tif")
    after = require_shared("naip_pair/m_4709963_se_14_1_20200831.tif")
    with before.open("rb") as b, after.open("rb") as a:
        r = client.post("/v1/interpret", files={"image": ("a.tif", a), "before": ("b.tif", b)})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    grid = job["result"]["grid"]
    assert grid["crs"] == "EPSG:26914"
    for name in ("before", "after", "classes_png"):
        png_file = Image.open(io.BytesIO(client.get(job["result"]["files"][name]).content))
        assert png_file.size == (grid["width"], grid["height"]), name
    assert job["result"]["flags"]["crs"]["properties"]["name"].endswith("26914")


def test_samples_train_activate_and_roll_back(client):
    original = client.get("/v1/health").json()["model"]["id"]
    assert client.post("/v1/train").status_code == 409  # no samples yet
    ids = []
    for seed in range(3):
        image, mask = scene(10 + seed)
        r = client.post("/v1/samples", files={"image": ("x.png", png(image)), "mask": ("m.png", png(mask))})
        assert r.status_code == 201, r.text
        assert r.json()["class_pixels"]["building"] == 40 * 60 and r.json()["class_pixels"]["ignore"] == 4 * 128
        ids.append(r.json()["id"])
    # a sample made from an interpretation: the page corrects classes.png and sends it back with the job id
    image, mask = scene(20)
    job = client.post("/v1/interpret", files={"image": ("x.png", png(image))}).json()
    canvas = np.dstack([mask, mask, mask, np.full_like(mask, 255)])  # what a browser canvas exports (RGBA)
    r = client.post("/v1/samples", data={"job_id": job["id"]}, files={"mask": ("m.png", png(canvas, "RGBA"))})
    assert r.status_code == 201, r.text
    assert r.json()["source"] == f"job:{job['id']}"
    ids.append(r.json()["id"])
    assert [s["id"] for s in client.get("/v1/samples").json()["samples"]] == ids
    assert client.delete(f"/v1/samples/{ids.pop()}").status_code == 204

    r = client.post("/v1/train", json={"epochs": 2, "steps_per_epoch": 2})
    assert r.status_code == 202, r.text
    assert client.post("/v1/train", json={"epochs": 1}).status_code == 409  # one at a time
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    model = job["result"]["model"]
    assert model["parent"] == original and not model["active"]
    # three samples: each trains on its top rows and is checked on the bottom rows holding a quarter of its labels
    assert model["data"]["samples"] == ids and model["data"]["held_out"] == [] and set(model["data"]["held_out_rows"]) == set(ids)
    assert model["data"]["epochs"] == 2
    assert 0.0 <= model["metrics"]["miou"] <= 1.0 and "held-out" in model["metrics"]["evaluated_on"]
    assert set(model["metrics"]["parent"]["iou"]) == set(model["metrics"]["iou"])
    checks = model["metrics"]["checks"]
    assert checks["samples"]["new"]["miou"] == model["metrics"]["miou"] and checks["samples"]["parent"]["miou"] is not None
    assert checks["parent_validation"]["new"] is None  # this parent says nothing of its validation data
    assert model["metrics"]["activation"] == {"rule": "never", "tolerance": 0.01, "activated": False,
                                              "reason": "not activated: compare, then activate it by hand"}
    # the run was given a config file and reported through its progress file (api/train_job.py)
    job_dir = client.settings.data_dir / "jobs" / job["id"]
    assert json.loads((job_dir / "train.json").read_text())["epochs"] == 2
    reported = [json.loads(line) for line in (job_dir / "run" / "progress.jsonl").read_text().splitlines()]
    assert [(e["event"], e["epoch"]) for e in reported if e["event"] == "epoch"] == [("epoch", 1), ("epoch", 2)]

    # activate: the predictor reloads without a restart, and interpretations say which model answered
    assert client.post(f"/v1/models/{model['id']}/activate").json()["active"] is True
    assert client.get("/v1/health").json()["model"]["id"] == model["id"]
    image, _ = scene(30)
    assert client.post("/v1/interpret", files={"image": ("x.png", png(image))}).json()["result"]["model"] == model["id"]
    listed = client.get("/v1/models").json()
    assert listed["active"] == model["id"] and [m["id"] for m in listed["models"]] == [original, model["id"]]
    # roll back
    assert client.post(f"/v1/models/{original}/activate").status_code == 200
    assert client.get("/v1/health").json()["model"]["id"] == original
    assert client.get("/v1/models").json()["active"] == original


def test_examples_serve_the_sample_tiles_and_nothing_else(client):
    listed = client.get("/v1/examples").json()["examples"]
    assert {e["id"] for e in listed} == {"atlanta", "demo-pair"}
    pair = next(e for e in listed if e["id"] == "demo-pair")
    assert set(pair["files"]) == {"image", "before", "permits"}
    r = client.get(pair["files"]["before"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    assert r.content == (ROOT / "sample_tiles" / "demo_before.tif").read_bytes()
    for name in ("make_demo_pair.py", "README.md", "..%2Fpyproject.toml", "%2Fetc%2Fpasswd"):
        assert client.get(f"/v1/examples/files/{name}").status_code == 404, name
