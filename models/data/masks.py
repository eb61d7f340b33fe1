"""THE mask and label reader: class masks (index or colour-coded), class maps, change labels.

Training, evaluation and the service's annotation uploads all decode masks here, so a mask means
the same thing wherever it is read. Masks are refused as JPEG (lossy compression changes class
codes at every edge); palette PNGs give their indices, equal-channel RGB collapses to one band.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from landsentry.models.data.records import Code, CodeMap, raise_problems
from landsentry.models.io.formats import MAX_DECODED_PIXELS, check_pixels, sniff_format
from landsentry.models.vocabulary.classes import CLASS_ID, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, not_class
from landsentry.models.vocabulary.errors import InputError, TooLargeError

SCHEMA_IDENTITY: dict[Code, int] = {**{i: i for i in range(NUM_CLASSES)}, **{not_class(i): not_class(i) for i in range(NUM_CLASSES)},
                                   IGNORE_INDEX: IGNORE_INDEX}
"""Masks that already hold schema ids (a folder without classes.json, the service's annotations)."""
IGNORE_NAMES = ("ignore", "ignored", "unknown", "unlabeled", "unlabelled", "nodata", "no_data", "void")
"""Names that mean IGNORE_INDEX in a class map or a vector-label mapping (the page calls it "unknown")."""


@dataclass(frozen=True)
class MaskPixels:
    """A decoded mask: its codes and, when the file has one, its alpha band (for callers that treat alpha 0 as unlabelled)."""

    codes: np.ndarray  # uint8 H x W, or H x W x 3 for colour masks
    alpha: np.ndarray | None = None  # uint8 H x W


def decode_mask(path: Path, colours: bool = False) -> MaskPixels:
    """Raw mask codes: uint8 H x W for index masks, uint8 H x W x 3 for colour masks (equal-channel RGB collapses to H x W).

    Palette PNGs give their palette indices (the usual way index masks are stored), or their
    colours when `colours` is set (the class map lists only colours).
    """
    fmt = sniff_format(path)
    if fmt == "JPEG":
        raise InputError(f"{path.name}: masks must be PNG or TIFF (JPEG compression changes class codes at every edge)")
    alpha = None
    try:
        if fmt == "GTiff":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    check_pixels(path, ds.width, ds.height, MAX_DECODED_PIXELS, "LANDSENTRY_MAX_DECODED_PIXELS")
                    raw = ds.read(list(range(1, min(ds.count, 3) + 1)))
            raw = raw[0] if raw.shape[0] < 3 else raw.transpose(1, 2, 0)
        else:
            with Image.open(path) as img:
                check_pixels(path, img.width, img.height, MAX_DECODED_PIXELS, "LANDSENTRY_MAX_DECODED_PIXELS")
                img.load()
                if img.mode in ("LA", "PA", "RGBA"):
                    alpha = np.asarray(img)[..., -1]
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
    except Image.DecompressionBombError:
        raise TooLargeError(f"{path.name} claims more pixels than Pillow will decode (over the limit of {MAX_DECODED_PIXELS:,})") from None
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
    return MaskPixels(raw, alpha)


def read_mask_codes(path: Path, colours: bool = False) -> np.ndarray:
    """The codes of `decode_mask` (alpha dropped): what datasets map onto the schema."""
    return decode_mask(path, colours).codes


def colour_only(mapping: CodeMap | None) -> bool:
    """Whether a class map lists only colours (then palette masks are read as colours, not indices)."""
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


def read_labels(path: Path, mapping: CodeMap | None) -> tuple[np.ndarray, list[Code]]:
    """`map_mask` of a mask file under its class map: (uint8 H x W schema ids, codes the map does not know)."""
    return map_mask(read_mask_codes(path, colour_only(mapping)), mapping, path.name)


def format_codes(codes: Sequence[Code]) -> str:
    """'[3, 7]' or '[#FF0000, ...]', at most 12 shown, for error messages."""
    shown = ["#%02X%02X%02X" % c if isinstance(c, tuple) else str(c) for c in codes[:12]]
    return "[" + ", ".join(shown) + (f", ... {len(codes) - 12} more" if len(codes) > 12 else "") + "]"


# --- class maps (a folder's classes.json) --------------------------------------------------------
def class_id_of_name(value: Any) -> int | None:
    """A schema id for a class name as users write it ("Bare soil", "bare_soil"), an ignore name
    ("unknown", "ignore", ...), "not_NAME" (a partial label) or a schema id; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in SCHEMA_IDENTITY else None
    if not isinstance(value, str):
        return None
    name = re.sub(r"[\s\-/]+", "_", value.strip().lower())
    if name in IGNORE_NAMES:
        return IGNORE_INDEX
    negated = re.fullmatch(r"(?:not_|!)(.+)", name)
    if negated:  # a partial label: "not_road" = some class other than road
        k = CLASS_ID.get(negated.group(1))
        return None if k is None else not_class(k)
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
    (background, building, road, bare_soil, vegetation, water), "ignore", or "not_NAME" for a partial
    label (a road-only source maps its 0 to "not_road": some class other than road, which one unknown).
    {"classes": {...}} also works.
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
        target = class_id_of_name(value)
        if code is None:
            problems.append(f'code "{key}" is not an integer 0-255 or a "#RRGGBB" colour')
        elif target is None:
            problems.append(f'code "{key}": unknown class {value!r} (use one of {", ".join(CLASS_NAMES)}, "ignore" or "not_NAME")')
        else:
            mapping[code] = target
    raise_problems(f"in class map {path}", problems)
    return mapping


# --- change labels -----------------------------------------------------------------------------
def change_from_label(raw: np.ndarray, name: str = "label") -> np.ndarray:
    """uint8 H x W change map: 1 where the label is 255 (LEVIR/SZTAKI), or 1 for 0/1-coded labels; 0 elsewhere."""
    if raw.ndim == 3:
        raise InputError(f"{name}: change labels must be single-band (0 = no change, 255 = change)")
    return (raw == 255 if raw.max(initial=0) > 1 else raw == 1).astype(np.uint8)


def read_change(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 H x W change map (1 changed) of a label file; with `shape`, InputError unless it is that size."""
    change = change_from_label(read_mask_codes(path), path.name)
    if shape is not None and change.shape != tuple(shape):
        raise InputError(f"label {path} is {change.shape[1]}x{change.shape[0]} px but the images are {shape[1]}x{shape[0]}")
    return change


def label_problem(raw: np.ndarray) -> str | None:
    """Why a change label is not 0/255 (or 0/1) single-band, or None."""
    if raw.ndim == 3:
        return "change label is a colour image; expected single-band 0 = no change, 255 = change"
    present = set(np.flatnonzero(np.bincount(raw.ravel(), minlength=256)).tolist())
    if present <= {0, 255} or present <= {0, 1}:
        return None
    return f"change label values {sorted(present)[:12]}; expected 0/255 (or 0/1)"
