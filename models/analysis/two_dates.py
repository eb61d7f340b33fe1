"""Two images in, change flags out: aligned classes of both dates, a change raster, flags with rules.

Both dates are read on one grid (`models.analysis.inputs`); the segmentation predictor runs on each
strip by strip (and the learned change model when given); the classes are compared
(`models.analysis.change`) as the strips finish; the change regions at or above their minimum
areas become the flags, with the rules applied (`models.analysis.flags`), and change.tif is
published without the smaller ones, so raster and flags agree.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.windows import Window

from landsentry.models.analysis.change import ChangeParams, StripChange
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.analysis.inputs import Inputs
from landsentry.models.analysis.overlays import flag_overlay
from landsentry.models.analysis.pipeline import (
    Interpretation, PipelineRun, class_colormap, class_shares, common_summary, model_resolution, open_raster,
)
from landsentry.models.inference.runner import ChangeRunner, Predictor, ProgressFn, classes_and_confidence
from landsentry.models.inference.timing import NO_TIMER, Timer
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.models.vocabulary.kinds import BY_CODE, CHANGE_KIND_NAMES, CHANGE_NODATA, KINDS, NO_CHANGE

RASTERS = ("before_classes", "before_confidence", "after_classes", "after_confidence", "change_raw", "change_confidence")
CHANGE_COLORMAP = {NO_CHANGE: (0, 0, 0, 0), **{k.change_code: k.change_colour + (255,) for k in KINDS}}


class _Progress:
    """Adds up the windows of several passes (before, after, change model) into one progress count."""

    def __init__(self, progress: ProgressFn | None, passes: int) -> None:
        self.progress, self.passes, self.offsets = progress, passes, {}

    def part(self, index: int) -> ProgressFn | None:
        if self.progress is None:
            return None

        def report(done: int, total: int) -> None:
            self.offsets[index] = done
            self.progress(sum(self.offsets.values()), total * self.passes)

        return report


def write_change_rasters(inputs: Inputs, predictor: Predictor, runner: ChangeRunner | None, params: ChangeParams,
                         work: Path, progress: ProgressFn | None = None, timer: Timer = NO_TIMER,
                         zoom: float = 1.0) -> tuple[dict[str, Path], dict]:
    """Classes and confidences of both dates (windows resampled by `zoom`), and the raw change codes and
    confidence, strip by strip."""
    info = inputs.info
    paths = {n: work / f"{n}.tif" for n in RASTERS}
    nodata = {"before_classes": IGNORE_INDEX, "after_classes": IGNORE_INDEX, "change_raw": CHANGE_NODATA}
    colormaps = {"before_classes": class_colormap(), "after_classes": class_colormap(), "change_raw": CHANGE_COLORMAP}
    counter = _Progress(progress, 3 if runner is not None else 2)
    strips_b = predictor.iter_strips(inputs.before, progress=counter.part(0), timer=timer, zoom=zoom)
    strips_a = predictor.iter_strips(inputs.after, progress=counter.part(1), timer=timer, zoom=zoom)
    strips_c = runner.iter_strips(inputs.before, inputs.after, progress=counter.part(2), timer=timer) if runner is not None else None
    stitch = StripChange(params)
    class_counts = {"before": np.zeros(256, np.int64), "after": np.zeros(256, np.int64)}
    datasets = {}
    try:
        for n in RASTERS:
            datasets[n] = open_raster(paths[n], info, nodata.get(n), colormaps.get(n))
        for sb in strips_b:
            sa = next(strips_a)
            sc = next(strips_c) if strips_c is not None else None
            if sa.row0 != sb.row0 or sa.probs.shape != sb.probs.shape:
                raise RuntimeError("before and after strips are out of step")  # same grid, same tiling: cannot happen
            h = sb.valid.shape[0]
            window = Window(0, sb.row0, info.width, h)
            for date, strip in (("before", sb), ("after", sa)):
                classes, confidence = classes_and_confidence(strip)
                datasets[f"{date}_classes"].write(classes, 1, window=window)
                datasets[f"{date}_confidence"].write(confidence, 1, window=window)
                class_counts[date] += np.bincount(classes.ravel(), minlength=256)
            last = sb.row0 + h >= info.height
            change = sc.probs[0] if sc is not None else None
            for cs in stitch.push(sb.row0, sb.probs, sa.probs, sb.valid & sa.valid, change, last=last):
                win = Window(0, cs.row0, info.width, cs.codes.shape[0])
                datasets["change_raw"].write(cs.codes, 1, window=win)
                datasets["change_confidence"].write(np.rint(cs.confidence * 100).astype(np.uint8), 1, window=win)
    finally:
        for ds in datasets.values():
            ds.close()
    return paths, {"class_counts": class_counts}


def run(inputs: Inputs, outdir: str | Path, predictor: Predictor, change_runner: ChangeRunner | None = None,
        rules: FlagRules = FlagRules(), params: ChangeParams = ChangeParams(), wgs84: bool = False,
        progress: ProgressFn | None = None, timer: Timer = NO_TIMER, previews_max_pixels: int = 0) -> Interpretation:
    """Compare `inputs.before` with `inputs.after` into `outdir` (see the README's table of outputs)."""
    info = inputs.info
    runner = change_runner if params.use_change_model else None
    with PipelineRun(outdir, info, rules, wgs84, timer) as pipeline:
        with timer.stage("rasters"):
            resolution = model_resolution(inputs.info, inputs.metric, predictor)
            paths, stats = write_change_rasters(inputs, predictor, runner, params, pipeline.work, progress, timer, resolution["zoom"])
        values = {k.change_code: k.new_name for k in KINDS}
        regions, codes = pipeline.regions(paths["change_raw"], paths["change_confidence"], values, inputs.metric, "change.tif", NO_CHANGE)
        paths["change_confidence"].unlink()
        flags, rows = pipeline.flags(regions, CHANGE_KIND_NAMES, inputs.permits, inputs.metric, before_classes=paths["before_classes"])
        with timer.stage("overlay"):
            pipeline.overlay(flag_overlay(inputs.before, inputs.after, info, pipeline.work / "change.tif", flags))
            pipeline.previews("after_classes.tif", {"after": inputs.after, "before": inputs.before}, previews_max_pixels)
        valid = int(codes[:CHANGE_NODATA].sum())
        summary = {
            **common_summary(inputs, flags, rows, rules, resolution),
            "alignment": inputs.pair.describe(),
            "method": "class comparison + learned change model" if runner is not None else "class comparison",
            "checkpoint": str(predictor.checkpoint.path) if predictor.checkpoint.path else None,
            "change_checkpoint": str(runner.checkpoint.path) if runner is not None and runner.checkpoint and runner.checkpoint.path else None,
            "valid_share": round(valid / max(1, info.width * info.height), 4),
            "change_pixels": {kind.new_name: int(codes[code]) for code, kind in BY_CODE.items()},
            "class_shares": {"before": class_shares(stats["class_counts"]["before"]), "after": class_shares(stats["class_counts"]["after"])},
            "change_params": params.as_dict(),
        }
        return pipeline.finish(flags, regions, summary)
