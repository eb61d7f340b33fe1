"""From the training configuration to datasets: `layout:path` specs (the data layer's registry), split by source, mix replay.

Validation always runs on whole held-out images (groups listed in `holdout`, or `val_data`), never
on crops of training scenes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import ConcatDataset, Dataset

from landsentry.models.vocabulary.classes import CLASS_NAMES, NUM_CLASSES
from landsentry.models.vocabulary.errors import InputError
from landsentry.training.config import TrainConfig
from landsentry.models.data.records import Record
from landsentry.models.data.registry import parse_spec, records_from_spec
from landsentry.models.data.splits import groups_of, split_by_group
from landsentry.models.data.statistics import class_pixel_counts
from landsentry.models.evaluation.segmentation import source_of
from landsentry.models.inference.resolution import zoom_for
from landsentry.training.datasets import SegmentationDataset
from landsentry.training.transforms import train_transform


@dataclass
class DataSetup:
    train: Dataset
    train_records: list[Record]
    val_records: list[Record]
    replay_records: list[Record]
    val_images: list[tuple[torch.Tensor, torch.Tensor]]
    class_pixels: torch.Tensor
    specs: dict = field(default_factory=dict)
    held_back: list[str] = field(default_factory=list)
    """Test groups of the layouts kept out of training (never trained on, never used for selection)."""

    val_zooms: list[float] = field(default_factory=list)
    """Each validation image's zoom to the working resolution, as predict resamples it (`resolution.zoom_for`)."""

    @property
    def val_sources(self) -> list[str]:
        """The dataset each validation image comes from: held-out scores are averaged over these."""
        return [source_of(r.source) for r in self.val_records]

    def set_epoch(self, epoch: int) -> None:
        for ds in getattr(self.train, "datasets", [self.train]):
            ds.set_epoch(epoch)

    def describe(self) -> str:
        shares = self.class_pixels / self.class_pixels.sum().clamp(min=1)
        return (
            f"train: {len(self.train_records)} images in groups {sorted(groups_of(self.train_records))}"
            + (f" + {len(self.replay_records)} replay images" if self.replay_records else "")
            + f"; val: {len(self.val_records)} whole images in groups {sorted(groups_of(self.val_records))}\n"
            + "train class shares: " + ", ".join(f"{n} {s:.3f}" for n, s in zip(CLASS_NAMES, shares.tolist()))
            + (f"\nkept out for good (test splits): {', '.join(self.held_back)}" if self.held_back else "")
        )

    def manifest(self) -> dict:
        """What the model was trained and validated on, for the checkpoint's metadata."""
        return {
            **self.specs,
            "train_sources": [r.source for r in self.train_records],
            "val_sources": [r.source for r in self.val_records],
            "replay_sources": [r.source for r in self.replay_records],
            "test_groups_held_back": list(self.held_back),
        }


def spec_records(spec: str, keep_test: bool, holdout: set[str]) -> tuple[list[Record], list[str]]:
    """The records of a `layout:path` spec without its layout's test groups, and those groups.

    Test groups stay in when `keep_test` is set, or when named in `holdout` (then they validate: the
    user asked for it, as the first bundled model's recipe did with Dubai tile 8)."""
    layout, _ = parse_spec(spec)
    records = records_from_spec(spec)
    test = set() if keep_test else (set(layout.splits.get("test", ())) & set(groups_of(records))) - holdout
    return [r for r in records if r.group not in test], sorted(test)


def crop_shares(n: int, weights: list[float]) -> list[int]:
    """`n` crops split by `weights` (largest remainders, so they add up to `n`)."""
    total = sum(weights)
    raw = [n * w / total for w in weights]
    shares = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - shares[i], reverse=True)[: n - sum(shares)]:
        shares[i] += 1
    return shares


def source_zoom(gsd: float | None, working_gsd: float | None) -> float:
    """How much a source's crops are zoomed so they show the ground at the working resolution (1 when either is unknown)."""
    return gsd / working_gsd if gsd and working_gsd else 1.0


