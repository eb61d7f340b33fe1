"""The measured run: the real interpretation path on the scene, its stages reported to a `Clock`."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from landsentry.models.analysis.change import ChangeParams
from landsentry.models.analysis.interpret import interpret, open_inputs
from landsentry.models.bench.measure import Clock, peak_rss_mib, reset_peak_rss, stage_table
from landsentry.models.bench.scenes import Scene
from landsentry.models.inference.runner import ChangeRunner, Predictor
from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT, load_change_model
from landsentry.models.nn.checkpoint import load_checkpoint


def run_whole(args: argparse.Namespace, scene: Scene, outdir: Path) -> tuple[dict, Predictor]:
    """Load the model and interpret the scene (`landsentry predict`'s path); the figures of the measured run."""
    clock = Clock()
    reset_peak_rss()
    start = time.perf_counter()
    checkpoint = load_checkpoint(args.checkpoint)
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                          backend=args.backend, precision=args.precision, threads=args.threads,
                          tta=getattr(args, "tta", False), working_gsd=getattr(args, "working_gsd", None))
    runner = None
    if args.pair and BUNDLED_CHANGE_CHECKPOINT.is_file():
        model, ckpt = load_change_model(None)
        runner = ChangeRunner(model, ckpt, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                              backend=args.backend, threads=args.threads)
    load = time.perf_counter() - start
    start = time.perf_counter()
    with open_inputs(scene.path, scene.before if args.pair else None, channels=checkpoint.in_channels) as inputs:
        result = interpret(inputs, outdir, predictor, runner, params=ChangeParams(use_change_model=runner is not None), timer=clock)
    run = time.perf_counter() - start
    if runner is not None:  # the change model runs its own pass of windows
        scene.windows += scene.windows // 2
    total = load + run
    mpx = scene.width * scene.height / 1e6
    stages = stage_table(clock, run, load)
    # what the baseline loop also does (read, model, write a class raster), without polygons, flags, overlay
    raster_path = sum(stages.get(k, 0.0) for k in ("load_model", "read_preprocess", "model", "change_model", "stitch", "write_rasters"))
    km2 = mpx * 1e6 * scene.gsd**2 / 1e6
    return {
        "seconds": round(total, 3), "run_seconds": round(run, 3),
        "windows": scene.windows, "tiles_per_s": round(scene.windows / run, 3),
        "mpx_per_s": round(mpx / total, 4), "km2_per_min": round(km2 / total * 60, 3),
        "stages_s": stages, "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_rss_raster_path_mib": round(clock.peaks.get("rasters", 0.0), 1),
        "raster_path_s": round(raster_path, 3), "raster_path_mpx_per_s": round(mpx / raster_path, 4),
        "change_model": runner is not None if args.pair else None,
        "resolution": result.summary["resolution"],  # the zoom the model ran at
    }, predictor
