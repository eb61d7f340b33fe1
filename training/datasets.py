"""Labelled imagery for training: dataset layouts -> records -> cached, validated, augmentable torch datasets.

Layout functions (`loveda_records`, `dubai_records`, `folder_records`, `levir_pairs`, `sztaki_pairs`)
only list files and say how each mask's codes map onto the schema of `models.classes`. The dataset
classes then check every record before training starts (sizes, unknown mask codes) and raise one
`InputError` naming all offending files, so a bad dataset fails in seconds, not hours in.

Samples are dicts of uint8 images (C x H x W) and int64 labels (H x W, schema ids or IGNORE_INDEX);
normalisation is left to the training step, which knows the checkpoint's mean/std.

Images are decoded through `models.raster.RasterSource` (magic-byte sniffing, pixel limits, band
handling, uint16 stretch: the same path as inference, so training and serving see the same pixels)
and kept decoded in a per-process LRU cache. A file that turns out corrupt mid-epoch is skipped
with one warning instead of killing a long run; see `skipped`.
"""
from __future__ import annotations

import json
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import rasterio
import torch
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window
from torch.utils.data import Dataset

from landsentry.models.vocabulary.classes import CLASS_ID, CLASS_NAMES, DUBAI_TO_SCHEMA, IGNORE_INDEX, LOVEDA_TO_SCHEMA, NUM_CLASSES
from landsentry.models.vocabulary.errors import InputError
from landsentry.models.io.formats import MAX_DECODED_PIXELS, check_pixels, sniff_format
from landsentry.models.io.header import probe
from landsentry.models.io.raster import RasterSource

Code = int | tuple[int, int, int]
"""A mask code: an integer (index masks) or an (R, G, B) colour (colour-coded masks)."""
CodeMap = Mapping[Code, int]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
MASK_STEM_SUFFIXES = ("", "_mask", "_label", "_gt")
"""A folder mask for `a.jpg` may be `a.png` or `a_mask.png`, `a_label.png`, `a_gt.png`."""
CLASS_MAP_FILES = ("classes.json", "classmap.json")
IGNORE_NAMES = ("ignore", "ignored", "unlabeled", "unlabelled", "nodata", "no_data", "void")
SCHEMA_IDENTITY: dict[Code, int] = {**{i: i for i in range(NUM_CLASSES)}, IGNORE_INDEX: IGNORE_INDEX}
"""Masks that already hold schema ids (a folder without classes.json)."""

DUBAI_COLORS: dict[Code, int] = {
    (0x3C, 0x10, 0x98): CLASS_ID["building"],
    (0x84, 0x29, 0xF6): CLASS_ID["bare_soil"],  # land (unpaved area)
    (0x6E, 0xC1, 0xE4): CLASS_ID["road"],
    (0xFE, 0xDD, 0x3A): CLASS_ID["vegetation"],
    (0xE2, 0xA9, 0x29): CLASS_ID["water"],
    (0x9B, 0x9B, 0x9B): IGNORE_INDEX,  # unlabeled
}
"""Colours of the original Kaggle release of the Dubai set (RGB masks); the shared copy has index masks."""

DUBAI_VAL_GROUPS: tuple[str, ...] = ("dubai/t8",)
"""Default held-out Dubai source tile. Tile 8 (9 images, 32% of the labelled pixels) holds every class
in the mix closest to the other tiles: building 21%, road 12%, bare soil 47%, vegetation 15%, water 6%
(L1 distance 0.37 to the rest; tile 3, next, is mostly sea with 3% buildings)."""
LOVEDA_VAL_GROUPS: tuple[str, ...] = ()
"""The three shared LoveDA tiles (farmland+village, ponds, forest) are each the only example of their
scene type, so all stay in training; none has bare soil, and Dubai tile 8 already validates the
building/road/bare-soil classes that matter most."""

MAX_LISTED = 20
DEFAULT_CACHE_MB = 1024.0


# --- records -----------------------------------------------------------------------------------
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


R = TypeVar("R", Record, PairRecord)


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name))


def _listing(items: Sequence[str]) -> str:
    shown = [f"  - {s}" for s in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"  ... and {len(items) - MAX_LISTED} more")
    return "\n".join(shown)


