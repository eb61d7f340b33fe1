"""Records checked up front and read whole: what training datasets and evaluation both start from.

`check_records` / `check_pairs` read only headers (and, with `codes`, decode masks) and raise one
`InputError` listing every bad file before any work starts. `load_sample` / `load_pair` then decode
a record's files; a failure names the file (`FileFailed.path`) so a dataset can skip it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from landsentry.models.data.images import band_problem, read_image
from landsentry.models.data.masks import format_codes, label_problem, map_mask, read_change, read_labels, read_mask_codes
from landsentry.models.data.records import PairRecord, Record, raise_problems
from landsentry.models.data.vectors import is_vector, rasterize_polygons
from landsentry.models.io.header import ImageHeader, probe
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.models.vocabulary.errors import InputError


class FileFailed(InputError):
    """A record's file could not be decoded: `path` says which, `error` why."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"{path}: {error}")
        self.path, self.error = path, error


def _read(path: Path, fn: Callable[[Path], Any]) -> Any:
    try:
        return fn(path)
    except (InputError, OSError) as exc:
        raise FileFailed(path, exc) from None


def _probe(path: Path, problems: list[str]) -> ImageHeader | None:
    """The file's header, or None with the reason added to `problems`."""
    try:
        return probe(path)
    except InputError as exc:
        problems.append(f"{path}: {exc}")
        return None


def _decoded_problem(path: Path, why: Callable[[Path], str | None]) -> str | None:
    """'PATH: why(PATH)', or 'PATH: why it cannot be decoded'; None when `why` finds nothing."""
    try:
        problem = why(path)
    except InputError as exc:
        return f"{path}: {exc}"
    return f"{path}: {problem}" if problem else None


def record_labels(record: Record) -> tuple[np.ndarray, list]:
    """A record's labels as schema ids (and unknown codes): a mask file, or vector footprints rasterised on its image's grid."""
    if is_vector(record.mask):
        return map_mask(rasterize_polygons(record.mask, record.image), record.mapping, record.mask.name)
    return read_labels(record.mask, record.mapping)


def _unknown_codes(record: Record) -> str | None:
    _, unknown = record_labels(record)
    return f"mask codes {format_codes(unknown)} are not in the class map ({record.label_map})" if unknown else None


def check_records(records: Sequence[Record], channels: int = 3, codes: bool = True) -> list[tuple[int, int]]:
    """(height, width) of every image from its header, after checking bands, mask sizes and (with `codes`) mask codes.

    Every problem is collected into one InputError; a record whose header cannot be read counts as (0, 0).
    """
    problems: list[str] = []
    sizes: list[tuple[int, int]] = []
    for r in records:
        header = _probe(r.image, problems)
        if header is not None and (bands := band_problem(r.image, header.bands, channels)):
            problems.append(bands)
        if header is not None and is_vector(r.mask):  # footprints land on the image's own grid
            sizes.append((header.height, header.width))
            if codes and (problem := _decoded_problem(r.mask, lambda _: _unknown_codes(r))):
                problems.append(problem)
            continue
        mask_header = _probe(r.mask, problems) if header is not None else None
        if header is None or mask_header is None:
            sizes.append((0, 0))
            continue
        size, mask_size = (header.height, header.width), (mask_header.height, mask_header.width)
        sizes.append(size)
        if size != mask_size:
            problems.append(f"{r.image}: image is {size[1]}x{size[0]} px but its mask {r.mask.name} is {mask_size[1]}x{mask_size[0]}")
            continue
        if codes and (problem := _decoded_problem(r.mask, lambda _: _unknown_codes(r))):
            problems.append(problem)
    raise_problems("in the labelled samples", problems)
    return sizes


def check_pairs(pairs: Sequence[PairRecord], channels: int = 3, codes: bool = True) -> list[tuple[int, int]]:
    """(height, width) of every pair, after checking that its three files agree in size and its label is 0/255 (or 0/1)."""
    problems: list[str] = []
    sizes: list[tuple[int, int]] = []
    for p in pairs:
        try:
            headers = [probe(f) for f in (p.before, p.after, p.label)]
        except InputError as exc:
            problems.append(f"{p.source}: {exc}")
            sizes.append((0, 0))
            continue
        got = [(h.height, h.width) for h in headers]
        sizes.append(got[0])
        for f, h in zip((p.before, p.after), headers):
            bands = band_problem(f, h.bands, channels)
            if bands:
                problems.append(bands)
        if len(set(got)) != 1:
            problems.append(
                f"{p.source}: sizes differ: {p.before.name} {got[0][1]}x{got[0][0]}, {p.after.name} {got[1][1]}x{got[1][0]}, "
                f"{p.label.name} {got[2][1]}x{got[2][0]}"
            )
            continue
        if codes and (problem := _decoded_problem(p.label, lambda f: label_problem(read_mask_codes(f)))):
            problems.append(problem)
    raise_problems("in the change pairs", problems)
    return sizes


def load_sample(record: Record, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 C x H x W image, uint8 H x W schema ids) of a whole labelled image; pixels the image marks invalid are ignored."""
    image, valid = _read(record.image, lambda p: read_image(p, channels))
    mask, _ = _read(record.mask, lambda _: record_labels(record))
    if mask.shape != image.shape[1:]:
        raise FileFailed(record.mask, InputError(f"mask {mask.shape} does not match image {image.shape[1:]}"))
    if not valid.all():
        mask = np.where(valid, mask, IGNORE_INDEX).astype(np.uint8)
    return image, mask


def load_pair(pair: PairRecord, channels: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(before, after: uint8 C x H x W, change: uint8 H x W, 1 changed) of a whole pair; pixels invalid in either date are ignored."""
    before, valid_b = _read(pair.before, lambda f: read_image(f, channels))
    after, valid_a = _read(pair.after, lambda f: read_image(f, channels))
    change = _read(pair.label, read_change)
    if before.shape != after.shape or change.shape != before.shape[1:]:
        raise FileFailed(pair.label, InputError(f"sizes differ: {before.shape}, {after.shape}, {change.shape}"))
    valid = valid_b & valid_a
    if not valid.all():
        change = np.where(valid, change, IGNORE_INDEX).astype(np.uint8)
    return before, after, change
