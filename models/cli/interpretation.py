"""The interpretation options `predict` and `batch` share, and how they become rules, parameters and models.

One definition serves both commands, so a scene in a batch is interpreted exactly as `predict`
would interpret it with the same options, and each bad value gets the same one-line message.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from landsentry.models.analysis.change import ChangeParams
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.inference.backends import BACKENDS
from landsentry.models.inference.runner import ChangeRunner
from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT, load_change_model
from landsentry.models.vocabulary.errors import InputError
from landsentry.models.vocabulary.kinds import DEFAULT_MIN_AREA_M2, KINDS


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--checkpoint, --bands, --min-area, --wgs84 and the window runner's options."""
    p.add_argument("--checkpoint", type=Path, default=None, help="landsentry checkpoint (default: the bundled model)")
    p.add_argument("--bands", type=str, default=None, help="1-based band numbers to use, e.g. 3,2,1 (default: by band count)")
    p.add_argument("--min-area", type=float, default=None,
                   help="smallest region kept, m² (default: " + ", ".join(f"{k.name} {k.min_area_m2:g}" for k in KINDS) + ")")
    p.add_argument("--wgs84", action="store_true", help="also write regions.wgs84.geojson in EPSG:4326")
    p.add_argument("--tile", type=int, default=512, help="window size in pixels (multiple of 32)")
    p.add_argument("--overlap", type=int, default=None, help="overlap between windows in pixels (default: tile / 16, 32 px)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per model call (default 1 on the CPU, 8 on CUDA)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--backend", default="auto", help=f"inference backend: {', '.join(BACKENDS)} (default auto: the fastest installed)")
    p.add_argument("--precision", default="auto", help="auto (float32 on the CPU, bfloat16/float16 on CUDA), float32, float16, bfloat16")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: all cores)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each window with its mirror images (4x the model time)")
    p.add_argument("--working-gsd", type=float, default=None,
                   help="metres per pixel the model sees: inputs of known ground size are resampled to it and the outputs "
                        "back to the input's grid (default: the checkpoint's working resolution, if it records one; 0: never)")


def add_flag_options(group: argparse._ArgumentGroup) -> None:
    """The change model and the flag rules' thresholds."""
    group.add_argument("--change-checkpoint", type=Path, default=None, help="learned change model (default: the bundled one when present)")
    group.add_argument("--no-change-model", action="store_true", help="class comparison only, without the learned change model")
    for kind in KINDS:
        group.add_argument(f"--min-area-{kind.name}", type=float, default=None,
                           help=f"smallest {kind.name} flag kept, m² (default {kind.min_area_m2:g}; overrides --min-area)")
    group.add_argument("--tolerance-px", type=int, default=None, help="misregistration between the dates tolerated, pixels (default 3)")
    group.add_argument("--min-after-prob", type=float, default=None, help="after-class probability needed for a new region (default 0.4)")
    group.add_argument("--max-before-prob", type=float, default=None, help="before probability of that class must stay below this (default 0.3)")
    group.add_argument("--change-threshold", type=float, default=None, help="learned change probability an unsure class change needs (default 0.05)")
    group.add_argument("--protected-share", type=float, default=None, help="share of a flag on vegetation/water before that makes it suspect (default 0.5)")
    group.add_argument("--outside-permits-share", type=float, default=None, help="share of a flag outside all parcels that makes it suspect (default 0.5)")


def parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise InputError(f"--bands takes comma-separated band numbers like 3,2,1, not {text!r}") from None


def _check_share(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise InputError(f"--{name.replace('_', '-')} must be between 0 and 1, not {value}")


def flag_rules(args: argparse.Namespace) -> FlagRules:
    """FlagRules from --min-area(-KIND), --protected-share, --outside-permits-share."""
    areas = dict(DEFAULT_MIN_AREA_M2)
    if args.min_area is not None:
        areas = {kind: args.min_area for kind in areas}
    for kind in areas:
        value = getattr(args, f"min_area_{kind}", None)
        if value is not None:
            areas[kind] = value
    if any(v < 0 for v in areas.values()):
        raise InputError("minimum areas must be 0 or more m²")
    _check_share("protected_share", args.protected_share)
    _check_share("outside_permits_share", args.outside_permits_share)
    kwargs: dict = {"min_area_m2": areas}
    if args.protected_share is not None:
        kwargs["protected_share"] = args.protected_share
    if args.outside_permits_share is not None:
        kwargs["outside_permits_share"] = args.outside_permits_share
    return FlagRules(**kwargs)


def change_params(args: argparse.Namespace) -> ChangeParams:
    kwargs = {}
    for name in ("tolerance_px", "min_after_prob", "max_before_prob", "change_threshold"):
        value = getattr(args, name)
        if value is not None:
            if name != "tolerance_px":
                _check_share(name, value)
            elif not 0 <= value <= 64:
                raise InputError("--tolerance-px must be between 0 and 64")
            kwargs[name] = value
    return ChangeParams(use_change_model=not args.no_change_model, **kwargs)


def change_checkpoint_path(args: argparse.Namespace, params: ChangeParams) -> Path | None:
    """The learned change model's file (given, or the bundled one when present), or None when it is switched off."""
    if not params.use_change_model or (args.change_checkpoint is None and not BUNDLED_CHANGE_CHECKPOINT.is_file()):
        return None
    return args.change_checkpoint if args.change_checkpoint is not None else BUNDLED_CHANGE_CHECKPOINT


def change_runner(args: argparse.Namespace, params: ChangeParams) -> ChangeRunner | None:
    """The learned change model, loaded, unless it is switched off."""
    path = change_checkpoint_path(args, params)
    if path is None:
        return None
    model, ckpt = load_change_model(path)
    return ChangeRunner(model, ckpt, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size)
