"""What a batch interprets: scenes read from a CSV/JSON manifest, a folder of images, or before/after folders.

Every problem a user can put in a manifest (a missing file, a duplicate id, a row without an after
image, a gsd that is not a number, a column nobody reads) is collected and refused in ONE
`InputError` before any work starts, so a province run never stops half-way on a typo.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from landsentry.models.vocabulary.errors import InputError

COLUMNS = ("id", "after", "before", "permits", "gsd", "after_date", "before_date")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
SCENE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Ids name folders (OUTDIR/scenes/ID): no separators, no leading dot, nothing a shell or file system mangles."""
DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
MAX_LISTED = 12


@dataclass(frozen=True)
class Scene:
    """One scene: an after image (one date) or a before/after pair, with optional permits and ground size."""

    id: str
    after: Path
    before: Path | None = None
    permits: Path | None = None
    gsd: float | None = None
    after_date: str | None = None
    before_date: str | None = None

    @property
    def inputs(self) -> dict[str, Path]:
        """The files this scene reads, by role."""
        return {role: path for role, path in (("after", self.after), ("before", self.before), ("permits", self.permits)) if path is not None}


def read_manifest(source: str | Path, permits: Path | None = None, gsd: float | None = None) -> list[Scene]:
    """The scenes `source` lists (CSV, JSON, a folder of images, or a folder with before/ and after/).

    `permits` and `gsd` apply to scenes whose row gives none. Raises one InputError naming every problem.
    """
    source = Path(source)
    if source.is_dir():
        rows, where = _folder_rows(source), source
    elif not source.is_file():
        raise InputError(f"manifest not found: {source}")
    elif source.suffix.lower() == ".csv":
        rows, where = _csv_rows(source), source.parent
    elif source.suffix.lower() == ".json":
        rows, where = _json_rows(source), source.parent
    else:
        raise InputError(f"{source}: a manifest is a .csv or .json file, or a folder of images")
    problems: list[str] = []
    scenes = [scene for label, row in rows if (scene := _scene(label, row, where, permits, gsd, problems)) is not None]
    if not scenes and not problems:
        problems.append("it lists no scenes")
    _check_unique(scenes, problems)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InputError(f"manifest {source}: {len(problems)} problem(s), nothing was started:\n  {listed}{more}")
    return scenes


def _csv_rows(path: Path) -> list[tuple[str, dict]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return [(f"line {reader.line_num}", row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"manifest {path} cannot be read as CSV: {exc}") from None


def _json_rows(path: Path) -> list[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest {path} is not JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("scenes")
    if not isinstance(data, list):
        raise InputError(f"manifest {path}: expected a list of scenes (or {{\"scenes\": [...]}})")
    return [(f"scene {i + 1}", row) for i, row in enumerate(data)]


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


def _folder_rows(folder: Path) -> list[tuple[str, dict]]:
    """One-date scenes from the images in `folder`; pairs matched by name when it holds before/ and after/."""
    if not ((folder / "before").is_dir() and (folder / "after").is_dir()):
        return [(path.name, {"id": stem, "after": str(path)}) for stem, path in _images(folder).items()]
    before, after = _images(folder / "before"), _images(folder / "after")
    rows = [(f"after/{after[stem].name}", {"id": stem, "after": str(after[stem]), "before": str(before[stem])})
            for stem in sorted(after.keys() & before.keys())]
    lonely = [f"after/{after[s].name} has no before/{s}.*" for s in sorted(after.keys() - before.keys())]
    lonely += [f"before/{before[s].name} has no after/{s}.*" for s in sorted(before.keys() - after.keys())]
    return rows + [(text, {"error": "pairs are matched by file name"}) for text in lonely]


def _scene(label: str, row: object, where: Path, permits: Path | None, gsd: float | None, problems: list[str]) -> Scene | None:
    """The row as a Scene, or None with its problems appended."""
    if not isinstance(row, dict):
        problems.append(f"{label}: not an object with columns {', '.join(COLUMNS)}")
        return None
    if "error" in row:
        problems.append(f"{label}: {row['error']}")
        return None
    before_count = len(problems)
    if None in row:  # csv.DictReader keeps values beyond the header under None
        problems.append(f"{label}: more values than the header has columns")
        row = {k: v for k, v in row.items() if k is not None}
    unknown = sorted(str(k) for k in row if k not in COLUMNS)
    if unknown:
        problems.append(f"{label}: unknown column(s) {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
    values = {k: _text(row.get(k)) for k in COLUMNS}
    files = {k: _file(label, k, values[k], where, problems) for k in ("after", "before", "permits")}
    if values["after"] is None:
        problems.append(f"{label}: no 'after' image")
    scene_id = values["id"] or (Path(values["after"]).stem if values["after"] else None)
    if scene_id is not None and not SCENE_ID.match(scene_id):
        problems.append(f"{label}: id {scene_id!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    dates = {k: _date(label, k, values[k], files.get(k.removesuffix("_date")), problems) for k in ("after_date", "before_date")}
    scene_gsd = _gsd(label, values["gsd"], problems) if values["gsd"] is not None else gsd
    if len(problems) > before_count:
        return None
    return Scene(scene_id, files["after"], files["before"], files["permits"] or permits, scene_gsd, dates["after_date"], dates["before_date"])


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _file(label: str, role: str, value: str | None, where: Path, problems: list[str]) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else where / path
    if not path.is_file():
        problems.append(f"{label}: {role} file not found: {path}")
    return path.resolve()


def _gsd(label: str, value: str, problems: list[str]) -> float | None:
    try:
        gsd = float(value)
    except ValueError:
        gsd = math.nan
    if not (math.isfinite(gsd) and gsd > 0):
        problems.append(f"{label}: gsd must be a positive number of metres per pixel, not {value!r}")
        return None
    return gsd


def _date(label: str, column: str, value: str | None, image: Path | None, problems: list[str]) -> str | None:
    """The column's date as YYYY-MM-DD; without one, a date in the image's file name (NAIP names carry it), else None."""
    if value is None:
        match = DATE_IN_NAME.search(image.name) if image is not None else None
        return "-".join(match.groups()) if match else None
    match = DATE_IN_NAME.fullmatch(value)
    if not match:
        problems.append(f"{label}: {column} must be a date like 2020-08-31, not {value!r}")
        return None
    return "-".join(match.groups())


def _check_unique(scenes: list[Scene], problems: list[str]) -> None:
    """Ids name folders, so they must differ even on a file system that ignores case."""
    seen: dict[str, str] = {}
    for scene in scenes:
        key = scene.id.casefold()
        if key in seen:
            problems.append(f"duplicate id {scene.id!r} (also {seen[key]!r}): each scene needs its own id")
        else:
            seen[key] = scene.id
