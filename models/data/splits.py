"""Train/validation splits by source scene, never by pixels, and the default hold-out of the shared data.

Crops of one scene on both sides of a split measure memory, not generalisation, so every split here
moves whole groups (`Record.group`: a Dubai source tile, a LEVIR-CD scene, a SZTAKI site).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from landsentry.models.data.layouts import DubaiAerial, LoveDA
from landsentry.models.data.records import AnyRecord, PairRecord, Record
from landsentry.models.vocabulary.errors import InputError

DUBAI_VAL_GROUPS: tuple[str, ...] = ("dubai/t8",)
"""Default held-out Dubai source tile. Tile 8 (9 images, 32% of the labelled pixels) holds every class
in the mix closest to the other tiles: building 21%, road 12%, bare soil 47%, vegetation 15%, water 6%
(L1 distance 0.37 to the rest; tile 3, next, is mostly sea with 3% buildings)."""
LOVEDA_VAL_GROUPS: tuple[str, ...] = ()
"""The three shared LoveDA tiles (farmland+village, ponds, forest) are each the only example of their
scene type, so all stay in training; none has bare soil, and Dubai tile 8 already validates the
building/road/bare-soil classes that matter most."""


def groups_of(records: Iterable[Record | PairRecord]) -> list[str]:
    """Distinct groups in first-seen order."""
    return list(dict.fromkeys(r.group for r in records))


def split_by_group(records: Sequence[AnyRecord], val_groups: Iterable[str]) -> tuple[list[AnyRecord], list[AnyRecord]]:
    """(train, val) with every record of `val_groups` in val and none in train: splits by source scene, never by pixels.

    Unknown group names raise (a typo would silently give an empty validation set).
    """
    val_groups = set(val_groups)
    unknown = val_groups - set(groups_of(records))
    if unknown:
        raise InputError(f"unknown validation group(s) {sorted(unknown)}; known groups: {groups_of(records)}")
    train = [r for r in records if r.group not in val_groups]
    val = [r for r in records if r.group in val_groups]
    return train, val


def holdout_groups(records: Sequence[AnyRecord], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[AnyRecord], list[AnyRecord]]:
    """Hold out whole random groups (source images/tiles), as close to `val_fraction` of the records as whole groups allow.

    Keeps at least one group on each side when there are two or more groups.
    """
    groups = groups_of(records)
    if len(groups) < 2:
        raise InputError(f"cannot hold out a whole source scene: all {len(records)} samples share group {groups[:1]}")
    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = {g: 0 for g in groups}
    for r in records:
        sizes[r.group] += 1
    target = val_fraction * len(records)
    chosen: list[str] = []
    count = 0
    for i in order:
        size = sizes[groups[i]]
        if len(chosen) >= len(groups) - 1 or (chosen and abs(count + size - target) >= abs(count - target)):
            break  # another group would move the val share further from the target
        chosen.append(groups[i])
        count += size
    return split_by_group(records, chosen)


def shared_data_split(
    data_root: str | Path,
    dubai_val: Sequence[str] = DUBAI_VAL_GROUPS,
    loveda_val: Sequence[str] = LOVEDA_VAL_GROUPS,
) -> tuple[list[Record], list[Record]]:
    """The default (train, val) records for the shared data (`../shared/data`): Dubai tile 8 held out, LoveDA all in training."""
    data_root = Path(data_root)
    dubai_train, dubai_val_records = split_by_group(DubaiAerial.records(data_root / "dubai_aerial"), dubai_val)
    loveda_train, loveda_val_records = split_by_group(LoveDA.records(data_root / "loveda"), loveda_val)
    return dubai_train + loveda_train, dubai_val_records + loveda_val_records
