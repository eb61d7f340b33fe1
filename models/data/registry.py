"""The one registry of dataset layouts: `name:PATH` specs (`dubai:`, `loveda:`, `roads_cil:`, `deepglobe_roads:`, `spacenet:`, `folder:`,
`levir:`, `egy:`, `sztaki:`) to layouts."""
from __future__ import annotations

from pathlib import Path

from landsentry.models.data.change_layouts import EgyBCD, LevirCD, SztakiAirChange
from landsentry.models.data.layouts import DeepGlobeRoads, DubaiAerial, LabelledFolder, Layout, LoveDA, RoadsCIL, SpaceNetBuildings
from landsentry.models.data.records import PairRecord, Record
from landsentry.models.vocabulary.errors import InputError

LAYOUTS: dict[str, type[Layout]] = {layout.name: layout for layout in (
    DubaiAerial, LoveDA, RoadsCIL, DeepGlobeRoads, SpaceNetBuildings, LabelledFolder, LevirCD, EgyBCD, SztakiAirChange)}


def parse_spec(spec: str) -> tuple[type[Layout], Path]:
    """(layout, existing folder) of 'LAYOUT:PATH'; a bare path (or an unknown prefix) means a labelled folder."""
    name, sep, path = spec.partition(":")
    if not sep or name not in LAYOUTS:
        name, path = LabelledFolder.name, spec
    if not Path(path).is_dir():
        raise InputError(f"dataset folder not found: {path} (from --data {spec})")
    return LAYOUTS[name], Path(path)


def _names(labels: str) -> str:
    return ", ".join(f"{name}:PATH" for name, layout in LAYOUTS.items() if layout.labels == labels)


def records_from_spec(spec: str) -> list[Record]:
    """Labelled images of 'dubai:PATH', 'loveda:PATH' or 'folder:PATH' (a bare path means a plain folder)."""
    layout, path = parse_spec(spec)
    if layout.labels != "classes":
        raise InputError(f"{spec}: {layout.title} holds change pairs, not labelled images (use {_names('classes')})")
    return layout.records(path)  # type: ignore[attr-defined]


def pairs_from_spec(spec: str) -> list[PairRecord]:
    """Change pairs of 'levir:PATH', 'egy:PATH' or 'sztaki:PATH'."""
    layout, path = parse_spec(spec)
    if layout.labels != "change":
        raise InputError(f"{spec}: {layout.title} holds labelled images, not change pairs (use {_names('change')})")
    return layout.pairs(path)  # type: ignore[attr-defined]


def change_folder(spec: str) -> tuple[type[Layout] | None, Path]:
    """(layout or None, path) of an evaluate-change FOLDER: 'levir:PATH', 'egy:PATH', 'sztaki:PATH' or a bare path."""
    name, sep, path = spec.partition(":")
    layout = LAYOUTS.get(name) if sep else None
    if layout is None:
        return None, Path(spec)
    if layout.labels != "change":
        raise InputError(f"{spec}: {layout.title} holds labelled images, not change pairs (use {_names('change')})")
    return layout, Path(path)
