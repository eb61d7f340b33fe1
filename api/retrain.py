"""What a retraining does by default, and how a train job is queued: the one path the service and `bench-adapt` share.

The recipe (`Recipe`, `DEFAULT_RECIPE`) was chosen by measurement with `landsentry bench-adapt`
(README, *Adapting to a new place*): from a parent model, a handful of annotated images must help on
that place without the parent forgetting what it knew. The held-out check on the user's own samples
keeps whole images out when there are enough of them (one in five from five samples on); with fewer,
it keeps out the bottom rows of every sample holding about a quarter of its labelled pixels (their
labels are ignored in training, and only they are scored), so even one sample gets a check.
"""
from __future__ import annotations

import dataclasses
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.models.vocabulary.errors import InputError

from landsentry.api.store import Store, atomic_copy, atomic_write_bytes, new_id

MAX_CROP = 256
WHOLE_IMAGE_MIN = 5
"""From this many samples on, whole images are held out (one in five); below it, a part of each."""
HELD_OUT_SHARE = 0.25


@dataclass(frozen=True)
class Recipe:
    """A fine-tune's knobs (README, *Adapting to a new place*, says why these values)."""

    epochs: int = 3
    steps_per_epoch: int = 40
    batch_size: int = 4
    lr: float = 5e-4
    freeze_blocks: int = 3  # encoder stem + first blocks stay as the parent has them (strides 2 and 4)
    replay_share: float = 0.3  # share of training crops drawn from the parent's own training data
    bn_frozen: bool = True  # batch-norm statistics stay the parent's
    keep_parent: float = 0.0  # share of the parent's weights mixed back into the fine-tuned ones (weight-space ensemble)
    warmup_steps: int = 2

    def __post_init__(self) -> None:
        if not (self.epochs >= 1 and self.steps_per_epoch >= 1 and self.batch_size >= 1 and self.lr > 0
                and 0 <= self.freeze_blocks <= 16 and 0 <= self.replay_share < 1 and 0 <= self.keep_parent < 1):
            raise InputError(f"recipe out of range: {self} (epochs, steps, batch >= 1; lr > 0; freeze_blocks 0-16; "
                             "replay_share and keep_parent in [0, 1))")

    def with_(self, **changes: object) -> Recipe:
        """This recipe with some fields changed (values of the wrong type or unknown names: InputError)."""
        names = {f.name: f.type for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise InputError(f"unknown recipe field(s) {unknown}; fields: {', '.join(names)}")
        typed = {k: _typed(names[k], v) for k, v in changes.items()}
        return dataclasses.replace(self, **typed)


DEFAULT_RECIPE = Recipe()


def _typed(kind: object, value: object) -> object:
    """A recipe value from a request or a command line ("0.5", "true") as its field's type."""
    if kind in ("bool", bool):
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InputError(f"{value!r} is not true or false")
            return value.lower() in ("true", "1")
        return bool(value)
    return float(value) if kind in ("float", float) else int(value)  # type: ignore[arg-type]


def crop_size(samples: list[dict]) -> int:
    """Training crops: at most 256 px, no larger than the smallest sample (padding covers the rest)."""
    side = min(min(s["width"], s["height"]) for s in samples)
    return max(64, min(MAX_CROP, side // 32 * 32))


def whole_images_held_out(ids: list[str]) -> list[str]:
    """From WHOLE_IMAGE_MIN samples on, one in five (whole images); fewer: none (a part of each is held out instead)."""
    return [s for i, s in enumerate(ids) if len(ids) >= WHOLE_IMAGE_MIN and i % 5 == 1]


def held_out_rows(mask: np.ndarray) -> int:
    """First row of the bottom band holding about HELD_OUT_SHARE of the mask's labelled pixels (at least one row kept each side)."""
    labelled = (mask != IGNORE_INDEX).sum(axis=1).astype(np.int64)
    total = int(labelled.sum())
    height = mask.shape[0]
    if total == 0 or height < 2:
        return height
    kept = np.cumsum(labelled) <= (1 - HELD_OUT_SHARE) * total
    return int(min(height - 1, max(1, kept.sum())))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        atomic_copy(src, dst)


def snapshot_samples(store: Store, job_dir: Path, samples: list[dict]) -> dict:
    """Copy the samples into JOB/data/{train,val} (hard links; later deletions cannot change a queued run).

    Returns the plan: `train` and `held_out` (whole images), and `held_out_rows` (sample id -> first
    held-out row) when parts of images are held out instead.
    """
    ids = [s["id"] for s in samples]
    whole = set(whole_images_held_out(ids))
    rows: dict[str, int] = {}
    for sample in samples:
        image, mask_file = store.samples_dir / "images" / sample["image_file"], store.samples_dir / "masks" / f"{sample['id']}.png"
        if sample["id"] in whole:
            _link(image, job_dir / "data" / "val" / "images" / sample["image_file"])
            _link(mask_file, job_dir / "data" / "val" / "masks" / mask_file.name)
            continue
        _link(image, job_dir / "data" / "train" / "images" / sample["image_file"])
        if len(samples) >= WHOLE_IMAGE_MIN:
            _link(mask_file, job_dir / "data" / "train" / "masks" / mask_file.name)
            continue
        mask = np.asarray(Image.open(mask_file))
        first = held_out_rows(mask)
        train, val = mask.copy(), np.full_like(mask, IGNORE_INDEX)
        train[first:], val[first:] = IGNORE_INDEX, mask[first:]
        atomic_write_bytes(job_dir / "data" / "train" / "masks" / mask_file.name, _png(train))
        if (val != IGNORE_INDEX).any():
            rows[sample["id"]] = first
            _link(image, job_dir / "data" / "val" / "images" / sample["image_file"])
            atomic_write_bytes(job_dir / "data" / "val" / "masks" / mask_file.name, _png(val))
    return {"train": [i for i in ids if i not in whole], "held_out": [i for i in ids if i in whole], "held_out_rows": rows}


def held_out_description(params: dict) -> str:
    """The user's held-out check in words (for the version's metrics)."""
    if params.get("val"):
        return f"{len(params['val'])} held-out sample(s) (whole images, not trained on): {', '.join(params['val'])}"
    rows = params.get("held_out_rows") or {}
    return (f"the held-out bottom rows of {len(rows)} sample(s) holding about a quarter of their labelled pixels "
            f"(labels not trained on; fewer than {WHOLE_IMAGE_MIN} samples, so no whole image could be spared)")


def has_held_out(params: dict) -> bool:
    return bool(params.get("val") or params.get("held_out_rows"))


def queue_train_job(store: Store, epochs: int | None = None, steps_per_epoch: int | None = None,
                    activate: str = "never", recipe: Recipe = DEFAULT_RECIPE) -> dict | None:
    """Snapshot the stored samples and queue a train job from the active version (None: one is already queued or running).

    `activate`: "never" (compare, then activate by hand) or "if_not_worse" (train_checks.py's rule).
    """
    samples = store.list_samples()
    if not samples:
        raise LookupError("no samples stored yet: add labelled samples with POST /v1/samples first")
    recipe = recipe.with_(**{k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)) if v is not None})
    job_id = new_id("j")
    job_dir = store.job_dir(job_id)
    plan = snapshot_samples(store, job_dir, samples)
    params = {"epochs": recipe.epochs, "steps_per_epoch": recipe.steps_per_epoch, "parent": store.active_model_id(),
              "train": plan["train"], "val": plan["held_out"], "held_out_rows": plan["held_out_rows"],
              "crop_size": crop_size(samples), "replay": None, "recipe": dataclasses.asdict(recipe), "activate": activate}
    job = store.create_train_job(job_id, params)
    if job is None:
        shutil.rmtree(job_dir, ignore_errors=True)
    return job
