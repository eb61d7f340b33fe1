"""Kill the real server (SIGKILL) during a train job, start it again: the job resumes and nothing is lost.

Runs `landsentry serve` as a separate process on a free port with a temporary data directory and a
tiny random-weight model; the samples are small images generated here with numpy.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT
from tests.serving import call, free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGKILL")


def multipart(files: dict[str, bytes]) -> tuple[bytes, dict]:
    boundary = "landsentrytestboundary"
    parts = []
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions `path` (the worker and training processes do)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


class Server:
    def __init__(self, data_dir: Path, checkpoint: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LANDSENTRY_MODEL": str(checkpoint), "LANDSENTRY_REPLAY": "none",
               "LANDSENTRY_MAX_TRAIN_EPOCHS": "50"}  # a long run to kill: over the default cap of 10
        self.log = (data_dir.parent / f"server-{self.port}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "landsentry", "serve", "--port", str(self.port), "--data-dir", str(data_dir),
                                      "--log-level", "warning"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server exited: " + (data_dir.parent / f"server-{self.port}.log").read_text()
            try:
                if call(self.url + "/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    from landsentry.models.nn.checkpoint import checkpoint_from_model, save_checkpoint
    from landsentry.models.nn.network import build_model

    torch.manual_seed(0)
    arch = {"name": "unet_lite0", "in_channels": 3, "num_classes": 6, "decoder_channels": [16, 16, 16, 16]}
    path = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint_from_model(build_model(pretrained=False, **arch), arch), path)
    return path


def test_killed_mid_training_resumes_after_restart(tmp_path, checkpoint):
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data, checkpoint)
    try:
        rng = np.random.default_rng(0)
        for _ in range(3):
            image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
            mask = np.zeros((64, 96), np.uint8)
            mask[10:40, 20:70] = 1
            status, _ = call(server.url + "/v1/samples", "POST", *multipart({"image": png(image), "mask": png(mask)}))
            assert status == 201
        samples = call(server.url + "/v1/samples")[1]["samples"]
        models = call(server.url + "/v1/models")[1]["models"]
        status, job = call(server.url + "/v1/train", "POST", json.dumps({"epochs": 40, "steps_per_epoch": 1}).encode(),
                           {"Content-Type": "application/json"})
        assert status == 202
        # wait until at least one epoch is saved, then kill the server with no chance to clean up
        last = data / "jobs" / job["id"] / "run" / "last.pt"
        deadline = time.monotonic() + 180
        while not last.is_file():
            assert time.monotonic() < deadline, "training never saved an epoch"
            time.sleep(0.1)
        assert call(server.url + f"/v1/jobs/{job['id']}")[1]["status"] == "running"
        server.kill()
        deadline = time.monotonic() + 15  # the worker and the training process die with the server
        while processes_using(data):
            assert time.monotonic() < deadline, f"processes outlived the server: {processes_using(data)}"
            time.sleep(0.2)
        server.stop()

        server = Server(data, checkpoint)
        assert call(server.url + "/v1/samples")[1]["samples"] == samples
        assert call(server.url + "/v1/models")[1]["models"] == models
        deadline = time.monotonic() + 300
        while True:
            record = call(server.url + f"/v1/jobs/{job['id']}")[1]
            if record["status"] in ("done", "failed"):
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.5)
        assert record["status"] == "done", record["error"]
        log = (data / "jobs" / job["id"] / "run" / "train.log").read_text()
        assert "resumed from" in log  # continued from the saved epoch, not started over
        after = call(server.url + "/v1/models")[1]
        assert [m["id"] for m in after["models"]][:1] == [models[0]["id"]] and len(after["models"]) == 2
        assert after["models"][1]["data"]["epochs"] == 40
        for sample in samples:  # sample files intact too
            assert (data / "samples" / "masks" / f"{sample['id']}.png").is_file()
    finally:
        server.stop()
