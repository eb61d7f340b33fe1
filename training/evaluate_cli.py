"""`landsentry evaluate --checkpoint FILE --data LAYOUT:PATH`: per-class IoU of a checkpoint on whole images."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint
from models.errors import InputError
from models.predictor import resolve_device
from training.data_setup import records_from_spec
from training.datasets import SegmentationDataset, split_by_group
from training.train import evaluate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry evaluate", description=__doc__)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint to score (default: the bundled model)")
    p.add_argument("--data", nargs="+", required=True, help="dataset specs: dubai:PATH, loveda:PATH or folder:PATH")
    p.add_argument("--groups", nargs="+", default=None, help="score only these source groups (e.g. dubai/t8)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON here")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint)
    records = [r for spec in args.data for r in records_from_spec(spec)]
    if args.groups:
        _, records = split_by_group(records, args.groups)
        if not records:
            raise InputError(f"no images in groups {args.groups}")
    dataset = SegmentationDataset(records, None, None, checkpoint.in_channels, cache_mb=0)
    images = [(s["image"], s["mask"]) for s in (dataset[i] for i in range(len(dataset)))]
    device = resolve_device(args.device)
    matrix = evaluate(checkpoint.build_model().to(device), checkpoint, images, device, args.tile)
    print(f"{len(images)} whole images: {', '.join(r.source for r in records)}")
    print(matrix.report())
    if args.json:
        args.json.write_text(json.dumps({"images": [r.source for r in records], **matrix.as_dict()}, indent=1))
    return 0