def transform_for(cfg: TrainConfig, gsd: float | None):
    """The training augmentation of a source of ground resolution `gsd`: scale_range around its zoom to working_gsd."""
    zoom = source_zoom(gsd, cfg.working_gsd)
    return train_transform(cfg.crop_size, scale=(cfg.scale_range[0] * zoom, cfg.scale_range[1] * zoom), class_aware_p=cfg.rare_crop_prob,
                           grayscale_p=cfg.grayscale_p, color_strength=cfg.color_strength)


def build_data(cfg: TrainConfig) -> DataSetup:
    """Training dataset (random crops, area-weighted or by `data_weights`), whole validation images and class pixel counts."""
    per_spec, held_back = [], []
    for spec in cfg.data:
        kept, test = spec_records(spec, cfg.keep_test_splits, set(cfg.holdout))
        per_spec.append(kept)
        held_back += test
    records = [r for kept in per_spec for r in kept]
    unknown = sorted(set(cfg.holdout) - set(groups_of(records)))
    if unknown:
        raise InputError(f"--holdout names unknown group(s) {unknown}; groups in the data: {sorted(set(groups_of(records)))}")
    holdout = set(cfg.holdout) | {g for spec in cfg.data for split in cfg.holdout_splits
                                  for g in parse_spec(spec)[0].splits.get(split, ())} & set(groups_of(records))
    train_records, val_records = split_by_group(records, holdout)
    val_records += [r for spec in cfg.val_data for r in records_from_spec(spec)]
    if not train_records:
        raise InputError("every training image is held out for validation; hold out fewer groups")
    # replay never brings back what the parent was validated or tested on: its scores must stay honest
    replay_out = set(cfg.replay_holdout)
    replay_records = [r for spec in cfg.replay for r in spec_records(spec, cfg.keep_test_splits, set())[0] if r.group not in replay_out]

    transform = transform_for(cfg, None)
    n_replay = round(cfg.samples_per_epoch * cfg.replay_share) if replay_records else 0
    n_train = cfg.samples_per_epoch - n_replay
    parts: list[Dataset] = []
    if cfg.data_weights or cfg.working_gsd:  # one dataset per source: its own share, its own zoom
        weights = cfg.data_weights or [len(kept) for kept in per_spec]
        for spec, kept, n in zip(cfg.data, per_spec, crop_shares(n_train, weights)):
            mine = [r for r in kept if r.group not in holdout]
            if mine and n:
                parts.append(SegmentationDataset(mine, transform_for(cfg, parse_spec(spec)[0].gsd), n, cfg.in_channels))
    else:
        parts.append(SegmentationDataset(train_records, transform, n_train, cfg.in_channels))
    if n_replay:
        parts.append(SegmentationDataset(replay_records, transform, n_replay, cfg.in_channels))
    train: Dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)

    counts = sum(class_pixel_counts(train_records + replay_records, by="all").values())
    class_pixels = torch.as_tensor(counts[:NUM_CLASSES], dtype=torch.float64)
    val_images = []
    if val_records:
        whole = SegmentationDataset(val_records, None, None, cfg.in_channels, check_codes=False, cache_mb=0)
        val_images = [(s["image"], s["mask"]) for s in (whole[i] for i in range(len(whole)))]
    specs = {"data": list(cfg.data), "holdout": sorted(holdout), "val_data": list(cfg.val_data),
             "replay": list(cfg.replay), "replay_share": cfg.replay_share if replay_records else 0.0,
             "replay_holdout": sorted(replay_out)}
    if cfg.data_weights:
        specs["data_weights"] = list(cfg.data_weights)
    gsd_of = {parse_spec(spec)[0].name: parse_spec(spec)[0].gsd for spec in [*cfg.data, *cfg.val_data]}
    val_zooms = [zoom_for(gsd_of.get(source_of(r.source)), cfg.working_gsd) for r in val_records]
    return DataSetup(train, train_records, val_records, replay_records, val_images, class_pixels, specs, held_back, val_zooms)