def _raise_problems(what: str, problems: Sequence[str]) -> None:
    if problems:
        raise InputError(f"{len(problems)} problem(s) {what}:\n{_listing(problems)}")


def _visible_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Image-like files, skipping hidden ones (.DS_Store, macOS '._name.jpg' resource forks)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes),
        key=_natural_key,
    )


def loveda_records(
    root: str | Path, splits: Sequence[str] = ("Train", "Val"), domains: Sequence[str] = ("Urban", "Rural")
) -> list[Record]:
    """LoveDA's own layout `ROOT/{Train,Val}/{Urban,Rural}/{images_png,masks_png}/N.png`, codes mapped with LOVEDA_TO_SCHEMA.

    Missing split/domain folders are skipped (a partial download still works). Each tile is its own
    group: LoveDA publishes no finer scene ids.
    """
    root = Path(root)
    records: list[Record] = []
    problems: list[str] = []
    for split in splits:
        for domain in domains:
            images_dir = root / split / domain / "images_png"
            masks_dir = root / split / domain / "masks_png"
            if not images_dir.is_dir():
                continue
            for image in _visible_files(images_dir, (".png",)):
                mask = masks_dir / image.name
                if not mask.is_file():
                    problems.append(f"{image}: no mask {mask}" + (" (LoveDA's Test split has no public masks)" if split.lower() == "test" else ""))
                    continue
                source = f"loveda/{split}/{domain}/{image.stem}"
                records.append(Record(image, mask, LOVEDA_TO_SCHEMA, source, source, "LoveDA codes 0-7"))
    _raise_problems(f"in LoveDA folder {root}", problems)
    if not records:
        raise InputError(
            f"no samples found under {root} (expected {'|'.join(splits)}/{'|'.join(domains)}/images_png/*.png and masks_png/*.png)"
        )
    return records


_DUBAI_TILE = re.compile(r"t\s*(\d+)\s*$", re.IGNORECASE)


def dubai_tile(stem: str) -> str | None:
    """Source tile number from a shared-copy Dubai file stem: 'image_part_001t3' (or 'image_part_001 t 3') -> '3'."""
    match = _DUBAI_TILE.search(stem)
    return match.group(1) if match else None


def dubai_records(root: str | Path) -> list[Record]:
    """The Dubai aerial set: `ROOT/images/*.jpg` + `ROOT/masks/*.png` (same stem), group = source tile 'dubai/tT'.

    Also reads the original Kaggle layout `ROOT/Tile N/{images,masks}/` (group from the folder) and
    its RGB colour masks (`DUBAI_COLORS`); the shared copy has index masks 0-5 (DUBAI_TO_SCHEMA).
    """
    root = Path(root)
    mapping: dict[Code, int] = {**DUBAI_TO_SCHEMA, **DUBAI_COLORS}
    label_map = "Dubai codes 0-5 (or its RGB colours)"
    layouts: list[tuple[Path, str | None]] = []
    if (root / "images").is_dir():
        layouts.append((root, None))
    else:
        for tile_dir in sorted((d for d in root.glob("*") if d.is_dir() and (d / "images").is_dir()), key=_natural_key):
            number = re.search(r"(\d+)\s*$", tile_dir.name)
            layouts.append((tile_dir, number.group(1) if number else tile_dir.name))
    records: list[Record] = []
    problems: list[str] = []
    for folder, tile in layouts:
        masks_dir = folder / "masks"
        for image in _visible_files(folder / "images", IMAGE_SUFFIXES):
            mask = masks_dir / f"{image.stem}.png"
            if not mask.is_file():
                problems.append(f"{image}: no mask {mask}")
                continue
            t = tile if tile is not None else dubai_tile(image.stem)
            source = f"dubai/{image.stem}" if tile is None else f"dubai/t{tile}/{image.stem}"
            group = f"dubai/t{t}" if t is not None else source
            records.append(Record(image, mask, mapping, source, group, label_map))
    _raise_problems(f"in Dubai folder {root}", problems)
    if not records:
        raise InputError(f"no samples found under {root} (expected images/ and masks/, or 'Tile N/images' and 'Tile N/masks')")
    return records


