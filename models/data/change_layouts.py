"""Change-pair layouts (LEVIR-CD, EGY-BCD, SZTAKI AirChange) and the one pair discovery that training and evaluation share.

Labels are single-band, 255 (or 1 in 0/1-coded files) = change, 0 = none (`masks.change_from_label`).
`find_pairs` serves `landsentry evaluate-change`, which accepts a folder of either layout, a single
split folder or a single pair folder; it lists through the same `scan` as the layouts' `pairs`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Sequence

from landsentry.models.data.layouts import Layout
from landsentry.models.data.records import PairRecord, natural_key, raise_problems, visible_files
from landsentry.models.vocabulary.errors import InputError

ChangePair = tuple[str, Path, Path, Path]
"""(name, before, after, label) as `landsentry evaluate-change` lists it."""


class SplitPairFolders(Layout):
    """The LEVIR-CD folder shape, `ROOT/{train,val,test}/{A,B,label}/*.png`, shared by LEVIR-CD and EGY-BCD.

    Subclasses set the metadata and `group_of` (which crops come from one scene, so splits can keep them together).
    """

    labels = "change"
    folders = "{train,val,test}/{A,B,label}/*.png (A before, B after, same names)"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    @classmethod
    def group_of(cls, stem: str) -> str:
        """The source scene of crop `stem` (default: each crop is its own scene)."""
        return f"{cls.name}/{stem}"

    @classmethod
    def pairs(cls, root: str | Path, splits: Sequence[str] | None = None) -> list[PairRecord]:
        """Pairs of `ROOT/{SPLIT}/{A,B,label}/*.png` for each of `splits` (default all), source 'NAME/SPLIT/STEM'."""
        root = Path(root)
        splits = cls.splits if splits is None else tuple(splits)
        pairs = cls.scan(root, [root / split for split in splits])
        if not pairs:
            raise InputError(f"no samples found under {root} (expected {'|'.join(splits)}/A, B and label folders of PNGs)")
        return pairs

    @classmethod
    def scan(cls, root: Path, folders: Sequence[Path]) -> list[PairRecord]:
        """Pairs in split `folders` (each holding A/, B/, label/; those without A/ are skipped)."""
        pairs: list[PairRecord] = []
        problems: list[str] = []
        for folder in folders:
            if not (folder / "A").is_dir():
                continue
            for before in visible_files(folder / "A", (".png",)):
                after, label = folder / "B" / before.name, folder / "label" / before.name
                missing = [str(p) for p in (after, label) if not p.is_file()]
                if missing:
                    problems.append(f"{before}: missing {', '.join(missing)}")
                    continue
                pairs.append(PairRecord(before, after, label, f"{cls.name}/{folder.name}/{before.stem}", cls.group_of(before.stem)))
        raise_problems(f"in {cls.title} folder {root}", problems)
        return pairs


class LevirCD(SplitPairFolders):
    """LEVIR-CD (Chen & Shi 2020): 1024 px Google Earth scenes of Texas, 5 to 14 years apart, building change."""

    name = "levir"
    title = "LEVIR-CD"
    gsd = 0.5
    url = "https://justchenhao.github.io/LEVIR/"
    licence = "research use"

    _SCENE = re.compile(r"^(.*?)(?:_\d+_\d+)$")

    @classmethod
    def group_of(cls, stem: str) -> str:
        """The original 1024 px scene: 'levir/test_2' for 'test_2_0000_0512'."""
        scene = cls._SCENE.match(stem)
        return f"levir/{scene.group(1) if scene else stem}"


class EgyBCD(SplitPairFolders):
    """EGY-BCD (Holail et al., IEEE GRSL 2023): 256 px Google Earth crops of New Cairo, Egypt, building change.

    Desert construction like Dubai's, at about 0.25 m. The published crop names (`test_1`) carry no
    scene id, so each crop is its own group.
    """

    name = "egy"
    title = "EGY-BCD"
    gsd = 0.25
    licence = "research use with citation (Holail et al. 2023)"


class SztakiAirChange(Layout):
    """SZTAKI AirChange (Benedek & Sziranyi 2009): Hungarian aerial pairs 5 to 23 years apart, construction-type change."""

    name = "sztaki"
    title = "SZTAKI AirChange"
    labels = "change"
    gsd = 1.5
    url = "http://web.eee.sztaki.hu/remotesensing/airchange_benchmark.html"
    licence = "free for scientific use with citation"
    folders = "<site>_<n>/{A,B,label}.png"

    @classmethod
    def pairs(cls, root: str | Path, sites: Sequence[str] | None = None) -> list[PairRecord]:
        """`ROOT/<site>_<n>/{A,B,label}.png`; group = site (Szada, Tiszadob, ...).

        Any subfolder holding A.png, B.png and label.png counts (the shared copy has a site without `_n`).
        """
        root = Path(root)
        pairs = cls.scan(root, sites) if root.is_dir() else []
        if not pairs:
            raise InputError(f"no samples found under {root} (expected <site>_<n>/A.png, B.png, label.png)")
        return pairs

    @classmethod
    def scan(cls, root: Path, sites: Sequence[str] | None = None) -> list[PairRecord]:
        """Pairs in ROOT's pair folders (or ROOT itself when it holds A.png) whose names start with one of `sites` (default all)."""
        if (root / "A.png").is_file():
            folders = [root]
        else:
            folders = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key)
        pairs: list[PairRecord] = []
        problems: list[str] = []
        for folder in folders:
            files = [folder / "A.png", folder / "B.png", folder / "label.png"]
            present = [f.is_file() for f in files]
            if not any(present):
                continue
            if not all(present):
                problems.append(f"{folder}: missing {', '.join(f.name for f, ok in zip(files, present) if not ok)}")
                continue
            if sites and not any(folder.name.startswith(s) for s in sites):
                continue
            site = re.sub(r"_\d+$", "", folder.name)
            pairs.append(PairRecord(*files, source=f"sztaki/{folder.name}", group=f"sztaki/{site}"))
        raise_problems(f"in SZTAKI folder {root}", problems)
        return pairs


def find_pairs(folder: Path, split: str = "test", sites: Sequence[str] | None = None,
               layout: type[SplitPairFolders] = LevirCD) -> list[ChangePair]:
    """(name, before, after, label) of every pair under FOLDER, in the LEVIR-CD folder shape or SZTAKI layout.

    FOLDER may be a root in the LEVIR-CD shape (LEVIR-CD, EGY-BCD: `split` picks the split folder,
    'all' takes every one; `layout` names the pairs' source), a folder with A/ itself (`split`
    ignored), a SZTAKI root or one pair folder. `name` is the pair's source without its layout
    prefix: 'test/test_2_0000_0000', 'Szada_1'.
    """
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    if (folder / "A").is_dir() or any((folder / s / "A").is_dir() for s in layout.splits):
        if (folder / "A").is_dir():
            folders = [folder]
        elif split == "all":
            folders = [folder / s for s in layout.splits]
        elif (folder / split / "A").is_dir():
            folders = [folder / split]
        else:
            raise InputError(f"{folder} has no split {split!r} (expected {folder / split}/A, B and label folders)")
        pairs = layout.scan(folder, folders)
    else:
        pairs = SztakiAirChange.scan(folder, sites)
    if not pairs:
        raise InputError(f"no change pairs found under {folder} (expected LEVIR-CD A/, B/, label/ folders or SZTAKI <site>/A.png, B.png, label.png)")
    return [(p.source.partition("/")[2], p.before, p.after, p.label) for p in pairs]
