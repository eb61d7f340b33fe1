"""Bad requests get a 4xx with a message, never a 5xx or a traceback; limits, unknown ids, token, CORS.

No worker process here (requests only). Broken files are generated in the tests from small numpy
images and the real sample tile (sample_tiles/spacenet_atlanta_pan.tif).
"""
from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image

from landsentry.api.app import create_app
from landsentry.api.settings import Settings
from tests.conftest import ROOT

TILE = ROOT / "sample_tiles" / "spacenet_atlanta_pan.tif"


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb(h: int = 64, w: int = 64, seed: int = 0) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header that claims a huge image (a decompression bomb), with almost no data."""
    raw = bytearray(rgb(8, 8))
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(raw)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_checkpoint) -> Settings:
    return Settings.from_env(data_dir=tmp_path_factory.mktemp("bad"), model=tiny_checkpoint, worker=False,
                             max_upload_mb=3, max_sample_pixels=200 * 200)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def detail(r) -> str:
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "Traceback" not in body["detail"]
    return body["detail"]


TILE_BYTES = TILE.read_bytes()


@pytest.mark.parametrize("files, data, status, words", [
    ({"image": ("a.txt", b"just some text")}, {}, 415, "not a PNG, JPEG or GeoTIFF"),
    ({"image": ("a.png", b"")}, {}, 422, "empty"),
    ({"image": ("a.png", rgb()[:200])}, {}, 422, "truncated"),
    ({"image": ("a.tif", TILE_BYTES[: len(TILE_BYTES) // 3])}, {}, 422, "truncated or corrupt"),
    ({"image": ("a.png", bomb_png())}, {}, 413, "over the limit"),
    ({"image": ("a.png", rgb(64, 64)), "before": ("b.png", rgb(64, 80))}, {}, 422, "same size"),
    ({"image": ("a.png", rgb(64, 64)), "before": ("b.txt", b"%PDF-1.4")}, {}, 415, "not a PNG"),
    ({"image": ("a.tif", TILE_BYTES), "permits": ("p.geojson", b"this is not json")}, {}, 422, "not GeoJSON"),
    ({"image": ("a.tif", TILE_BYTES), "permits": ("p.geojson", json.dumps({"type": "Point", "coordinates": [1, 2]}).encode())}, {}, 422, "permits"),
    ({"image": ("a.png", rgb()), "permits": ("p.geojson", b'{"type": "FeatureCollection", "features": []}')}, {}, 422, "georeferenced"),
    ({"before": ("b.png", rgb())}, {}, 422, "missing field 'image'"),
    ({"image": ("a.png", rgb())}, {"wgs84": "maybe"}, 422, "wgs84"),
])
def test_interpret_refuses_bad_input(client, settings, files, data, status, words):
    before = set((settings.data_dir / "jobs").iterdir())
    r = client.post("/v1/interpret", files=files, data=data)
    assert r.status_code == status, r.text
    assert words in detail(r)
    assert set((settings.data_dir / "jobs").iterdir()) == before  # refused input leaves nothing behind


def test_malformed_multipart_is_422(client):
    r = client.post("/v1/interpret", content=b"--xyz\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 422, r.text
    detail(r)


def test_upload_limit_is_413(client):
    big = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    r = client.post("/v1/interpret", files={"image": ("big.png", png(big))})  # ~4.3 MB > 3 MB limit
    assert r.status_code == 413 and "upload limit" in detail(r)


def _sample(client, image: bytes | None, mask: bytes, data: dict | None = None):
    files = {"mask": ("m.png", mask)}
    if image is not None:
        files["image"] = ("i.png", image)
    return client.post("/v1/samples", files=files, data=data or {})


@pytest.mark.parametrize("make, status, words", [
    (lambda: (rgb(64, 64), png(np.zeros((64, 80), np.uint8))), 422, "64x64"),
    (lambda: (rgb(64, 64), png(np.full((64, 64), 7, np.uint8))), 422, "unknown class ids [7]"),
    (lambda: (rgb(64, 64), rgb(64, 64)), 422, "colour"),
    (lambda: (rgb(64, 64), b"\xff\xd8\xff\xe0 not a png"), 415, "must be a PNG"),
    (lambda: (rgb(64, 64), png(np.zeros((64, 64), np.uint8))[:60]), 422, "damaged or truncated"),
    (lambda: (rgb(300, 300), png(np.zeros((300, 300), np.uint8))), 413, "over the limit"),
    (lambda: (None, png(np.zeros((64, 64), np.uint8))), 422, "either an image file or a job_id"),
    (lambda: (b"GIF89a....", png(np.zeros((64, 64), np.uint8))), 415, "not a PNG, JPEG or GeoTIFF"),
])
def test_samples_refuse_bad_masks_and_images(client, settings, make, status, words):
    image, mask = make()
    r = _sample(client, image, mask)
    assert r.status_code == status, r.text
    assert words in detail(r)
    assert client.get("/v1/samples").json()["samples"] == []
    assert not any((settings.data_dir / "samples" / "masks").iterdir())


def test_unknown_ids_are_404(client):
    assert client.get("/v1/jobs/j_nope").status_code == 404
    assert client.get("/v1/jobs/j_nope/files/overlay.png").status_code == 404
    assert client.delete("/v1/samples/s_nope").status_code == 404
    r = client.post("/v1/models/m_nope/activate")
    assert r.status_code == 404 and "m_nope" in detail(r)
    r = _sample(client, None, png(np.zeros((64, 64), np.uint8)), {"job_id": "j_nope"})
    assert r.status_code == 404


def test_train_needs_samples_and_valid_options(client):
    r = client.post("/v1/train")
    assert r.status_code == 409 and "no samples" in detail(r)
    r = client.post("/v1/train", json={"epochs": 0})
    assert r.status_code == 422 and "epochs" in detail(r)
    r = client.post("/v1/train", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_page_and_static_are_served(client):
    from landsentry.api.app import STATIC

    page = client.get("/")
    if (STATIC / "index.html").is_file():
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    else:
        assert page.status_code == 404 and "not installed" in detail(page)
    assert client.get("/static/does-not-exist.js").status_code == 404
    assert client.get("/static/../api/settings.py").status_code == 404


def test_streamed_body_over_the_limit_is_413(client):
    """No Content-Length (chunked upload): the limit is enforced while the body streams in."""
    boundary = "b0undary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(40):
            yield b"\0" * 100_000  # 4 MB > the 3 MB limit

    r = client.post("/v1/interpret", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "upload limit" in detail(r)


def test_token_guards_changes_but_not_reads(tmp_path, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path, model=tiny_checkpoint, worker=False, token="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/health").status_code == 200
        assert c.post("/v1/train").status_code == 401
        assert c.post("/v1/train", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.delete("/v1/samples/s_x").status_code == 401
        assert c.post("/v1/train", headers={"Authorization": "Bearer s3cret"}).status_code == 409  # authorised; no samples
        assert "access-control-allow-origin" not in c.get("/v1/health", headers={"Origin": "http://elsewhere"}).headers


def test_cors_only_when_configured(tmp_path, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path, model=tiny_checkpoint, worker=False,
                                 cors_origins=("http://maps.example",))
    with TestClient(create_app(settings)) as c:
        r = c.get("/v1/health", headers={"Origin": "http://maps.example"})
        assert r.headers["access-control-allow-origin"] == "http://maps.example"
        assert "access-control-allow-origin" not in c.get("/v1/health", headers={"Origin": "http://other"}).headers


def test_serve_refuses_bad_setup_in_one_line(tmp_path, cli):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(["serve", "--data-dir", tmp_path / "file"])
    assert code == 2 and "is a file, not a folder" in err and "Traceback" not in err


def test_one_server_per_data_dir(tmp_path, tiny_checkpoint):
    from landsentry.api.app import hold_data_dir
    from landsentry.models.vocabulary.errors import LandsentryError

    held = hold_data_dir(tmp_path)
    try:
        with pytest.raises(LandsentryError, match="another landsentry server"):
            hold_data_dir(tmp_path)
    finally:
        held.close()
    hold_data_dir(tmp_path).close()  # free again once the first lets go


# --- the API's own words: its fields, its limits, the user's file names --------------------------------

def test_many_bands_are_chosen_with_the_bands_form_field(client, shared_file):
    from tests.bad_files import naip_crop

    data, geo = naip_crop(shared_file, 128)
    buffer = io.BytesIO()
    with rasterio.open(buffer, "w", driver="GTiff", width=128, height=128, count=16, dtype="uint8", **geo) as ds:
        ds.write(np.concatenate([data] * 6)[:16])
    sixteen = buffer.getvalue()
    r = client.post("/v1/interpret", files={"image": ("scene16.tif", sixteen)})
    assert r.status_code == 422
    assert "scene16.tif has 16 data band(s)" in detail(r) and "the form field 'bands'" in detail(r) and "--bands" not in detail(r)
    r = client.post("/v1/interpret", files={"image": ("scene16.tif", sixteen)}, data={"bands": "17,2,1"})
    assert r.status_code == 422 and "17 in the form field 'bands' is out of range" in detail(r)
    r = client.post("/v1/interpret", files={"image": ("scene16.tif", sixteen)}, data={"bands": "three"})
    assert r.status_code == 422 and "bands: comma-separated band numbers like 4,3,2" in detail(r)
    r = client.post("/v1/interpret", files={"image": ("scene16.tif", sixteen)}, data={"bands": "3,2,1"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["summary"]["inputs"]["image"]["bands"] == [3, 2, 1]


@pytest.mark.parametrize("path", ["/v1/interpret", "/v1/samples"])
def test_a_body_that_is_not_multipart_is_told_so(client, path):
    r = client.post(path, json={"image": "scene.tif"})
    assert r.status_code == 422 and "this request must be multipart/form-data" in detail(r) and "application/json" in detail(r)
    r = client.post(path)
    assert r.status_code == 422 and "had no form body" in detail(r)


def test_a_text_field_where_a_file_belongs_is_named(client):
    r = client.post("/v1/interpret", files={"image": ("a.png", rgb())}, data={"before": "null"})
    assert r.status_code == 422 and detail(r) == "before must be a file (a form part with a filename), not a text field"


def test_pair_errors_name_the_uploaded_files(client):
    r = client.post("/v1/interpret", files={"image": ("2020.png", rgb(64, 64)), "before": ("2010.png", rgb(64, 80))})
    assert r.status_code == 422
    assert detail(r).startswith("the before image (2010.png) is 80x64 px but the after image (2020.png) is 64x64 px")
    assert "before.png" not in detail(r) and "after.png" not in detail(r)


def test_405_lists_every_method_of_the_path(client):
    r = client.options("/v1/samples")
    assert r.status_code == 405 and {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}
    r = client.put("/v1/jobs/j_x/cancel")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_per_job_pixel_budget_and_training_caps_come_from_the_settings(tmp_path, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path, model=tiny_checkpoint, worker=False, max_job_pixels=64 * 64 * 2 - 1,
                                 max_train_epochs=3, max_train_steps=30)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/interpret", files={"image": ("a.png", rgb(64, 64)), "before": ("b.png", rgb(64, 64, 1))})
        assert r.status_code == 413 and "8,192 pixels together" in detail(r) and "LANDSENTRY_MAX_JOB_PIXELS" in detail(r)
        assert not any((tmp_path / "jobs").iterdir())
        assert c.post("/v1/interpret", files={"image": ("a.png", rgb(64, 64))}).status_code == 200  # one image fits
        r = c.post("/v1/train", json={"epochs": 4})
        assert r.status_code == 422 and detail(r) == "epochs: 4 is over this server's cap of 3 (LANDSENTRY_MAX_TRAIN_EPOCHS)"
        r = c.post("/v1/train", json={"steps_per_epoch": 31})
        assert r.status_code == 422 and "LANDSENTRY_MAX_TRAIN_STEPS" in detail(r)
        caps = c.get("/openapi.json").json()["components"]["schemas"]["TrainRequest"]["properties"]
        assert caps["epochs"]["maximum"] == 3 and caps["steps_per_epoch"]["maximum"] == 30  # the document says so too


def test_serve_binds_an_open_api_to_this_machine_only(tmp_path, cli):
    from landsentry.api.cli import check_exposure, is_loopback

    code, _, err = cli(["serve", "--host", "0.0.0.0", "--data-dir", tmp_path])
    assert code == 2 and "--host 0.0.0.0 would let anyone" in err and "--insecure" in err and len(err.strip().splitlines()) == 1
    assert all(map(is_loopback, ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "192.168.1.5", "::", "example.org")))
    check_exposure("0.0.0.0", "a-token", insecure=False)  # a token: fine
    check_exposure("0.0.0.0", None, insecure=True)  # said out loud: fine


def test_the_cli_bomb_message_names_one_limit(tmp_path, cli, tiny_checkpoint):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    code, _, err = cli(["predict", bomb, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint])
    assert code == 2
    assert "bomb.png claims 10,000,000,000 pixels, over the limit of 150,000,000 (set LANDSENTRY_MAX_DECODED_PIXELS" in err
    assert err.count("limit") == 1 and "178956970" not in err  # not Pillow's own limit as well