def _parse_class_name(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in SCHEMA_IDENTITY else None
    if not isinstance(value, str):
        return None
    name = re.sub(r"[\s\-/]+", "_", value.strip().lower())
    if name in IGNORE_NAMES:
        return IGNORE_INDEX
    return CLASS_ID.get(name)


def _parse_code(key: str) -> Code | None:
    key = key.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{6}", key):
        return tuple(int(key[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if re.fullmatch(r"\d{1,3}", key) and int(key) <= 255:
        return int(key)
    return None


def read_class_map(path: str | Path) -> dict[Code, int]:
    """A folder's `classes.json`: {"mask code": "schema class name"}, e.g. {"0": "ignore", "1": "building"}.

    Codes are integers 0-255 or "#RRGGBB" colours (colour-coded masks); names are the schema's
    (background, building, road, bare_soil, vegetation, water) or "ignore". {"classes": {...}} also works.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read class map: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("classes"), dict):
        data = data["classes"]
    if not isinstance(data, dict) or not data:
        raise InputError(f'{path}: expected an object mapping mask codes to class names, e.g. {{"0": "ignore", "1": "building"}}')
    mapping: dict[Code, int] = {}
    problems: list[str] = []
    for key, value in data.items():
        code = _parse_code(str(key))
        target = _parse_class_name(value)
        if code is None:
            problems.append(f'code "{key}" is not an integer 0-255 or a "#RRGGBB" colour')
        elif target is None:
            problems.append(f'code "{key}": unknown class {value!r} (use one of {", ".join(CLASS_NAMES)} or "ignore")')
        else:
            mapping[code] = target
    _raise_problems(f"in class map {path}", problems)
    return mapping


def folder_records(root: str | Path, group_of: Callable[[str], str] | None = None) -> list[Record]:
    """A user's labelled folder: `ROOT/images/*.{png,jpg,tif}` + `ROOT/masks/*.png` (same stem) + optional `classes.json`.

    `classes.json` (or `classmap.json`) maps the folder's mask codes to schema class names; without
    it masks must already hold schema ids (0-5, 255 = ignore). `group_of(stem)` names the source
    scene of each image for splitting (default: every image is its own group).
    """
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError(f"no samples found under {root} (expected images/ and masks/)")
    images = _visible_files(images_dir, IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"no samples found under {root} (expected images/ and masks/)")
    masks: dict[str, Path] = {}
    for m in _visible_files(masks_dir, MASK_SUFFIXES):
        masks.setdefault(m.stem, m)
    mapping: dict[Code, int] | None = None
    label_map = "schema ids 0-5 / 255 (no classes.json)"
    for name in CLASS_MAP_FILES:
        if (root / name).is_file():
            mapping = read_class_map(root / name)
            label_map = str(root / name)
            break
    problems: list[str] = []
    seen: dict[str, Path] = {}
    records: list[Record] = []
    for image in images:
        if image.stem in seen:
            problems.append(f"{image}: same name as {seen[image.stem].name}; which one does the mask belong to?")
            continue
        seen[image.stem] = image
        mask = next((masks[image.stem + s] for s in MASK_STEM_SUFFIXES if image.stem + s in masks), None)
        if mask is None:
            problems.append(f"{image}: no mask (expected masks/{image.stem}.png)")
            continue
        group = group_of(image.stem) if group_of else f"{root.name}/{image.stem}"
        records.append(Record(image, mask, mapping, f"{root.name}/{image.stem}", group, label_map))
    _raise_problems(f"in dataset folder {root}", problems)
    return records


_LEVIR_SCENE = re.compile(r"^(.*?)(?:_\d+_\d+)$")


def levir_pairs(root: str | Path, splits: Sequence[str] = ("train", "val", "test")) -> list[PairRecord]:
    """LEVIR-CD: `ROOT/{train,val,test}/{A,B,label}/*.png`; group = the original 1024 px scene ('test_2' for 'test_2_0000_0512')."""
    root = Path(root)
    pairs: list[PairRecord] = []
    problems: list[str] = []
    for split in splits:
        folder = root / split
        if not (folder / "A").is_dir():
            continue
        for before in _visible_files(folder / "A", (".png",)):
            after, label = folder / "B" / before.name, folder / "label" / before.name
            missing = [str(p) for p in (after, label) if not p.is_file()]
            if missing:
                problems.append(f"{before}: missing {', '.join(missing)}")
                continue
            scene = _LEVIR_SCENE.match(before.stem)
            pairs.append(PairRecord(before, after, label, f"levir/{split}/{before.stem}", f"levir/{scene.group(1) if scene else before.stem}"))
    _raise_problems(f"in LEVIR-CD folder {root}", problems)
    if not pairs:
        raise InputError(f"no samples found under {root} (expected {'|'.join(splits)}/A, B and label folders of PNGs)")
    return pairs


def sztaki_pairs(root: str | Path) -> list[PairRecord]:
    """SZTAKI AirChange as shared: `ROOT/<site>_<n>/{A,B,label}.png`; group = site (Szada, Tiszadob, ...).

    Any subfolder holding A.png, B.png and label.png counts (the shared copy has a site without `_n`).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no samples found under {root} (expected <site>_<n>/A.png, B.png, label.png)")
    pairs: list[PairRecord] = []
    problems: list[str] = []
    for folder in sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=_natural_key):
        files = [folder / "A.png", folder / "B.png", folder / "label.png"]
        present = [f.is_file() for f in files]
        if not any(present):
            continue
        if not all(present):
            problems.append(f"{folder}: missing {', '.join(f.name for f, ok in zip(files, present) if not ok)}")
            continue
        site = re.sub(r"_\d+$", "", folder.name)
        pairs.append(PairRecord(*files, source=f"sztaki/{folder.name}", group=f"sztaki/{site}"))
    _raise_problems(f"in SZTAKI folder {root}", problems)
    if not pairs:
        raise InputError(f"no samples found under {root} (expected <site>_<n>/A.png, B.png, label.png)")
    return pairs


# --- splits ------------------------------------------------------------------------------------
def groups_of(records: Iterable[Record | PairRecord]) -> list[str]:
    """Distinct groups in first-seen order."""
    return list(dict.fromkeys(r.group for r in records))


def split_by_group(records: Sequence[R], val_groups: Iterable[str]) -> tuple[list[R], list[R]]:
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


def holdout_groups(records: Sequence[R], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[R], list[R]]:
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
    dubai_train, dubai_val_records = split_by_group(dubai_records(data_root / "dubai_aerial"), dubai_val)
    loveda_train, loveda_val_records = split_by_group(loveda_records(data_root / "loveda"), loveda_val)
    return dubai_train + loveda_train, dubai_val_records + loveda_val_records


# --- reading files -----------------------------------------------------------------------------
def image_header(path: Path) -> tuple[int, int, int]:
    """(height, width, data bands) from the file header, without decoding pixels; alpha bands are not counted."""
    header = probe(path)
    return header.height, header.width, header.bands


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels."""
    return image_header(path)[:2]


def _band_problem(path: Path, bands: int, channels: int) -> str | None:
    """Why an image with `bands` data bands cannot feed a `channels`-band model, or None (mirrors RasterSource)."""
    ok = bands == 4 if channels == 4 else bands in (1, 3, 4)
    if ok:
        return None
    return f"{path}: has {bands} data band(s); a {channels}-band model trains on " + (
        "4-band (RGB+NIR) images" if channels == 4 else "1 (panchromatic), 3 (RGB) or 4 (RGB+NIR) band images"
    )


def read_image(path: Path, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 C x H x W with `channels` bands, bool H x W valid pixels) via RasterSource.

    Exactly the bands inference reads: 1 band is repeated for 3-channel models, 4 bands give RGB
    (+NIR for 4-channel models), uint16 is stretched; a 1-channel model gets band 1 of RGB input
    (RasterSource's choice - kept identical so training and serving never disagree).
    """
    with RasterSource(path, channels=channels) as src:
        data, valid = src.read(Window(0, 0, src.info.width, src.info.height))
    return np.clip(np.rint(data), 0, 255).astype(np.uint8), np.asarray(valid, bool)


def read_mask_codes(path: Path, colours: bool = False) -> np.ndarray:
    """Raw mask codes: uint8 H x W for index masks, uint8 H x W x 3 for colour masks (equal-channel RGB collapses to H x W).

    Palette PNGs give their palette indices (the usual way index masks are stored), or their
    colours when `colours` is set (the class map lists only colours).
    """
    fmt = sniff_format(path)
    if fmt == "JPEG":
        raise InputError(f"{path.name}: masks must be PNG or TIFF (JPEG compression changes class codes at every edge)")
    try:
        if fmt == "GTiff":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    check_pixels(path, ds.width, ds.height, MAX_DECODED_PIXELS)
                    raw = ds.read(list(range(1, min(ds.count, 3) + 1)))
            raw = raw[0] if raw.shape[0] < 3 else raw.transpose(1, 2, 0)
        else:
            with Image.open(path) as img:
                check_pixels(path, img.width, img.height, MAX_DECODED_PIXELS)
                img.load()
                if colours and img.mode in ("P", "PA"):
                    raw = np.asarray(img.convert("RGB"))
                elif img.mode in ("LA", "PA"):
                    raw = np.asarray(img)[..., 0]
                elif img.mode == "RGBA":
                    raw = np.asarray(img)[..., :3]
                elif img.mode in ("1", "L", "P", "RGB") or img.mode.startswith("I"):
                    raw = np.asarray(img)
                else:
                    raise InputError(f"{path.name}: unsupported mask mode {img.mode}; save masks as 8-bit greyscale PNG")
    except (RasterioError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path.name} is a damaged or truncated mask: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if raw.dtype == bool:
        raw = raw.astype(np.uint8)
    if raw.dtype != np.uint8:
        if not np.issubdtype(raw.dtype, np.integer) or raw.min() < 0 or raw.max() > 255:
            raise InputError(f"{path.name}: mask values must be integers 0-255 (got {raw.dtype}, range {raw.min()}..{raw.max()})")
        raw = raw.astype(np.uint8)
    if raw.ndim == 3 and (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all():
        raw = np.ascontiguousarray(raw[..., 0])
    return raw


def _colour_only(mapping: CodeMap | None) -> bool:
    return mapping is not None and all(isinstance(k, tuple) for k in mapping)


def _colour_keys(raw: np.ndarray) -> np.ndarray:
    return (raw[..., 0].astype(np.int32) << 16) | (raw[..., 1].astype(np.int32) << 8) | raw[..., 2].astype(np.int32)


def map_mask(raw: np.ndarray, mapping: CodeMap | None, name: str = "mask") -> tuple[np.ndarray, list[Code]]:
    """(uint8 H x W of schema ids, codes present in `raw` but missing from `mapping`, which become IGNORE_INDEX)."""
    mapping = SCHEMA_IDENTITY if mapping is None else mapping
    int_map = {k: v for k, v in mapping.items() if isinstance(k, int)}
    colour_map = {k: v for k, v in mapping.items() if isinstance(k, tuple)}
    if raw.ndim == 2:
        table = np.full(256, IGNORE_INDEX, np.uint8)
        known = np.zeros(256, bool)
        for (r, g, b), target in colour_map.items():  # grey colours (#000000, #FFFFFF) in a mask saved single-band
            if r == g == b:
                table[r], known[r] = target, True
        for code, target in int_map.items():
            table[code], known[code] = target, True
        present = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
        return table[raw], [int(c) for c in present if not known[c]]
    if not colour_map:
        raise InputError(f"{name} is a colour (RGB) mask but its class map has numeric codes; map colours as \"#RRGGBB\" in classes.json")
    keys = _colour_keys(raw)
    out = np.full(keys.shape, IGNORE_INDEX, np.uint8)
    matched = np.zeros(keys.shape, bool)
    for (r, g, b), target in colour_map.items():
        hit = keys == ((r << 16) | (g << 8) | b)
        out[hit] = target
        matched |= hit
    unknown = [tuple(int(v) for v in ((k >> 16) & 255, (k >> 8) & 255, k & 255)) for k in np.unique(keys[~matched])]
    return out, unknown  # type: ignore[return-value]


def _format_codes(codes: Sequence[Code]) -> str:
    shown = ["#%02X%02X%02X" % c if isinstance(c, tuple) else str(c) for c in codes[:12]]
    return "[" + ", ".join(shown) + (f", ... {len(codes) - 12} more" if len(codes) > 12 else "") + "]"


def change_from_label(raw: np.ndarray, name: str = "label") -> np.ndarray:
    """uint8 H x W change map: 1 where the label is 255 (LEVIR/SZTAKI), or 1 for 0/1-coded labels; 0 elsewhere."""
    if raw.ndim == 3:
        raise InputError(f"{name}: change labels must be single-band (0 = no change, 255 = change)")
    return (raw == 255 if raw.max(initial=0) > 1 else raw == 1).astype(np.uint8)


def _label_problem(raw: np.ndarray) -> str | None:
    """Why a change label is not 0/255 (or 0/1) single-band, or None."""
    if raw.ndim == 3:
        return "change label is a colour image; expected single-band 0 = no change, 255 = change"
    present = set(np.flatnonzero(np.bincount(raw.ravel(), minlength=256)).tolist())
    if present <= {0, 255} or present <= {0, 1}:
        return None
    return f"change label values {sorted(present)[:12]}; expected 0/255 (or 0/1)"


# --- datasets ----------------------------------------------------------------------------------
class _FileFailed(Exception):
    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(str(error))
        self.path, self.error = path, error


def _read(path: Path, fn: Callable[[Path], Any]) -> Any:
    try:
        return fn(path)
    except (InputError, OSError) as exc:
        raise _FileFailed(path, exc) from None


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

    def _skip(self, index: int, failure: _FileFailed) -> None:
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
            except _FileFailed as failure:
                self._skip(i, failure)
                continue
            sample = self._sample(i, loaded)
            if self.transform is not None:
                sample = self.transform(sample, generator)
            return self._finish(sample, loaded)
        raise InputError(f"none of the {n} samples could be read; unreadable files:\n{_listing(sorted(map(str, self.skipped)))}")

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
        """Header sizes of all images and masks (and mask codes), every problem collected into one InputError."""
        problems: list[str] = []
        sizes: list[tuple[int, int]] = []
        for r in self.records:
            try:
                *size, bands = image_header(r.image)
                size = tuple(size)
            except InputError as exc:
                problems.append(f"{r.image}: {exc}")
                sizes.append((0, 0))
                continue
            band_problem = _band_problem(r.image, bands, self.in_channels)
            if band_problem:
                problems.append(band_problem)
            try:
                mask_size = image_size(r.mask)
            except InputError as exc:
                problems.append(f"{r.mask}: {exc}")
                sizes.append((0, 0))
                continue
            sizes.append(size)
            if size != mask_size:
                problems.append(f"{r.image}: image is {size[1]}x{size[0]} px but its mask {r.mask.name} is {mask_size[1]}x{mask_size[0]}")
                continue
            if self.check_codes:
                try:
                    _, unknown = map_mask(read_mask_codes(r.mask, _colour_only(r.mapping)), r.mapping, r.mask.name)
                except InputError as exc:
                    problems.append(f"{r.mask}: {exc}")
                    continue
                if unknown:
                    problems.append(f"{r.mask}: mask codes {_format_codes(unknown)} are not in the class map ({r.label_map})")
        _raise_problems("in the labelled samples", problems)
        return sizes

    def _load(self, index: int) -> tuple[torch.Tensor, ...]:
        r = self.records[index]
        image, valid = _read(r.image, lambda p: read_image(p, self.in_channels))
        mask, _ = _read(r.mask, lambda p: map_mask(read_mask_codes(p, _colour_only(r.mapping)), r.mapping, p.name))
        if mask.shape != image.shape[1:]:
            raise _FileFailed(r.mask, InputError(f"mask {mask.shape} does not match image {image.shape[1:]}"))
        if not valid.all():
            mask = np.where(valid, mask, IGNORE_INDEX).astype(np.uint8)
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
        problems: list[str] = []
        sizes: list[tuple[int, int]] = []
        for p in self.records:
            try:
                headers = [image_header(f) for f in (p.before, p.after, p.label)]
            except InputError as exc:
                problems.append(f"{p.source}: {exc}")
                sizes.append((0, 0))
                continue
            got = [h[:2] for h in headers]
            sizes.append(got[0])
            for f, h in zip((p.before, p.after), headers):
                band_problem = _band_problem(f, h[2], self.in_channels)
                if band_problem:
                    problems.append(band_problem)
            if len(set(got)) != 1:
                problems.append(
                    f"{p.source}: sizes differ: {p.before.name} {got[0][1]}x{got[0][0]}, {p.after.name} {got[1][1]}x{got[1][0]}, "
                    f"{p.label.name} {got[2][1]}x{got[2][0]}"
                )
                continue
            if self.check_codes:
                try:
                    label_problem = _label_problem(read_mask_codes(p.label))
                except InputError as exc:
                    problems.append(f"{p.label}: {exc}")
                    continue
                if label_problem:
                    problems.append(f"{p.label}: {label_problem}")
        _raise_problems("in the change pairs", problems)
        return sizes

    def _load(self, index: int) -> tuple[torch.Tensor, ...]:
        p = self.records[index]
        before, valid_b = _read(p.before, lambda f: read_image(f, self.in_channels))
        after, valid_a = _read(p.after, lambda f: read_image(f, self.in_channels))
        change = _read(p.label, lambda f: change_from_label(read_mask_codes(f), f.name))
        if before.shape != after.shape or change.shape != before.shape[1:]:
            raise _FileFailed(p.label, InputError(f"sizes differ: {before.shape}, {after.shape}, {change.shape}"))
        valid = valid_b & valid_a
        if not valid.all():
            change = np.where(valid, change, IGNORE_INDEX).astype(np.uint8)
        return torch.from_numpy(before), torch.from_numpy(after), torch.from_numpy(change)

    def _sample(self, index: int, loaded: tuple[torch.Tensor, ...]) -> dict:
        return {"before": loaded[0], "after": loaded[1], "change": loaded[2], "source": self.records[index].source}


class LevirCDDataset(ChangePairDataset):
    """LEVIR-CD split `split` ('train', 'val' or 'test') of `ROOT/{split}/{A,B,label}/*.png`."""

    def __init__(self, root: str | Path, split: str = "train", **kwargs: Any) -> None:
        super().__init__(levir_pairs(root, (split,)), **kwargs)


# --- statistics --------------------------------------------------------------------------------
def class_pixel_counts(records: Iterable[Record], by: str = "group") -> dict[str, np.ndarray]:
    """Pixels per schema class (NUM_CLASSES entries, then ignore) per group (or 'source', or 'all').

    For reporting class balance, choosing hold-outs and loss weights; decodes every mask.
    """
    counts: dict[str, np.ndarray] = {}
    for r in records:
        mask, _ = map_mask(read_mask_codes(r.mask, _colour_only(r.mapping)), r.mapping, r.mask.name)
        key = "all" if by == "all" else getattr(r, by)
        c = np.bincount(mask.ravel(), minlength=256)
        counts[key] = counts.get(key, np.zeros(NUM_CLASSES + 1, np.int64)) + np.append(c[:NUM_CLASSES], c[IGNORE_INDEX])
    return counts


def class_shares(counts: np.ndarray) -> np.ndarray:
    """Fractions of labelled pixels per class (ignore excluded) from a `class_pixel_counts` entry."""
    labelled = counts[:NUM_CLASSES].astype(np.float64)
    total = labelled.sum()
    return labelled / total if total else labelled


__all__ = [
    "Record", "PairRecord", "SegmentationDataset", "ChangePairDataset", "LevirCDDataset",
    "loveda_records", "dubai_records", "dubai_tile", "folder_records", "read_class_map", "levir_pairs", "sztaki_pairs",
    "groups_of", "split_by_group", "holdout_groups", "shared_data_split", "DUBAI_VAL_GROUPS", "LOVEDA_VAL_GROUPS",
    "image_header", "image_size", "read_image", "read_mask_codes", "map_mask", "change_from_label", "class_pixel_counts", "class_shares",
]
