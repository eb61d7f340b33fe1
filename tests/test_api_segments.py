"""GET /v1/jobs/{id}/segments: SLIC superpixels of an interpreted image for the page's segment fill.

The image is the real SpaceNet Atlanta sample tile (sample_tiles/, 900x900 panchromatic) interpreted
inline by the tiny test model; segments are checked for what the page relies on: the preview's size,
numbers 0..n-1 in a 16-bit PNG, connected patches of about the asked size, the same file on a second call.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy import ndimage

from landsentry.api.app import create_app
from landsentry.api.settings import Settings
from tests.conftest import ROOT

TILE = ROOT / "sample_tiles" / "spacenet_atlanta_pan.tif"


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path_factory.mktemp("segments"), model=tiny_checkpoint, worker=False,
                                 inline_max_pixels=1000 * 1000, replay=())
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def job(client):
    r = client.post("/v1/interpret", files={"image": (TILE.name, TILE.read_bytes())})
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    return r.json()


def test_segments_cover_the_preview_in_connected_patches(client, job):
    r = client.get(f"/v1/jobs/{job['id']}/segments", params={"size": "medium"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.mode == "I;16"
    segments = np.asarray(picture)
    assert segments.shape == (900, 900)
    numbers = np.unique(segments)
    assert numbers[0] == 0 and numbers[-1] == len(numbers) - 1  # 0..n-1, none missing
    assert 900 * 900 / 400 / 2 < len(numbers) < 900 * 900 / 400 * 2  # about 400 px each
    for n in numbers[:: max(1, len(numbers) // 50)]:  # a sample of them: one connected patch each
        assert ndimage.label(segments == n)[1] == 1
    again = client.get(f"/v1/jobs/{job['id']}/segments")  # medium is the default; computed once, then kept
    assert again.content == r.content
    small = np.asarray(Image.open(io.BytesIO(client.get(f"/v1/jobs/{job['id']}/segments?size=small").content)))
    assert len(np.unique(small)) > 2 * len(numbers)


def test_segments_refusals(client, job):
    assert client.get("/v1/jobs/j_nope/segments").status_code == 404
    r = client.get(f"/v1/jobs/{job['id']}/segments", params={"size": "huge"})
    assert r.status_code == 422 and "size" in r.json()["detail"]
    buffer = io.BytesIO()  # over the inline limit: queued, and no worker runs here
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1100, 1000, 3), dtype=np.uint8)).save(buffer, format="PNG")
    queued = client.post("/v1/interpret", files={"image": ("big.png", buffer.getvalue())})
    assert queued.status_code == 202, queued.text
    r = client.get(f"/v1/jobs/{queued.json()['id']}/segments")
    assert r.status_code == 409 and "not a finished interpretation (status queued)" in r.json()["detail"]
