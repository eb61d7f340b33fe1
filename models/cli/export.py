"""`landsentry export --onnx -o FILE`: a checkpoint as an ONNX graph for other runtimes.

The graph is `models.inference.backends.InferenceHead`: it takes N x C x H x W float32 pixels in 0..255
(H and W multiples of 32, any batch) and returns N x K x H x W class logits (softmax over axis 1
gives the probabilities), with the checkpoint's normalisation inside. `--int8` writes the statically quantised graph the
`onnx-int8` backend runs, calibrated on `--calibrate` images (default: the bundled sample tile).
The export is checked against eager PyTorch on a real window before the command reports success.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from landsentry.models.inference.backends import CALIBRATION_IMAGE, InferenceHead, OnnxRunner, calibration_windows, export_onnx, onnxruntime_available, quantize_int8
from landsentry.models.vocabulary.atomic import write_atomic
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the only format so far)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--checkpoint", type=Path, default=None, help="landsentry checkpoint (default: the bundled model)")
    p.add_argument("--int8", action="store_true", help="int8 weights and activations (static quantisation)")
    p.add_argument("--calibrate", type=Path, nargs="+", default=None, help=f"images to calibrate --int8 on (default: {CALIBRATION_IMAGE.name})")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.calibrate and not args.int8:
        raise InputError("--calibrate only applies with --int8")
    if args.output.is_dir():
        raise InputError(f"{args.output} is a folder; give the .onnx file to write")
    checkpoint = load_checkpoint(args.checkpoint)
    head = InferenceHead(checkpoint.build_model(), checkpoint.mean, checkpoint.std).eval()
    windows = calibration_windows(checkpoint.in_channels, args.calibrate)
    if args.int8:
        if not onnxruntime_available():
            raise InputError("--int8 needs onnxruntime (pip install 'landsentry[bench]')")
        data = quantize_int8(head, checkpoint.in_channels, windows)
        write_atomic(args.output, data)
    else:
        data = export_onnx(head, checkpoint.in_channels, args.output)
    report = {"file": str(args.output), "bytes": len(data), "int8": args.int8, "checkpoint": str(checkpoint.path),
              "input": f"N x {checkpoint.in_channels} x H x W float32, 0..255, H and W multiples of 32",
              "output": f"logits, N x {checkpoint.num_classes} x H x W"}
    if onnxruntime_available():  # check the file against eager PyTorch on a real window
        x = torch.from_numpy(windows[0])
        with torch.inference_mode():
            ref = head(x).numpy()
        got = OnnxRunner(args.output, torch.device("cpu"))(x).numpy()
        report["check_max_abs_logit_diff"] = round(float(np.abs(ref - got).max()), 6)
        report["check_class_agreement"] = round(float((ref.argmax(1) == got.argmax(1)).mean()), 5)
    print(json.dumps(report, indent=1))
    return 0
