"""`landsentry bench`: measure the whole interpretation path on this machine, against a baseline.

The measured run is the real one: `models.analysis.interpret.interpret` (two dates with `--pair`)
on a GeoTIFF, reading, preprocessing, running the model, stitching, writing the rasters,
polygonising and drawing the overlay. Stage times come from the path itself: it reports each stage
to a timer (`models.bench.measure.Clock`), so nothing is wrapped or patched. Without an IMAGE, the
scene is a mosaic of a real image (mirrored, so no seams) grown to `--megapixels` and written window
by window, so even a 400-megapixel scene never sits in memory.

In the same run: a baseline of what one would otherwise write (a per-tile eager PyTorch loop
over a segmentation_models_pytorch UNet-ResNet18, no overlap, no blending) on the first
`--baseline-tiles` tiles, and a model-only check: this machine's float32 matmul rate and the
model's share of it (FLOPs from torch.utils.flop_counter).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from landsentry.models.bench.baseline import model_only, run_baseline
from landsentry.models.bench.measure import peak_rss_mib, reset_peak_rss
from landsentry.models.bench.scenes import DEFAULT_MEGAPIXELS, SAMPLE_IMAGE, describe_scene, mosaic_side, scene_for
from landsentry.models.bench.whole import run_whole
from landsentry.models.cli.options import check_common_options
from landsentry.models.inference.backends import BACKENDS, onnxruntime_available, resolve_backend
from landsentry.models.inference.device import resolve_device
from landsentry.models.inference.runner import Predictor
from landsentry.models.inference.tiling import default_overlap
from landsentry.models.io.formats import MAX_PIXELS
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, nargs="?", default=None, help="GeoTIFF (or PNG/JPEG) to measure on; default: a generated mosaic")
    p.add_argument("--megapixels", type=float, default=None, help=f"size of the generated mosaic (default {DEFAULT_MEGAPIXELS:g})")
    p.add_argument("--source", type=Path, default=SAMPLE_IMAGE, help="real image the mosaic is made of (default: the bundled sample tile)")
    p.add_argument("--source-before", type=Path, default=None, help="with --pair: the before image's source (default: --source, i.e. two identical dates, nothing flagged)")
    p.add_argument("--gsd", type=float, default=0.5, help="metres per pixel of the mosaic, and for km² of a file without a CRS (default 0.5)")
    p.add_argument("--pair", action="store_true", help="measure the two-date path (interpret_pair) instead")
    p.add_argument("--checkpoint", type=Path, default=None, help="landsentry checkpoint (default: the bundled model)")
    p.add_argument("--backend", default="auto", help=f"inference backend: {', '.join(BACKENDS)} (default auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", help="auto (float32 on the CPU, bfloat16/float16 on CUDA), float32, float16, bfloat16")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime (default: all cores)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each window with its mirror images (4x the model time)")
    p.add_argument("--working-gsd", type=float, default=None,
                   help="metres per pixel the model sees, as in predict (default: the checkpoint's; 0: never resample)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per model call (default 1 on CPU, 8 on CUDA)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=None, help="window overlap in pixels (default: tile / 16)")
    p.add_argument("--baseline-tiles", type=int, default=32, help="tiles the baseline runs on (0: the whole scene)")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    p.add_argument("--model-only", action="store_true", help="only the model-only check (matmul rate, model share)")
    p.add_argument("--workdir", type=Path, default=None, help="keep mosaics and outputs here (reused between runs); default: a temporary folder")
    p.add_argument("--json", type=Path, default=Path("landsentry-bench.json"), help="where to write the figures (default ./landsentry-bench.json)")
    return p


def check_args(args: argparse.Namespace) -> torch.device:
    """Every bad argument as one clear InputError before anything heavy starts."""
    if args.image is not None and args.megapixels is not None:
        raise InputError("give either IMAGE or --megapixels (the mosaic size), not both")
    if args.megapixels is None:
        args.megapixels = DEFAULT_MEGAPIXELS
    if not math.isfinite(args.megapixels) or args.megapixels <= 0:
        raise InputError(f"--megapixels must be a positive number, not {args.megapixels:g}")
    if args.megapixels * 1e6 > MAX_PIXELS:
        raise InputError(f"--megapixels {args.megapixels:g} is over the pixel limit of {MAX_PIXELS / 1e6:g} megapixels (LANDSENTRY_MAX_PIXELS)")
    if mosaic_side(args.megapixels) < args.tile and args.image is None:
        raise InputError(f"--megapixels {args.megapixels:g} makes a scene smaller than one --tile {args.tile}; use at least {args.tile**2 / 1e6:.2f}")
    if args.overlap is None:
        args.overlap = default_overlap(args.tile)
    check_common_options(args)
    if args.baseline_tiles < 0:
        raise InputError("--baseline-tiles must be 0 (whole scene) or more")
    for name in ("image", "source", "source_before", "checkpoint"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise InputError(f"{name.replace('_', '-')}: file not found: {path}")
    device = resolve_device(args.device)
    resolve_backend(args.backend, device)  # unknown or not installed: InputError
    if args.batch_size is None:
        args.batch_size = 8 if device.type == "cuda" else 1  # on CPU, bigger batches only add memory traffic
    return device


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    device = check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__, "onnxruntime": _ort_version()},
        "settings": {"backend": args.backend, "precision": args.precision, "threads": torch.get_num_threads(),
                     "batch_size": args.batch_size, "tile": args.tile, "overlap": args.overlap, "tta": args.tta, "working_gsd": args.working_gsd,
                     "gdal_cachemax": os.environ.get("GDAL_CACHEMAX")},  # GDAL's block cache counts in the RSS
    }
    work_ctx = contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="landsentry-bench-")
    with work_ctx as work:
        workdir = Path(work)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.model_only:
            predictor = Predictor(load_checkpoint(args.checkpoint), device=args.device, tile=args.tile, overlap=args.overlap,
                                  batch_size=args.batch_size, backend=args.backend, precision=args.precision, threads=args.threads,
                                  tta=args.tta)
            report["settings"]["backend"] = predictor.backend
            report["model_only"] = model_only(predictor)
        else:
            report.update(_measure(args, workdir))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(format_report(report))
    print(f"\nfigures written to {args.json}")
    return 0


def _measure(args: argparse.Namespace, workdir: Path) -> dict:
    reset_peak_rss()
    path, made = scene_for(args, workdir, args.source, "after" if args.pair else "scene")
    before = None
    if args.pair:
        before, made_b = (args.image, 0.0) if args.image is not None else scene_for(args, workdir, args.source_before or args.source, "before")
        made += made_b
    generate_peak = peak_rss_mib()
    scene = describe_scene(path, before, args.gsd, made, args.tile, args.overlap, 2 if args.pair else 1)
    baseline = None
    if not args.no_baseline:  # first, so the measured run's memory high-water mark is its own
        ckpt = load_checkpoint(args.checkpoint)
        baseline = run_baseline(scene.path, args.tile, args.baseline_tiles, ckpt.in_channels, ckpt.num_classes, ckpt.mean, ckpt.std, workdir)
    outdir = workdir / "out"
    shutil.rmtree(outdir, ignore_errors=True)
    whole, predictor = run_whole(args, scene, outdir)
    result: dict[str, Any] = {
        "scene": {"path": str(scene.path), "before": str(scene.before) if scene.before else None, "width": scene.width,
                  "height": scene.height, "megapixels": round(scene.width * scene.height / 1e6, 3), "gsd_m": scene.gsd,
                  "km2": round(scene.width * scene.height * scene.gsd**2 / 1e6, 6), "generated_s": round(scene.generated_s, 2),
                  "generate_peak_rss_mib": round(generate_peak, 1), "pair": args.pair},
        "whole": whole,
    }
    result["settings_resolved"] = {"backend": predictor.backend, "precision": predictor.precision}
    result["model_only"] = model_only(predictor)
    if baseline is not None:
        result["baseline"] = baseline
        if "mpx_per_s" in baseline:
            result["speedup_vs_baseline"] = round(whole["mpx_per_s"] / baseline["mpx_per_s"], 2)
            result["speedup_raster_path_vs_baseline"] = round(whole["raster_path_mpx_per_s"] / baseline["mpx_per_s"], 2)
    return result


def _ort_version() -> str | None:
    if not onnxruntime_available():
        return None
    import onnxruntime

    return onnxruntime.__version__


def format_report(report: dict) -> str:
    """The figures as a plain table."""
    s = report["settings"]
    lines = [f"device {report['machine']['device']}  backend {report.get('settings_resolved', s)['backend']}  threads {s['threads']}  "
             f"batch {s['batch_size']}  tile {s['tile']}  overlap {s['overlap']}" + ("  tta" if s.get("tta") else "")]
    if "scene" in report:
        sc, w = report["scene"], report["whole"]
        lines.append(f"scene {sc['width']}x{sc['height']} = {sc['megapixels']:g} Mpx, {sc['km2']:g} km² at {sc['gsd_m']:g} m"
                     + (" (pair)" if sc["pair"] else "") + (f"; generated in {sc['generated_s']:g} s" if sc["generated_s"] else ""))
        lines += ["", f"{'whole path':<28}{w['seconds']:>10.1f} s", f"{'  windows/s':<28}{w['tiles_per_s']:>10.2f}",
                  f"{'  Mpx/s':<28}{w['mpx_per_s']:>10.3f}", f"{'  km²/min':<28}{w['km2_per_min']:>10.2f}",
                  f"{'  peak memory (RSS)':<28}{w['peak_rss_mib']:>10.0f} MiB",
                  f"{'  ... until rasters written':<28}{w['peak_rss_raster_path_mib']:>10.0f} MiB", "", "stage                       seconds   share"]
        for stage, sec in w["stages_s"].items():
            lines.append(f"  {stage:<24}{sec:>10.2f}{sec / max(w['seconds'], 1e-9):>8.0%}")
        base = report.get("baseline")
        if base:
            lines.append("")
            if "skipped" in base:
                lines.append(f"baseline skipped: {base['skipped']}")
            else:
                lines += [f"baseline ({base['model']}, {base['tiles']} tiles)", f"{'  Mpx/s':<28}{base['mpx_per_s']:>10.3f}",
                          f"{'  speed-up, whole path':<28}{report.get('speedup_vs_baseline', 0):>9.2f}x",
                          f"{'  speed-up, raster path':<28}{report.get('speedup_raster_path_vs_baseline', 0):>9.2f}x"
                          "  (read, model, stitch, write: what the baseline does)"]
    mo = report.get("model_only")
    if mo:
        lines += ["", f"model only: {mo['ms_per_tile']:.1f} ms per {mo['tile']}² window, {mo['gflops_per_tile']:.2f} GFLOP each = "
                  f"{mo['model_gflops_per_s']:.0f} GFLOP/s; matmul {mo['matmul_gflops_per_s']:.0f} GFLOP/s; share {mo['share_of_matmul']:.0%}"]
    return "\n".join(lines)
