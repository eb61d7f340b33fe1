"""Uploaded files onto disk under names chosen here (never the uploader's), with their format sniffed."""
from __future__ import annotations

import shutil
from pathlib import Path

from fastapi import UploadFile

from landsentry.models.vocabulary.errors import InputError
from landsentry.models.io.formats import sniff_format

from landsentry.api.inference import FORMAT_SUFFIX


def present(upload: UploadFile | None) -> bool:
    """An optional file field counts when it has a name or content (browsers send empty parts for blank inputs)."""
    return upload is not None and (bool(upload.filename) or (upload.size or 0) > 0)


def save_image(upload: UploadFile, folder: Path, role: str, label: str | None = None) -> Path:
    """`folder/ROLE.{png,jpg,tif}` by magic bytes; 415 for anything else, 422 for an empty file.
    `label` (the form field) names the file in error messages."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / (label or role)
    with raw.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    try:
        fmt = sniff_format(raw)
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
