"""What a dataset layout lists: labelled images (`Record`) and change pairs (`PairRecord`), and how to list them.

Layouts only find files and say how each mask's codes map onto the schema; readers and checks
(`masks`, `images`, `checks`) then open them. Problems are collected and raised as one `InputError`
naming every offending file, so a bad dataset fails in seconds, not hours into training.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

from landsentry.models.vocabulary.errors import InputError

Code = int | tuple[int, int, int]
"""A mask code: an integer (index masks) or an (R, G, B) colour (colour-coded masks)."""
CodeMap = Mapping[Code, int]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
MAX_LISTED = 20


@dataclass(frozen=True, eq=False)
class Record:
    """One labelled image: where its pixels and mask are, how mask codes map to schema ids, where it came from.

    `group` names the source scene (e.g. a Dubai source tile): splits hold out whole groups, because
    crops of one scene in both train and val measure memory, not generalisation.
    """

    image: Path
    mask: Path
    mapping: CodeMap | None  # None: the mask already holds schema ids (or IGNORE_INDEX)
    source: str
    group: str
    label_map: str = "schema ids"  # what `mapping` is, for error messages


@dataclass(frozen=True, eq=False)
class PairRecord:
    """One change-detection pair: before and after images of the same place and a change label (0/255 or 0/1)."""

    before: Path
    after: Path
    label: Path
    source: str
    group: str


AnyRecord = TypeVar("AnyRecord", Record, PairRecord)


def natural_key(path: Path) -> tuple:
    """Sort key that puts 'tile_2' before 'tile_10'."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name))


def visible_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Image-like files in natural order, skipping hidden ones (.DS_Store, macOS '._name.jpg' resource forks)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes),
        key=natural_key,
    )


def listing(items: Sequence[str]) -> str:
    """An indented list of at most MAX_LISTED items (and how many more), for error messages."""
    shown = [f"  - {s}" for s in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"  ... and {len(items) - MAX_LISTED} more")
    return "\n".join(shown)


def raise_problems(what: str, problems: Sequence[str]) -> None:
    """One InputError naming every problem found `what` (e.g. 'in LoveDA folder X'); nothing when there are none."""
    if problems:
        raise InputError(f"{len(problems)} problem(s) {what}:\n{listing(problems)}")
