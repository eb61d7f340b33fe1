"""Service settings: one field per LANDSENTRY_* environment variable, read once by pydantic-settings.

Each field's name is its variable's name without the prefix (`threads` <- LANDSENTRY_THREADS), so
this class is the list of what a deployment can set. An empty variable counts as unset. The server
hands its settings to the worker process as JSON (`worker_json`), without the token and without the
database URL (it may hold a password: the worker gets it in its environment, never in a file).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from landsentry.models.nn.checkpoint import BUNDLED_CHECKPOINT
from landsentry.models.vocabulary.errors import InputError

from landsentry.api.db import redact

ENV_PREFIX = "LANDSENTRY_"
MB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service can be told (LANDSENTRY_<FIELD NAME>); fields without a variable are noted."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore",
                                      validate_default=True)

    data_dir: Path = Field(Path("landsentry-data"), description="jobs, samples, model versions and the database")
    token: str | None = Field(None, description="bearer token for POST/DELETE; unset = open (local demo)")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field((), description="comma-separated; empty = no CORS headers")
    model: Path = Field(BUNDLED_CHECKPOINT, description="checkpoint registered as the first model version")
    max_upload_mb: int = Field(200, gt=0, description="whole request body, in MB")
    max_upload_pixels: int = Field(400_000_000, gt=0, description="per uploaded image (width x height), from its header")
    max_sample_pixels: int = Field(4096 * 4096, gt=0, description="per annotated sample")
    max_job_pixels: int = Field(400_000_000, gt=0, description="all images of one interpret request together (a per-job budget)")
    inline_max_pixels: int = Field(2 * 1024 * 1024, gt=0, description="larger interpret requests become background jobs")
    small_job_max_pixels: int = Field(16 * 1024 * 1024, gt=0, description="queued jobs up to this size have a lane of their "
                                      "own in the worker, so they never wait behind a larger one")
    max_train_epochs: int = Field(10, gt=0, description="most epochs one POST /v1/train may ask for")
    max_train_steps: int = Field(200, gt=0, description="most steps per epoch one POST /v1/train may ask for")
    train_activate: Literal["never", "if_not_worse"] = Field(
        "never", description="default activation rule of POST /v1/train: never (activate by hand), or if_not_worse "
        "(when neither the held-out samples' nor the parent's validation mIoU drops by more than activate_tolerance)")
    activate_tolerance: float = Field(0.01, ge=0, le=1, description="mIoU drop still counted as 'not worse' (measurement noise)")
    preview_max_pixels: int = Field(4096 * 4096, gt=0, description="after.png / classes.png (for annotation) only up to this size")
    concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, description="inline interpretations at once")
    threads: int = Field(1, description="torch threads per process (server, worker, training): no oversubscription")
    device: str = Field("auto", description="auto, cpu or cuda")
    replay: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, description="space-separated layout:path specs, or 'none'; unset = the active model's own training data")
    worker: bool = Field(True, description="start the worker process (tests of pure request handling turn it off)")
    database_url: str | None = Field(None, description="postgresql://user:password@host:port/database: replicas (several "
                                     "servers and workers) share this database and the data directory; unset = SQLite in "
                                     "the data directory, one server")
    lease_s: float = Field(30.0, gt=0, le=3600, description="a running job's lease: renewed every third of it; a job whose "
                           "worker stopped renewing is taken over after it runs out")
    version_check_s: float = Field(2.0, gt=0, le=3600, description="how often a replica asks which model version is active "
                                   "(an activation on any replica is served everywhere within this time)")

    @field_validator("database_url", mode="after")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("a PostgreSQL URL (postgresql://user:password@host:port/database), or unset for SQLite")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(o.strip() for o in value.split(",") if o.strip()) if isinstance(value, str) else value

    @field_validator("replay", mode="before")
    @classmethod
    def _space_separated(cls, value: Any) -> Any:
        return tuple(s for s in value.split() if s.lower() != "none") if isinstance(value, str) else value

    @field_validator("concurrency", "threads", mode="after")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        return max(1, value)

    @field_validator("data_dir", "model", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()  # child processes run elsewhere (their job folder)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * MB

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The environment's settings with `overrides` on top; a bad value is one InputError naming its variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise InputError(describe(exc)) from None

    def worker_json(self) -> str:
        """What the server hands its worker: every setting but the token (the worker serves no requests) and the
        database URL (a password in a file in the shared data directory; api/worker.py passes it in the environment)."""
        return self.model_dump_json(exclude={"token", "database_url"})

    @classmethod
    def from_worker_json(cls, text: str) -> Settings:
        """The server's settings as handed over; they win over the worker's environment."""
        return cls(**json.loads(text))


def describe(exc: ValidationError) -> str:
    """One line: each bad setting as its environment variable, the value given and what was wrong."""
    parts = []
    for err in exc.errors():
        name = ENV_PREFIX + "_".join(str(p) for p in err["loc"][:1]).upper()
        given = err.get("input")
        if name == ENV_PREFIX + "DATABASE_URL" and isinstance(given, str):
            given = redact(given)  # never a password in a message
        parts.append(f"{name}={given!r}: {err['msg']}" if isinstance(given, (str, int, float)) else f"{name}: {err['msg']}")
    return "bad setting: " + "; ".join(parts)
