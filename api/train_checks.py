"""Before a new version answers: its scores beside its parent's, on the user's held-out samples and on the parent's validation data.

Both checks run `landsentry evaluate` as a child process (one thread, cancellable), like training.
The parent's validation data are the images its own training held out (its metadata: the `holdout`
groups of its `data` specs, and its `val_data` folders), following fine-tuned versions back to the
model they came from; folders missing on this machine are skipped and said so. The parent's own
score there is computed once per version and cached next to its file. The optional activation rule
turns the two comparisons into a decision.
"""
from __future__ import annotations

import json
import threading

import torch
from pathlib import Path
from typing import Callable

from landsentry.models.data.registry import records_from_spec
from landsentry.models.data.splits import groups_of
from landsentry.models.nn.checkpoint import load_checkpoint, save_checkpoint
from landsentry.models.vocabulary.errors import InputError

from landsentry.api.proc import python_module, run_child
from landsentry.api.store import atomic_write_bytes

CHECKOUT = Path(__file__).resolve().parents[1]
"""Relative dataset paths in a checkpoint's metadata are as `landsentry train` saw them, from a checkout."""
LINEAGE_DEPTH = 8


def _where(spec: str) -> tuple[str, Path] | None:
    layout, sep, path = spec.partition(":")
    if not sep:
        return None
    where = Path(path) if Path(path).is_absolute() else CHECKOUT / path
    return layout, where.resolve()


def validation_set(parent_file: Path) -> dict:
    """{"specs": [...], "groups": [...], "missing": [...]}: the parent's held-out images that exist here, as
    `landsentry evaluate --data SPECS --groups GROUPS` takes them (lineage followed through fine-tunes)."""
    specs: list[str] = []
    groups: list[str] = []
    missing: list[str] = []
    path: Path | None = parent_file
    for _ in range(LINEAGE_DEPTH):
        if path is None or not path.is_file():
            break
        meta = load_checkpoint(path).metadata
        data = meta.get("data") or {}
        holdout = set(data.get("holdout") or [])
        for spec, wanted in [*((s, holdout) for s in data.get("data") or []), *((s, None) for s in data.get("val_data") or [])]:
            found = _where(spec)
            if found is None:
                continue
            if not found[1].is_dir():
                missing.append(spec)
                continue
            full = f"{found[0]}:{found[1]}"
            try:
                present = set(groups_of(records_from_spec(full)))
            except InputError:
                missing.append(spec)
                continue
            chosen = present if wanted is None else present & wanted
            if chosen:
                specs.append(full)
                groups += sorted(chosen)
        parent = (meta.get("parent") or {}).get("path")
        path = Path(parent) if parent else None
    return {"specs": list(dict.fromkeys(specs)), "groups": list(dict.fromkeys(groups)), "missing": missing}


def replay_holdout(parent_file: Path) -> list[str]:
    """Groups replay must leave out: everything the parent's validation check scores."""
    return validation_set(parent_file)["groups"]


def evaluate(checkpoint: Path, specs: list[str], groups: list[str] | None, out: Path, threads: int, device: str,
             stop: threading.Event, cancelled: Callable[[], bool] | None = None) -> dict | None:
    """`landsentry evaluate` of a checkpoint (only `groups`, when given): {miou, iou, pixel_accuracy, sources}; None if it failed."""
    if not out.is_file():
        cmd = python_module("landsentry", "evaluate", "--checkpoint", str(checkpoint), "--data", *specs,
                            "--device", device, "--json", str(out))
        if groups:
            cmd += ["--groups", *groups]
        log = out.with_suffix(".out")
        if run_child(cmd, log, threads, stop, cwd=out.parent, on_poll=cancelled) != 0 or not out.is_file():
            return None
    scores = json.loads(out.read_text())
    sources = {name: s.get("miou") for name, s in (scores.get("sources") or {}).items()}
    return {"miou": scores.get("miou"), "iou": scores.get("iou"), "pixel_accuracy": scores.get("pixel_accuracy"), "sources": sources}


def parent_validation(parent_file: Path, new_file: Path, run: Path, threads: int, device: str, stop: threading.Event,
                      cancelled: Callable[[], bool] | None = None) -> dict:
    """The new version and its parent on the parent's validation data (the parent's score cached beside its file)."""
    found = validation_set(parent_file)
    if not found["specs"]:
        why = f" (missing here: {', '.join(found['missing'])})" if found["missing"] else ""
        return {"evaluated_on": "nothing: the parent's validation data are not on this machine" + why, "new": None, "parent": None}
    cache = parent_file.with_name(parent_file.stem + ".validation.json")
    parent = evaluate(parent_file, found["specs"], found["groups"], cache if cache.parent.is_dir() else run / "parent_val.json",
                      threads, device, stop, cancelled)
    new = evaluate(new_file, found["specs"], found["groups"], run / "new_val.json", threads, device, stop, cancelled)
    where = ", ".join(found["groups"][:6]) + (f" and {len(found['groups']) - 6} more" if len(found["groups"]) > 6 else "")
    return {"evaluated_on": f"the parent's validation images ({where}), mIoU = mean over sources", "new": new, "parent": parent}


def decide(checks: dict, tolerance: float) -> tuple[bool, str]:
    """The activation rule: (activate?, why). Neither check may drop by more than `tolerance`; a check
    that could not be made counts against activation."""
    reasons = []
    for name, check in (("held-out samples", checks.get("samples")), ("parent's validation data", checks.get("parent_validation"))):
        new, parent = [((check or {}).get(k) or {}).get("miou") for k in ("new", "parent")]
        if new is None or parent is None:
            return False, f"not activated: no score on the {name} to compare"
        if new < parent - tolerance:
            return False, f"not activated: mIoU on the {name} fell from {parent:.3f} to {new:.3f}"
        reasons.append(f"{name} {parent:.3f} -> {new:.3f}")
    return True, "activated: not worse on " + " and ".join(reasons)


def mix_with_parent(new_file: Path, parent_file: Path, share: float, out: Path) -> Path:
    """The fine-tuned weights moved `share` of the way back to the parent's (a weight-space ensemble, as in
    WiSE-FT): most of what the few samples taught stays, much of what the parent knew comes back."""
    new, parent = load_checkpoint(new_file), load_checkpoint(parent_file)
    new.state_dict = {k: torch.lerp(v.float(), parent.state_dict[k].float(), share).to(v.dtype) if v.is_floating_point() else v
                      for k, v in new.state_dict.items()}
    new.metadata = {**new.metadata, "keep_parent": share}
    save_checkpoint(new, out)
    return out


def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=1).encode())
