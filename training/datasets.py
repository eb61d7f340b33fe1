"""Torch datasets of labelled images and change pairs: cached, validated, seeded, augmentable.

Records come from the data layer (`landsentry.models.data`: layouts, `registry`, `splits`); each
dataset checks all of them before training starts (`samples.check_records` / `check_pairs`: sizes,
bands, unknown mask codes) and raises one `InputError` naming all offending files, so a bad dataset
fails in seconds, not hours in.

Samples are dicts of uint8 images (C x H x W) and int64 labels (H x W, schema ids or IGNORE_INDEX);
normalisation is left to the training step, which knows the checkpoint's mean/std.

Files are decoded by the data layer (`samples.load_sample` / `load_pair`, through the inference
raster source) and kept decoded in a per-process LRU cache. A file that turns out corrupt mid-epoch
is skipped with one warning instead of killing a long run; see `skipped`.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from landsentry.models.data.change_layouts import LevirCD
from landsentry.models.data.records import listing
from landsentry.models.data.samples import FileFailed, check_pairs, check_records, load_pair, load_sample
from landsentry.models.vocabulary.errors import InputError

DEFAULT_CACHE_MB = 1024.0


class _CachedDataset(Dataset):
    """Shared machinery: record checks, per-sample seeding, epoch length, decoded-file LRU cache, skipping bad files.

    With DataLoader workers every worker process has its own cache and its own `skipped` set.
    Subclasses name what they hold (`what`) and implement `_check`, `_load` and `_sample`.
    """

    what = "labelled"

    def __init__(
        self,
        records: Sequence[Any],
        transform: Callable[..., dict] | None = None,
        samples_per_epoch: int | None = None,
        in_channels: int = 3,
        weights: str | Sequence[float] = "area",
        check_codes: bool = True,
        cache_mb: float | None = DEFAULT_CACHE_MB,
        seed: int | None = None,
    ) -> None:
        if in_channels not in (1, 3, 4):
            raise ValueError(f"in_channels must be 1, 3 or 4, got {in_channels}")
        self.in_channels = in_channels
        self.check_codes = check_codes
        self.records = list(records)
        if not self.records:
            raise InputError(f"no samples given to the {self.what} dataset")
        self.transform = transform
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.epoch = 0
        self.skipped: set[Path] = set()
        """Files that failed to decode and whose samples were replaced (per DataLoader worker process)."""
        self._bad: set[int] = set()
        self._cache: OrderedDict[int, tuple[torch.Tensor, ...]] = OrderedDict()
        self._cache_bytes = 0
        self.cache_limit = None if cache_mb is None else int(cache_mb * 1024 * 1024)
        self.sizes = self._check()
        if isinstance(weights, str):
            if weights == "area":
                w = [float(h * wd) for h, wd in self.sizes]
            elif weights == "uniform":
                w = [1.0] * len(self.records)
            else:
                raise ValueError(f"weights must be 'area', 'uniform' or one number per record, got {weights!r}")
        else:
            w = [float(x) for x in weights]
            if len(w) != len(self.records) or min(w) < 0 or sum(w) <= 0:
                raise ValueError("weights need one non-negative number per record, not all zero")
        self.weights = torch.tensor(w, dtype=torch.float64)

    # subclasses
    def _check(self) -> list[tuple[int, int]]:
        raise NotImplementedError

    def _load(self, index: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _sample(self, index: int, loaded: tuple[torch.Tensor, ...]) -> dict:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.samples_per_epoch if self.samples_per_epoch is not None else len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """With a fixed `seed`, crops repeat every epoch unless the epoch number is set (call it each epoch)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The per-sample RNG: from (seed, epoch, index) when seeded, else from torch's global RNG.

        The unseeded case follows `torch.manual_seed` in the main process and DataLoader's per-worker
        seeding, so crops differ every epoch and between workers.
        """
        if self.seed is None:
            value = int(torch.randint(0, 2**62, ()))
        else:
            value = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0] >> 1)
        return torch.Generator().manual_seed(value)

    def _pick(self, index: int, generator: torch.Generator) -> int:
        if self.samples_per_epoch is None:
            return index
        if self.weights.min() == self.weights.max():
            return index % len(self.records)
        return int(torch.multinomial(self.weights, 1, generator=generator))

    def _load_cached(self, index: int) -> tuple[torch.Tensor, ...]:
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        loaded = self._load(index)
        size = sum(t.numel() * t.element_size() for t in loaded)
        if self.cache_limit is None or size <= self.cache_limit:
            self._cache[index] = loaded
            self._cache_bytes += size
            while self.cache_limit is not None and self._cache_bytes > self.cache_limit:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= sum(t.numel() * t.element_size() for t in old)
        return loaded

    def _skip(self, index: int, failure: FileFailed) -> None:
        self._bad.add(index)
        if failure.path not in self.skipped:
            self.skipped.add(failure.path)
            warnings.warn(f"skipping unreadable training file {failure.path}: {failure.error}", RuntimeWarning, stacklevel=3)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        generator = self.generator(index)
        start = self._pick(index, generator)
        n = len(self.records)
        for step in range(n):
            i = (start + step) % n
            if i in self._bad:
                continue
            try:
                loaded = self._load_cached(i)
            except FileFailed as failure:
                self._skip(i, failure)
                continue
            sample = self._sample(i, loaded)
            if self.transform is not None:
                sample = self.transform(sample, generator)
            return self._finish(sample, loaded)
        raise InputError(f"none of the {n} samples could be read; unreadable files:\n{listing(sorted(map(str, self.skipped)))}")

    @staticmethod
    def _finish(sample: dict, loaded: tuple[torch.Tensor, ...]) -> dict:
        """Labels to int64; images copied if still views of the cache (callers may modify them in place)."""
        cached = {t.untyped_storage().data_ptr() for t in loaded}
        out = {}
        for key, value in sample.items():
            if isinstance(value, torch.Tensor):
                if key in ("mask", "change"):
                    value = value.long()
                elif value.untyped_storage().data_ptr() in cached:
                    value = value.clone()
            out[key] = value
        return out


class SegmentationDataset(_CachedDataset):
    """Labelled images from `Record`s as {"image": uint8 C x H x W, "mask": int64 H x W, "source": str}.

    - `transform`: e.g. `training.transforms.train_transform(512)` (crops there, so whole images are cached once);
      None returns whole images.
    - `samples_per_epoch`: epoch length; each index then draws a record (by `weights`: "area" -
      proportional to pixel count, so every pixel is equally likely to be seen - "uniform", or one
      number per record) and the transform's random crop. None: one sample per record, in order.
    - `in_channels`: bands fed to the model (1-band input repeated, 4-band input gives RGB for 3).
    - `check_codes`: decode every mask up front and refuse codes missing from its class map
      (about 1 s per 100 Mpx); unknown codes are otherwise read as IGNORE_INDEX.
    - `cache_mb`: LRU budget for decoded images+masks per process (None: unbounded, 0: no cache).
    - `seed`: fixed per-(seed, epoch, index) randomness, e.g. for a fixed validation crop set; None
      follows torch's global RNG.
    Pixels an image marks invalid (alpha, nodata) are IGNORE_INDEX in the mask.
    """

    what = "segmentation"

    def _check(self) -> list[tuple[int, int]]:
        return check_records(self.records, self.in_channels, self.check_codes)

    def _load(self, index: int) -> tuple[torch.Tensor, ...]:
        image, mask = load_sample(self.records[index], self.in_channels)
        return torch.from_numpy(image), torch.from_numpy(mask)

    def _sample(self, index: int, loaded: tuple[torch.Tensor, ...]) -> dict:
        return {"image": loaded[0], "mask": loaded[1], "source": self.records[index].source}


class ChangePairDataset(_CachedDataset):
    """Change pairs as {"before", "after": uint8 C x H x W, "change": int64 H x W (1 changed, 0 not), "source"}.

    Same options as `SegmentationDataset`. Use `training.transforms.pair_train_transform` so both
    dates share geometry. Crop padding marks `change` as IGNORE_INDEX.
    """

    what = "change"

    def _check(self) -> list[tuple[int, int]]:
        return check_pairs(self.records, self.in_channels, self.check_codes)

    def _load(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(a) for a in load_pair(self.records[index], self.in_channels))

    def _sample(self, index: int, loaded: tuple[torch.Tensor, ...]) -> dict:
        return {"before": loaded[0], "after": loaded[1], "change": loaded[2], "source": self.records[index].source}


class LevirCDDataset(ChangePairDataset):
    """LEVIR-CD split `split` ('train', 'val' or 'test') of `ROOT/{split}/{A,B,label}/*.png`."""

    def __init__(self, root: str | Path, split: str = "train", **kwargs: Any) -> None:
        super().__init__(LevirCD.pairs(root, (split,)), **kwargs)


__all__ = ["SegmentationDataset", "ChangePairDataset", "LevirCDDataset", "DEFAULT_CACHE_MB"]
