"""Shared fixtures: the real-data folder, a tiny (fast) checkpoint, and an in-process CLI runner."""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repo is used in place
    sys.path.insert(0, str(ROOT))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""Real imagery (../shared/data, see its README); read in place, never copied into the repo."""

# The test machine has 2 cores. LANDSENTRY_TEST_THREADS=1 is much faster when other jobs share them.
torch.set_num_threads(int(os.environ.get("LANDSENTRY_TEST_THREADS", "2")))


TINY_ARCH = {"name": "unet_lite0", "in_channels": 3, "num_classes": 6, "decoder_channels": (16, 16, 16, 16)}


def require_shared(relpath: str) -> Path:
    """Path of a file under ../shared/data; missing: fail under CI=true, skip elsewhere."""
    path = SHARED / relpath
    if not path.exists():
        message = f"shared test data missing: {path} (see ../shared/data/README.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Crop-sized tensor ops on one thread, as in DataLoader workers: on a busy 2-core machine OpenMP
    threads otherwise spin-wait and every tiny op costs milliseconds. Restored afterwards. Modules
    that work on crops use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_file():
    """`shared_file("naip_pair/x.tif")` -> Path; fails under CI=true when missing, skips otherwise."""
    return require_shared


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved landsentry checkpoint: Lite0 encoder, 16-channel decoder, random weights with a fixed seed."""
    from landsentry.models.nn.checkpoint import checkpoint_from_model, save_checkpoint
    from landsentry.models.nn.network import build_model

    torch.manual_seed(0)
    model = build_model("unet_lite0", 3, 6, decoder_channels=(16, 16, 16, 16), pretrained=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(checkpoint_from_model(model, TINY_ARCH, metadata={"purpose": "tests"}), path)
    return path


@pytest.fixture(scope="session")
def sharp_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with its head weights x40: confident, spatially varied classes, so two real dates
    differ in places and give real flags to check the plumbing on, without a trained model."""
    from landsentry.models.nn.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.state_dict = dict(ckpt.state_dict)
    ckpt.state_dict["segmentation_head.weight"] = ckpt.state_dict["segmentation_head.weight"] * 40
    return save_checkpoint(ckpt, tmp_path_factory.mktemp("sharp") / "sharp.pt")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`landsentry ARGV` in this process: (exit code, stdout, stderr); argparse exits become codes."""
    import landsentry

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = landsentry.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def cli():
    """The in-process CLI runner (see `run_cli`)."""
    return run_cli


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL 15 on loopback for the whole session (tests/postgres.py), stopped after.
    Missing server binaries: a failure under CI=true, a skip elsewhere."""
    from tests.postgres import start_postgres

    try:
        server = start_postgres()
    except FileNotFoundError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    import secrets

    return postgres.create_database(f"t_{secrets.token_hex(6)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request) -> str | None:
    """Each store test runs on both backends: None (the embedded SQLite file) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("database_url")
