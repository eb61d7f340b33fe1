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
from landsentry.models.data.registry import records_from_spec
from landsentry.models.data.splits import groups_of, split_by_group
from landsentry.models.data.statistics import class_pixel_counts
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
        )

    def manifest(self) -> dict:
        """What the model was trained and validated on, for the checkpoint's metadata."""
        return {
            **self.specs,
            "train_sources": [r.source for r in self.train_records],
            "val_sources": [r.source for r in self.val_records],
            "replay_sources": [r.source for r in self.replay_records],
        }


def build_data(cfg: TrainConfig) -> DataSetup:
    """Training dataset (random crops, area-weighted), whole validation images and class pixel counts."""
    records = [r for spec in cfg.data for r in records_from_spec(spec)]
    unknown = sorted(set(cfg.holdout) - set(groups_of(records)))
    if unknown:
        raise InputError(f"--holdout names unknown group(s) {unknown}; groups in the data: {sorted(set(groups_of(records)))}")
    train_records, val_records = split_by_group(records, cfg.holdout)
    val_records += [r for spec in cfg.val_data for r in records_from_spec(spec)]
    if not train_records:
        raise InputError("every training image is held out for validation; hold out fewer groups")
    replay_records = [r for spec in cfg.replay for r in records_from_spec(spec)]

    transform = train_transform(cfg.crop_size, class_aware_p=cfg.rare_crop_prob)
    n_replay = round(cfg.samples_per_epoch * cfg.replay_share) if replay_records else 0
    train: Dataset = SegmentationDataset(train_records, transform, cfg.samples_per_epoch - n_replay, cfg.in_channels)
    if n_replay:
        train = ConcatDataset([train, SegmentationDataset(replay_records, transform, n_replay, cfg.in_channels)])

    counts = sum(class_pixel_counts(train_records + replay_records, by="all").values())
    class_pixels = torch.as_tensor(counts[:NUM_CLASSES], dtype=torch.float64)
    val_images = []
    if val_records:
        whole = SegmentationDataset(val_records, None, None, cfg.in_channels, check_codes=False, cache_mb=0)
        val_images = [(s["image"], s["mask"]) for s in (whole[i] for i in range(len(whole)))]
    specs = {"data": list(cfg.data), "holdout": list(cfg.holdout), "val_data": list(cfg.val_data),
             "replay": list(cfg.replay), "replay_share": cfg.replay_share if replay_records else 0.0}
    return DataSetup(train, train_records, val_records, replay_records, val_images, class_pixels, specs)
