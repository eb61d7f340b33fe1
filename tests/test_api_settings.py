"""Service settings from LANDSENTRY_* variables: names, units and lists as the README documents them,
a bad value as one line (exit 2) from `landsentry serve`, and the hand-off to the worker without the token."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from landsentry.api.settings import Settings
from landsentry.models.nn.checkpoint import BUNDLED_CHECKPOINT
from landsentry.models.vocabulary.errors import InputError


@pytest.fixture
def env(monkeypatch):
    """Set LANDSENTRY_* variables for one test, with every other LANDSENTRY_* variable unset."""
    for name in list(os.environ):
        if name.startswith("LANDSENTRY_"):
            monkeypatch.delenv(name)

    def setenv(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"LANDSENTRY_{key}", value)

    return setenv


def test_defaults(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env()
    assert s.data_dir == tmp_path / "landsentry-data" and s.data_dir.is_absolute()
    assert s.token is None and s.cors_origins == () and s.replay is None
    assert s.model == BUNDLED_CHECKPOINT.resolve()
    assert s.max_upload_bytes == 200 * 1024 * 1024 and s.threads == 1 and s.device == "auto"
    assert s.concurrency == max(1, os.cpu_count() or 1) and s.worker is True
    assert not hasattr(s, "db_path")


def test_every_documented_variable(env, tmp_path):
    env(DATA_DIR=str(tmp_path / "d"), TOKEN="s3cret", CORS_ORIGINS=" http://a.example, ,http://b.example ",
        MODEL=str(tmp_path / "m.pt"), MAX_UPLOAD_MB="3", MAX_UPLOAD_PIXELS="1000", MAX_SAMPLE_PIXELS="500",
        INLINE_MAX_PIXELS="200", CONCURRENCY="4", THREADS="2", DEVICE="cpu", REPLAY="loveda:/x  folder:/y")
    s = Settings.from_env()
    assert s.data_dir == tmp_path / "d" and s.token == "s3cret"
    assert s.cors_origins == ("http://a.example", "http://b.example")
    assert s.model == tmp_path / "m.pt"
    assert s.max_upload_bytes == 3 * 1024 * 1024  # megabytes, as documented
    assert (s.max_upload_pixels, s.max_sample_pixels, s.inline_max_pixels) == (1000, 500, 200)
    assert (s.concurrency, s.threads, s.device) == (4, 2, "cpu")
    assert s.replay == ("loveda:/x", "folder:/y")


@pytest.mark.parametrize("text, replay", [("none", ()), ("NONE", ()), ("a:/x none", ("a:/x",))])
def test_replay_none_means_no_replay(env, text, replay):
    env(REPLAY=text)
    assert Settings.from_env().replay == replay


def test_empty_variables_count_as_unset_and_counts_are_at_least_one(env):
    env(TOKEN="", MAX_UPLOAD_MB="", DEVICE="", THREADS="0", CONCURRENCY="-3")
    s = Settings.from_env()
    assert s.token is None and s.max_upload_mb == 200 and s.device == "auto"
    assert s.threads == 1 and s.concurrency == 1


def test_overrides_win_over_the_environment(env, tmp_path):
    env(DATA_DIR=str(tmp_path / "from-env"), THREADS="3")
    s = Settings.from_env(data_dir=tmp_path / "given")
    assert s.data_dir == tmp_path / "given" and s.threads == 3


@pytest.mark.parametrize("name, value", [("THREADS", "abc"), ("MAX_UPLOAD_MB", "lots"), ("INLINE_MAX_PIXELS", "0")])
def test_a_bad_value_names_its_variable(env, name, value):
    env(**{name: value})
    with pytest.raises(InputError, match=f"LANDSENTRY_{name}='{value}'"):
        Settings.from_env()


def test_serve_refuses_a_bad_value_in_one_line(env, cli, tmp_path):
    env(THREADS="abc")
    code, out, err = cli(["serve", "--data-dir", tmp_path / "data"])
    assert code == 2, err
    assert err.strip().count("\n") == 0 and "LANDSENTRY_THREADS='abc'" in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_worker_hand_off_keeps_the_token_out(env, tmp_path):
    env(TOKEN="s3cret", CORS_ORIGINS="http://a.example", REPLAY="none")
    s = Settings.from_env(data_dir=tmp_path, worker=False)
    text = s.worker_json()
    assert "s3cret" not in text and "token" not in json.loads(text)
    env(THREADS="5", DATA_DIR="/elsewhere", TOKEN="")  # the worker's own environment does not change them
    handed = Settings.from_worker_json(text)
    assert handed.token is None
    assert handed.model_dump(exclude={"token"}) == s.model_dump(exclude={"token"})
    assert isinstance(handed.data_dir, Path) and handed.replay == () and handed.cors_origins == ("http://a.example",)
