"""The change head's training data: real pairs, pasted-object pairs and unrelated pairs, drawn in one seeded stream.

Sources (`../shared/data`, see its README), each used for what it labels:

- real change pairs: LEVIR-CD train/val (building change), EGY-BCD train/val (building change),
  SZTAKI AirChange except Szada (construction and land change);
- fully labelled single dates: Dubai aerial, LoveDA: donors of buildings, roads and bare-soil
  patches for `change_synth.paste_pair`, and the crops of `change_synth.unrelated_pair`;
- partially labelled single dates: `roads_cil`, `deepglobe_roads` (road / not road: donors of roads
  only), and the after images of the real pairs with their change labels (donors of new buildings
  from Texas and Cairo, where no single-date building labels exist);
- any image of the above is a base for pasting: its own pixels are "no change" in both dates.

Test pairs are never read: LEVIR-CD test, SZTAKI Szada and EGY-BCD test (`TEST_HOLDOUT`) are
removed from every pool before anything else, and `holdout` removes more (validation runs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from landsentry.models.data.change_layouts import EgyBCD, LevirCD, SztakiAirChange
from landsentry.models.data.layouts import DubaiAerial, LoveDA
from landsentry.models.data.records import IMAGE_SUFFIXES, PairRecord, Record, visible_files
from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX
from landsentry.training.augment import rand, randint
from landsentry.training.change_synth import CHANGE_CLASSES, paste_pair, unrelated_pair
from landsentry.training.datasets import ChangePairDataset, SegmentationDataset
from landsentry.training.geometry import RandomScaleCrop

TEST_HOLDOUT: tuple[str, ...] = ("levir/test", "sztaki/Szada", "egy/test")
"""Sources (prefixes of a record's source or group) that no training run ever reads."""
ROAD_ONLY = {0: IGNORE_INDEX, 255: CLASS_ID["road"]}
"""Road-only masks: 255 road, 0 some other class (unknown which, so unlabelled here)."""
NEW_BUILDING = {0: IGNORE_INDEX, 1: CLASS_ID["building"], 255: CLASS_ID["building"]}
"""A building-change label read against its after image: the changed pixels show a (new) building."""


def held_out(source: str, group: str, holdout: Sequence[str]) -> bool:
    """Whether a record whose source or group starts with one of `holdout` (or `TEST_HOLDOUT`) is held out."""
    return any(name.startswith(prefix) for prefix in (*TEST_HOLDOUT, *holdout) for name in (source, group))


def road_records(root: Path, family: str) -> list[Record]:
    """`ROOT/images/*` + `ROOT/masks/<stem>.png` of a road-only set, read as road / unlabelled."""
    masks = {m.stem: m for m in visible_files(root / "masks", (".png",))}
    return [Record(i, masks[i.stem], ROAD_ONLY, f"{family}/{i.stem}", f"{family}/{i.stem}", "road-only 0/255")
            for i in visible_files(root / "images", IMAGE_SUFFIXES) if i.stem in masks]


@dataclass
class Sources:
    """Records per family: `pairs` (real change pairs) and `labelled` (single dates: donors and bases)."""

    pairs: dict[str, list[PairRecord]] = field(default_factory=dict)
    labelled: dict[str, list[Record]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [r.source for rs in self.pairs.values() for r in rs] + [r.source for rs in self.labelled.values() for r in rs]


def shared_sources(root: Path, holdout: Sequence[str] = (), families: Sequence[str] | None = None) -> Sources:
    """The training records under the shared data folder `root`, test pairs and `holdout` removed; `families` picks some."""
    pairs = {
        "levir": LevirCD.pairs(root / "levir_cd", ("train", "val")),
        "egy": EgyBCD.pairs(root / "egy_bcd", ("train", "val")),
        "sztaki": SztakiAirChange.pairs(root / "sztaki_airchange"),
    }
    pairs = {k: [p for p in v if not held_out(p.source, p.group, holdout)] for k, v in pairs.items()}
    labelled = {
        "dubai": DubaiAerial.records(root / "dubai_aerial"),
        "loveda": LoveDA.records(root / "loveda"),
        "roads": road_records(root / "roads_cil", "roads_cil") + road_records(root / "deepglobe_roads", "deepglobe_roads"),
        "new_buildings": [Record(p.after, p.label, NEW_BUILDING, f"{p.source}/after", p.group, "change label as building")
                          for k in ("levir", "egy") for p in pairs[k]],
    }
    labelled = {k: [r for r in v if not held_out(r.source, r.group, holdout)] for k, v in labelled.items()}
    if families is not None:
        pairs = {k: v for k, v in pairs.items() if k in families}
        labelled = {k: v for k, v in labelled.items() if k in families}
    return Sources({k: v for k, v in pairs.items() if v}, {k: v for k, v in labelled.items() if v})


class _Pool:
    """Families of one dataset, drawn by family share, then uniformly within the family."""

    def __init__(self, dataset: Dataset, families: list[str], shares: dict[str, float]) -> None:
        counts = {f: families.count(f) for f in set(families)}
        w = [shares.get(f, 0.0) / counts[f] for f in families]  # families without a share are never drawn
        if sum(w) <= 0:
            raise ValueError(f"all shares of {sorted(counts)} are zero")
        self.dataset, self.families, self.weights = dataset, families, torch.tensor(w, dtype=torch.float64)

    def draw(self, generator: torch.Generator) -> dict:
        return self.dataset[int(torch.multinomial(self.weights, 1, generator=generator))]


@dataclass(frozen=True)
class Mix:
    """How a batch is made: shares of real / pasted / unrelated pairs, crop size and zoom, family shares."""

    real: float = 0.4
    paste: float = 0.45
    unrelated: float = 0.15
    crop: int = 256
    scale: tuple[float, float] = (0.4, 1.6)
    pair_shares: dict = field(default_factory=lambda: {"levir": 1.0, "egy": 1.0, "sztaki": 1.0})
    donor_shares: dict = field(default_factory=lambda: {"dubai": 0.4, "new_buildings": 0.3, "loveda": 0.1, "roads": 0.2})
    base_shares: dict = field(default_factory=lambda: {"dubai": 0.3, "new_buildings": 0.2, "loveda": 0.1, "roads": 0.4})
    """Single dates drawn as bases (half of the bases; the other half are real pairs' dates)."""
    unrelated_families: tuple[str, ...] = ("dubai", "loveda")
    paste_classes: tuple[int, ...] = CHANGE_CLASSES
    """Classes whose appearance is change in made pairs (`CHANGE_CLASSES`, or buildings only as LEVIR-CD and EGY-BCD label)."""
    distractors: tuple[int, ...] = ()
    """Classes pasted as patches that are not change (`change_synth.paste_pair`)."""


class ChangeMix(Dataset):
    """`samples` pairs {"before", "after": uint8 C x H x W, "change": int64 H x W (1, 0, IGNORE_INDEX), "kind": str}.

    Sample `i` is drawn from a generator seeded by (seed, i): a real pair crop, a pasted-object pair
    (base: any single date or pair date; donor: a labelled crop, centred on an object) or an
    unrelated pair, by the `Mix` shares; then `transform` (flips, acquisition differences per date)
    and a random date order (a new object in one order is a demolished one in the other).
    """

    def __init__(self, sources: Sources, mix: Mix, samples: int, seed: int = 0, transform: Callable | None = None) -> None:
        self.mix, self.samples, self.seed, self.transform = mix, samples, seed, transform
        pairs = [p for f in sources.pairs for p in sources.pairs[f]]
        labelled = [r for f in sources.labelled for r in sources.labelled[f]]
        if mix.real > 0 and not pairs:
            raise ValueError("a real-pair share needs real pairs")
        if (mix.paste > 0 or mix.unrelated > 0) and not labelled:
            raise ValueError("pasted and unrelated pairs need labelled single dates")
        pair_families = [f for f in sources.pairs for _ in sources.pairs[f]]
        families = [f for f in sources.labelled for _ in sources.labelled[f]]
        self.pairs = _Pool(ChangePairDataset(pairs, cache_mb=None), pair_families, mix.pair_shares) if pairs else None
        self.donors = _Pool(SegmentationDataset(labelled, cache_mb=None), families, mix.donor_shares) if labelled else None
        full = {f: 1.0 for f in mix.unrelated_families}
        self.full = _Pool(self.donors.dataset, families, full) if self.donors and any(f in families for f in full) else None
        self.bases = _Pool(self.donors.dataset, families, mix.base_shares) if self.donors and any(
            mix.base_shares.get(f, 0) > 0 for f in families) else None

    def __len__(self) -> int:
        return self.samples

    def generator(self, index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state >> 1))

    def _crop(self, sample: dict, g: torch.Generator, aware: float = 0.0, rare: tuple[int, ...] = ()) -> dict:
        """A `mix.crop` crop at a random zoom in `mix.scale`, zooming out no further than the image fills the crop."""
        h, w = sample["image" if "image" in sample else "before"].shape[-2:]
        lo = min(max(self.mix.scale[0], self.mix.crop / min(h, w)), self.mix.scale[1])
        return RandomScaleCrop(self.mix.crop, (lo, self.mix.scale[1]), aware, rare or None)(sample, g)

    def _base(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A crop of any image, with its labels when it has them: a single date, or one date of a real pair."""
        if self.pairs is not None and (self.bases is None or rand(g) < 0.5):
            pair = self.pairs.draw(g)
            return self._crop({"image": pair["before"] if rand(g) < 0.5 else pair["after"]}, g)["image"], None
        drawn = self._crop({k: v for k, v in self.bases.draw(g).items() if k in ("image", "mask")}, g)
        return drawn["image"], drawn["mask"]

    def _object(self, pool: _Pool, g: torch.Generator) -> dict:
        """A labelled crop, mostly centred on an object of a change kind."""
        drawn = pool.draw(g)
        return self._crop({"image": drawn["image"], "mask": drawn["mask"]}, g, 0.9, self.mix.paste_classes)

    def _kind(self, g: torch.Generator) -> str:
        m = self.mix
        r = rand(g) * (m.real + m.paste + (m.unrelated if self.full else 0.0))
        if r < m.real and self.pairs is not None:
            return "real"
        return "paste" if r < m.real + m.paste or self.full is None else "unrelated"

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.samples:
            raise IndexError(index)
        g = self.generator(index)
        kind = self._kind(g)
        if kind == "real":
            pair = self.pairs.draw(g)
            sample = self._crop({k: pair[k] for k in ("before", "after", "change")}, g, 0.5, (1,))
        elif kind == "paste":
            base, base_mask = self._base(g)
            donor = self._object(self.donors, g)
            sample = paste_pair(base, donor["image"], donor["mask"], g, self.mix.paste_classes,
                                distractors=self.mix.distractors, base_mask=base_mask)
        else:
            a, b = self._object(self.full, g), self._object(self.full, g)
            sample = unrelated_pair(a["image"], a["mask"], b["image"], b["mask"], self.mix.paste_classes)
        if self.transform is not None:
            sample = self.transform(sample, g)
        if randint(0, 1, g):
            sample = {**sample, "before": sample["after"], "after": sample["before"]}
        return {"before": sample["before"], "after": sample["after"], "change": sample["change"].long(), "kind": kind}

