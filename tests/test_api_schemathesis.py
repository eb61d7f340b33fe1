"""The API does what its OpenAPI document says: schemathesis against the document `landsentry serve` serves.

Every check schemathesis has (status codes, media types, response schemas and headers, `Allow` on
undocumented methods, auth, positive and negative data), through its coverage, fuzzing and stateful
phases with a bounded number of examples. Real ids are handed to it (a finished job with its files,
a queued job to cancel, a sample to delete, a sample tile), so it reaches past the 404s.

Two exemptions, stated in the config, for what a schema cannot express: an upload whose bytes are not
an image is refused with 415/422 (positive-data acceptance allows those two codes for the two upload
operations), and a flags `bbox` of four numbers out of order or outside WGS84's ranges is refused with
422. Everything else must pass with 0 failures.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request

import numpy as np
from PIL import Image

from tests.serving import serve

TOKEN = "fuzz-token"
MAX_EXAMPLES = 60
CONFIG = """
headers = {{ Authorization = "Bearer {token}" }}
seed = 20261201

[[operations]]
include-path-regex = "^/v1/(interpret|samples)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "404", "409", "415", "422"]

[[operations]]
include-path = "/v1/flags"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2XX", "422"]

[[operations]]
include-path = "/v1/jobs/{{job_id}}"
parameters = {{ job_id = "{done}" }}

[[operations]]
include-path = "/v1/jobs/{{job_id}}/files/{{name}}"
parameters = {{ job_id = "{done}", name = "overlay.png" }}

[[operations]]
include-path = "/v1/jobs/{{job_id}}/segments"
parameters = {{ job_id = "{done}" }}

[[operations]]
include-path = "/v1/jobs/{{job_id}}/cancel"
parameters = {{ job_id = "{queued}" }}

[[operations]]
include-path = "/v1/samples/{{sample_id}}"
parameters = {{ sample_id = "{sample}" }}

[[operations]]
include-path = "/v1/examples/files/{{name}}"
parameters = {{ name = "demo_after.tif" }}
"""


def _png(h: int, w: int, mask: bool = False) -> bytes:
    array = np.zeros((h, w), np.uint8) if mask else np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, fields: dict[str, tuple[str, bytes] | str]) -> dict:
    boundary = "schemathesis-setup"
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\nContent-Type: image/png'
            parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + value[1] + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    request = urllib.request.Request(url, data=b"".join(parts) + f"--{boundary}--\r\n".encode(), method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.load(r)


def test_schemathesis_finds_nothing(tmp_path, tiny_checkpoint):
    env = {"LANDSENTRY_MODEL": str(tiny_checkpoint), "LANDSENTRY_WORKER": "false", "LANDSENTRY_TOKEN": TOKEN,
           "LANDSENTRY_INLINE_MAX_PIXELS": str(80 * 80), "LANDSENTRY_MAX_UPLOAD_MB": "2", "LANDSENTRY_REPLAY": "none"}
    with serve(tmp_path / "data", **env) as base:
        done = _post(base + "/v1/interpret", {"image": ("small.png", _png(64, 64))})
        queued = _post(base + "/v1/interpret", {"image": ("large.png", _png(96, 96))})  # no worker: it stays queued
        sample = _post(base + "/v1/samples", {"job_id": done["id"], "mask": ("mask.png", _png(64, 64, mask=True))})
        assert done["status"] == "done" and queued["status"] == "queued"
        document = json.loads(urllib.request.urlopen(base + "/openapi.json", timeout=30).read())
        operations = sum(method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
                         for item in document["paths"].values() for method in item)
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG.format(token=TOKEN, done=done["id"], queued=queued["id"], sample=sample["id"]))
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", base + "/openapi.json",
             "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
             "--workers", "1", "--continue-on-failure", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-8000:]
    assert operations >= 17  # every documented operation is exercised (17 when /v1/flags and segments came)
    assert f"{operations} selected / {operations} total" in report and "failed" not in report.split("SUMMARY")[-1], report[-3000:]
