"""Service settings, read once from the environment (LANDSENTRY_*) so the same code serves the demo and a deployment."""
from __future__ import annotations

import os
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from landsentry.models.nn.checkpoint import BUNDLED_CHECKPOINT


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; `from_env` documents the variable behind each field."""

    data_dir: Path = Path("landsentry-data")
    token: str | None = None  # bearer token for POST/DELETE; None = open (local demo)
    cors_origins: tuple[str, ...] = ()  # empty = no CORS headers at all
    initial_checkpoint: Path = BUNDLED_CHECKPOINT  # registered as the first model version
    max_upload_bytes: int = 200 * 1024 * 1024  # whole request body
    max_pixels: int = 400_000_000  # per uploaded image (width x height), checked from the header
    max_sample_pixels: int = 4096 * 4096  # per annotated sample
    inline_max_pixels: int = 2 * 1024 * 1024  # larger interpret requests become background jobs
    preview_max_pixels: int = 4096 * 4096  # after.png / classes.png (for annotation) only up to this size
    inference_concurrency: int = max(1, os.cpu_count() or 1)  # inline interpretations at once
    threads: int = 1  # torch threads per process (server, worker, training): no oversubscription
    device: str = "auto"
    replay: tuple[str, ...] | None = None  # None: the active model's own training data, where present
    worker: bool = True  # start the worker process (tests of pure request handling may turn it off)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "landsentry.db"

    def to_json(self) -> str:
        """For the worker process (the token stays out: the worker serves no requests)."""
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "token"}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        data = json.loads(text)
        types = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in types}
        for key in ("data_dir", "initial_checkpoint"):
            data[key] = Path(data[key])
        for key in ("cors_origins", "replay"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """LANDSENTRY_DATA_DIR, LANDSENTRY_TOKEN, LANDSENTRY_CORS_ORIGINS (comma-separated), LANDSENTRY_MODEL,
        LANDSENTRY_MAX_UPLOAD_MB, LANDSENTRY_MAX_UPLOAD_PIXELS, LANDSENTRY_MAX_SAMPLE_PIXELS,
        LANDSENTRY_INLINE_MAX_PIXELS, LANDSENTRY_CONCURRENCY, LANDSENTRY_THREADS, LANDSENTRY_DEVICE,
        LANDSENTRY_REPLAY (space-separated layout:path specs, or "none")."""
        env = os.environ
        replay_text = env.get("LANDSENTRY_REPLAY")
        replay = None if replay_text is None else tuple(s for s in replay_text.split() if s.lower() != "none")
        settings = cls(
            data_dir=Path(env.get("LANDSENTRY_DATA_DIR", "landsentry-data")),
            token=env.get("LANDSENTRY_TOKEN") or None,
            cors_origins=tuple(o.strip() for o in env.get("LANDSENTRY_CORS_ORIGINS", "").split(",") if o.strip()),
            initial_checkpoint=Path(env.get("LANDSENTRY_MODEL") or BUNDLED_CHECKPOINT),
            max_upload_bytes=_int("LANDSENTRY_MAX_UPLOAD_MB", 200) * 1024 * 1024,
            max_pixels=_int("LANDSENTRY_MAX_UPLOAD_PIXELS", cls.max_pixels),
            max_sample_pixels=_int("LANDSENTRY_MAX_SAMPLE_PIXELS", cls.max_sample_pixels),
            inline_max_pixels=_int("LANDSENTRY_INLINE_MAX_PIXELS", cls.inline_max_pixels),
            inference_concurrency=max(1, _int("LANDSENTRY_CONCURRENCY", max(1, os.cpu_count() or 1))),
            threads=max(1, _int("LANDSENTRY_THREADS", 1)),
            device=env.get("LANDSENTRY_DEVICE", "auto"),
            replay=replay,
        )
        settings = replace(settings, **overrides)  # type: ignore[arg-type]
        return replace(settings, data_dir=Path(settings.data_dir).resolve(), initial_checkpoint=Path(settings.initial_checkpoint).resolve())
