"""`landsentry predict IMAGE -o OUTDIR`: interpret one image with the bundled (or a given) checkpoint.

With `--before BEFORE`, IMAGE is the after image of a pair: both dates are aligned and compared into
change flags (`models.analysis.two_dates`); `--permits PARCELS.geojson` adds the outside-permits rule
(for one image too: its buildings and earthworks outside every parcel are flagged).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from landsentry.models.analysis.interpret import interpret, open_inputs
from landsentry.models.cli.interpretation import (
    add_flag_options, add_model_options, change_params, change_runner, flag_rules, parse_bands,
)
from landsentry.models.cli.options import check_common_options
from landsentry.models.inference.runner import Predictor
from landsentry.models.nn.checkpoint import load_checkpoint

PROGRESS_MIN_WINDOWS = 16  # smaller inputs finish before a bar would help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry predict", description=__doc__)
    p.add_argument("image", type=Path, help="PNG, JPEG or GeoTIFF (1, 3 or 4 bands; uint8 or uint16)")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the outputs (created)")
    p.add_argument("--gsd", type=float, default=None, help="ground sample distance in metres per pixel, for PNG/JPEG (GeoTIFFs carry it)")
    add_model_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    pair = p.add_argument_group("two dates and flags")
    pair.add_argument("--before", type=Path, default=None, help="the before image: IMAGE is then the after image and change is flagged")
    pair.add_argument("--permits", type=Path, default=None, help="GeoJSON of permitted parcels: buildings/earthworks outside them are suspected illegal")
    add_flag_options(pair)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_common_options(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rules, params = flag_rules(args), change_params(args)
    checkpoint = load_checkpoint(args.checkpoint)
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                          backend=args.backend, precision=args.precision, threads=args.threads, tta=args.tta,
                          working_gsd=args.working_gsd)
    runner = change_runner(args, params) if args.before is not None else None
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet or total < PROGRESS_MIN_WINDOWS:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="window", desc=args.image.name)
        bar.update(done - bar.n)

    try:
        with open_inputs(args.image, args.before, args.permits, channels=checkpoint.in_channels,
                         bands=parse_bands(args.bands), gsd=args.gsd) as inputs:
            result = interpret(inputs, args.outdir, predictor, runner, rules=rules, params=params, wgs84=args.wgs84, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    summary = result.summary
    print(json.dumps(summary["kinds"], indent=1))
    if args.before is not None:
        print(f"{summary['flags']} flag(s), {summary['suspected_illegal']} suspected illegal ({summary['method']})")
    width = max(len(name) for name in result.files)
    for name, path in result.files.items():
        print(f"{name:>{width}}: {path}")
    return 0
