"""Model versions: the first one registered from a checkpoint, the active one loaded once and swapped on activation."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from landsentry.models.inference.runner import ChangeRunner
from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT, load_change_model
from landsentry.models.nn.checkpoint import Checkpoint, load_checkpoint, sha256_file
from landsentry.models.inference.runner import Predictor

from landsentry.api.store import Store, atomic_copy


def checkpoint_summary(ckpt: Checkpoint) -> tuple[dict, dict]:
    """(data, metrics) of a checkpoint trained by `landsentry train`, from its own metadata."""
    meta = ckpt.metadata
    data = dict(meta.get("data") or {})
    val = data.pop("val_sources", [])
    train = data.pop("train_sources", [])
    replay = data.pop("replay_sources", [])
    data.update(train_images=len(train), val_images=len(val), replay_images=len(replay), epochs=meta.get("epoch"))
    metrics = dict(meta.get("metrics") or {})
    if metrics:
        where = ", ".join(data.get("holdout") or []) or "its validation data"
        metrics["evaluated_on"] = f"{len(val)} whole held-out images ({where}), measured when it was trained"
    else:
        metrics = {"miou": None, "evaluated_on": "no metrics stored in the checkpoint"}
    return data, metrics


def initial_id(checkpoint_path: Path) -> str:
    """The first version's id, from the checkpoint's bytes: replicas starting together on an empty database
    register the same version once, not one each."""
    return "m_" + sha256_file(checkpoint_path)[:16]


def register_initial(store: Store, checkpoint_path: Path) -> dict:
    """On first start: copy the starting checkpoint into the store and make it the active version."""
    models = store.list_models()
    if not models:
        ckpt = load_checkpoint(checkpoint_path)
        model_id = initial_id(checkpoint_path)
        atomic_copy(checkpoint_path, store.models_dir / f"{model_id}.pt")
        data, metrics = checkpoint_summary(ckpt)
        data["source_file"] = checkpoint_path.name
        store.add_model(model_id, checkpoint_path.stem, None, f"{model_id}.pt", data, metrics)
        models = store.list_models()
    store.set_active_model(models[0]["id"], only_if_unset=True)
    return store.get_model(store.active_model_id())  # type: ignore[arg-type, return-value]


@dataclass
class Loaded:
    model: dict
    predictor: Predictor


class ModelHolder:
    """The active model's predictor (and the bundled change model), loaded once; `ensure` swaps versions.

    Requests take `current()` once and use that predictor to the end, so an activation never changes
    the model under a running interpretation. `current()` asks the store which version is active at most
    every `check_s` seconds, so an activation on another replica is served here within that time.
    """

    def __init__(self, store: Store, device: str = "auto", check_s: float = 2.0) -> None:
        self.store, self.device, self.check_s = store, device, check_s
        self._checked = 0.0
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._change: ChangeRunner | None = None
        self._change_loaded = False

    def current(self) -> Loaded:
        """The active version's predictor; a version the worker activated (a train job's rule) is loaded here too."""
        loaded = self._loaded
        if loaded is None or time.monotonic() - self._checked >= self.check_s:
            return self.ensure()
        return loaded

    def ensure(self, model_id: str | None = None) -> Loaded:
        """Load `model_id` (default: the store's active version) unless it is already loaded."""
        if model_id is None:
            model_id = self.store.active_model_id()
            self._checked = time.monotonic()
        with self._lock:
            if self._loaded is not None and self._loaded.model["id"] == model_id:
                return self._loaded
            model = self.store.get_model(model_id) if model_id else None
            if model is None:
                raise LookupError(f"no model version {model_id!r} in the store")
            ckpt = load_checkpoint(self.store.model_path(model))
            self._loaded = Loaded(model, Predictor(ckpt, device=self.device))
            return self._loaded

    def change_runner(self) -> ChangeRunner | None:
        """The bundled learned change model for pairs (None when it is not installed)."""
        with self._lock:
            if not self._change_loaded:
                self._change_loaded = True
                if BUNDLED_CHANGE_CHECKPOINT.is_file():
                    model, ckpt = load_change_model()
                    self._change = ChangeRunner(model, ckpt, device=self.device)
            return self._change
