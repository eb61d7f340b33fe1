"""Self-describing checkpoints: architecture, classes, normalisation, bands and lineage travel with the weights.

A checkpoint is a plain dict saved with torch.save and read back with `weights_only=True`, so loading
a file never runs code. The service and `predict` rebuild the model from the file alone.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landsentry.models.vocabulary.classes import IGNORE_INDEX, schema_dict
from landsentry.models.vocabulary.atomic import atomic_file
from landsentry.models.vocabulary.errors import CheckpointError
from landsentry.models.nn.network import build_model

FORMAT = "landsentry-checkpoint"
FORMAT_VERSION = 1
DEFAULT_BANDS = ("red", "green", "blue")
BUNDLED_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "landsentry-lite0.pt"


@dataclass
class Checkpoint:
    """Everything needed to rebuild and run a trained model, plus how it came to be."""

    arch: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    classes: list[dict] = field(default_factory=schema_dict)
    ignore_index: int = IGNORE_INDEX
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    bands: tuple[str, ...] = DEFAULT_BANDS
    metadata: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        # JSON-plain architecture (tuples become lists), so a checkpoint compares equal to the
        # architecture a training run asks for however either was written.
        self.arch = plain(self.arch)

    @property
    def in_channels(self) -> int:
        return int(self.arch["in_channels"])

    @property
    def num_classes(self) -> int:
        return int(self.arch["num_classes"])

    def build_model(self) -> nn.Module:
        """The network with these weights, in eval mode."""
        try:
            model = build_model(**self.arch)
            model.load_state_dict(self.state_dict)
        except (TypeError, ValueError, RuntimeError) as exc:  # unknown arch, or weights of another shape
            raise CheckpointError(f"{self.path or 'checkpoint'}: weights do not fit its architecture {self.arch}: {_first_line(exc)}") from None
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": dict(self.arch),
            "classes": self.classes,
            "ignore_index": self.ignore_index,
            "normalization": {"mean": list(self.mean), "std": list(self.std), "input_range": 255.0},
            "bands": list(self.bands),
            "metadata": plain(self.metadata),
            "training_state": self.training_state,
            "state_dict": self.state_dict,
        }


def plain(data: Any) -> Any:
    """Metadata as JSON-plain types, so `weights_only` loading never meets a class it refuses."""
    return json.loads(json.dumps(data, default=str))


def checkpoint_from_model(model: nn.Module, arch: dict[str, Any], **fields: Any) -> Checkpoint:
    """Wrap a live model (weights copied to CPU) into a Checkpoint."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Checkpoint(arch=dict(arch), state_dict=state, **fields)


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    with atomic_file(path) as fh:
        torch.save(checkpoint.to_dict(), fh)
    return path


def load_checkpoint(path: str | Path | None = None) -> Checkpoint:
    """Read a landsentry checkpoint (the bundled one when path is None); refuse anything else clearly."""
    path = Path(path) if path is not None else BUNDLED_CHECKPOINT
    if not path.is_file():
        hint = " (the bundled model is missing: reinstall, or pass --checkpoint)" if path == BUNDLED_CHECKPOINT else ""
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not ours"
        raise CheckpointError(f"{path} is not a landsentry checkpoint (cannot be read safely: {_first_line(exc)})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a landsentry checkpoint (no '{FORMAT}' marker; a bare state_dict or another tool's file?)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this landsentry reads up to {FORMAT_VERSION}")
    try:
        norm = raw["normalization"]
        ckpt = Checkpoint(
            arch=dict(raw["arch"]),
            state_dict=raw["state_dict"],
            classes=list(raw["classes"]),
            ignore_index=int(raw.get("ignore_index", IGNORE_INDEX)),
            mean=tuple(norm["mean"]),
            std=tuple(norm["std"]),
            bands=tuple(raw.get("bands", DEFAULT_BANDS)),
            metadata=dict(raw.get("metadata", {})),
            training_state=dict(raw.get("training_state", {})),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is a damaged landsentry checkpoint (missing or bad field: {exc})") from None
    if len(ckpt.mean) != ckpt.in_channels or len(ckpt.std) != ckpt.in_channels:
        raise CheckpointError(f"{path}: normalisation has {len(ckpt.mean)} bands but the model takes {ckpt.in_channels}")
    return ckpt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks: what identifies a checkpoint across machines and replicas."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
