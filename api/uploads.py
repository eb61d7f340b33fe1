"""Uploaded files onto disk under names chosen here (never the uploader's), with their format sniffed.

The uploader's file name is kept for one purpose only: messages (`display_name`), so that an error
says "the before image (2019.tif)" and not the name the file has on this server.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from fastapi import UploadFile

from landsentry.models.vocabulary.errors import InputError
from landsentry.models.io.formats import sniff_format

from landsentry.api.inference import FORMAT_SUFFIX


def present(upload: UploadFile | None) -> bool:
    """An optional file field counts when it has a name or content (browsers send empty parts for blank inputs)."""
    return upload is not None and (bool(upload.filename) or (upload.size or 0) > 0)


def display_name(upload: UploadFile, fallback: str) -> str:
    """The uploaded file's own name for messages (no folders, no control characters, at most 80
    characters), or `fallback` (the form field) when it has none."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:80] or fallback


def save_image(upload: UploadFile, folder: Path, role: str, label: str | None = None) -> Path:
    """`folder/ROLE.{png,jpg,tif}` by magic bytes; 415 for anything else, 422 for an empty file.
    `label` (the uploaded name, or the form field) names the file in error messages."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "upload"
    with raw.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    try:
        fmt = sniff_format(raw, label or role)
    except InputError:
        raw.unlink(missing_ok=True)
        raise
    final = raw.with_name(role + FORMAT_SUFFIX[fmt])
    raw.rename(final)
    return final


def save_file(upload: UploadFile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    if path.stat().st_size == 0:
        raise InputError(f"the uploaded {path.stem} file is empty")
    return path
