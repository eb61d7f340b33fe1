"""Checks of the options several commands share, so each bad value gets the same one-line message."""
from __future__ import annotations

import argparse
import math

from landsentry.models.vocabulary.errors import InputError


def check_common_options(args: argparse.Namespace) -> None:
    """InputError for the first bad one of --gsd, --working-gsd, --tile, --overlap, --batch-size, --threads present in `args`."""
    gsd = getattr(args, "gsd", None)
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise InputError("--gsd must be a positive number of metres per pixel")
    working = getattr(args, "working_gsd", None)
    if working is not None and not (math.isfinite(working) and working >= 0):
        raise InputError("--working-gsd must be a number of metres per pixel, or 0 for never resampling")
    tile = getattr(args, "tile", None)
    if tile is not None and (tile < 64 or tile % 32):
        raise InputError("--tile must be a multiple of 32 and at least 64")
    overlap = getattr(args, "overlap", None)
    if overlap is not None and tile is not None and not 0 <= overlap < tile // 2:
        raise InputError("--overlap must be at least 0 and less than half the tile")
    for name in ("batch_size", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")


def key_values(pairs: list[str], option: str) -> dict[str, str]:
    """`KEY=VALUE` arguments of `option` as a dict of stripped strings; one-line InputError for a pair without '='."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"{option} takes KEY=VALUE, not {pair!r}")
        out[key.strip()] = value.strip()
    return out
