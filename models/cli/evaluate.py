"""`landsentry evaluate --checkpoint FILE --data LAYOUT:PATH`: per-class IoU of a checkpoint on whole images.

Argument parsing and printing only: records and whole images come from the data layer, the scoring
from `landsentry.models.evaluation.segmentation` (the same `score` training validates with).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from landsentry.models.cli.options import check_common_options
from landsentry.models.data.registry import parse_spec, records_from_spec
from landsentry.models.data.samples import check_records, load_sample
from landsentry.models.data.splits import split_by_group
from landsentry.models.evaluation.segmentation import held_out_metrics, score_by_source, source_of
from landsentry.models.inference.backends import BACKENDS
from landsentry.models.inference.runner import Predictor
from landsentry.models.inference.tiling import default_overlap
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry evaluate", description=__doc__)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint to score (default: the bundled model)")
    p.add_argument("--data", nargs="+", required=True, help="dataset specs: dubai:PATH, loveda:PATH, roads_cil:PATH, deepglobe_roads:PATH or folder:PATH")
    p.add_argument("--groups", nargs="+", default=None, help="score only these source groups (e.g. dubai/t8)")
    p.add_argument("--split", choices=("test", "val"), default=None,
                   help="score only each layout's fixed test (or val) groups (models/data/layouts.py): what a model never trained on")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=None, help="window overlap in pixels (default: tile / 16, as in training and predict)")
    p.add_argument("--backend", default="eager", help=f"inference backend: {', '.join(BACKENDS)} (default eager, as training scores)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each window with its mirror images (4x the model time)")
    p.add_argument("--working-gsd", type=float, default=None,
                   help="resample each image from its layout's ground resolution to this many metres per pixel "
                        "(default: the checkpoint's working resolution, if it records one; 0: never resample)")
    p.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON here")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.overlap is None:
        args.overlap = default_overlap(args.tile)
    check_common_options(args)
    checkpoint = load_checkpoint(args.checkpoint)
    records, gsd_of = [], {}
    for spec in args.data:
        found = records_from_spec(spec)
        records += found
        gsd_of.update({r.source: parse_spec(spec)[0].gsd for r in found})  # each image's ground resolution, by its layout
    if args.split:
        groups = {g for spec in args.data for g in parse_spec(spec)[0].splits.get(args.split, ())}
        records = [r for r in records if r.group in groups]
        if not records:
            raise InputError(f"the layouts of {' '.join(args.data)} define no {args.split} groups")
    if args.groups:
        _, records = split_by_group(records, args.groups)
        if not records:
            raise InputError(f"no images in groups {args.groups}")
    check_records(records, checkpoint.in_channels)
    images = [load_sample(r, checkpoint.in_channels) for r in records]
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap, backend=args.backend, tta=args.tta,
                          working_gsd=args.working_gsd)
    sources = [source_of(r.source) for r in records]
    zooms = [predictor.zoom_for(gsd_of[r.source]) for r in records]
    matrices = score_by_source(predictor, images, sources, zooms=zooms)
    print(f"{len(images)} whole images ({predictor.backend}, {args.tile} px windows, {args.overlap} px overlap): "
          f"{', '.join(r.source for r in records)}")
    if predictor.working_gsd:
        print(f"working resolution {predictor.working_gsd:g} m: " + ", ".join(
            sorted({f"{source_of(r.source)} x{z:g}" for r, z in zip(records, zooms)})))
    metrics = held_out_metrics(matrices)
    for name, matrix in matrices.items():
        if len(matrices) > 1:
            print(f"--- {name} ({sources.count(name)} images)")
        print(matrix.report())
    if len(matrices) > 1:
        print("mean over sources of their mIoU: " + f"{metrics['miou']:.3f} ("
              + ", ".join(f"{s} {m['miou']:.3f}" for s, m in metrics["sources"].items()) + ")")
    if args.json:
        single = next(iter(matrices.values())).as_dict() if len(matrices) == 1 else {}
        args.json.write_text(json.dumps({"images": [r.source for r in records], **single, **metrics}, indent=1))
    return 0
