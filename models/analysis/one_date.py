"""One image in, interpretation files out: classes.tif, confidence.tif, regions and flags, an overlay, a summary.

The predictor's strips stream into the raw class raster; its building, road and earthwork regions
at or above their minimum areas become regions.geojson and the flags (rule (b), outside permits,
when permits are given), and classes.tif is published without the smaller ones
(`models.analysis.publish`), so the class raster and the polygons agree.
"""
from __future__ import annotations

from pathlib import Path

from rasterio.windows import Window

from landsentry.models.analysis.flags import FlagRules
from landsentry.models.analysis.inputs import Inputs
from landsentry.models.analysis.overlays import class_overlay
from landsentry.models.analysis.pipeline import (
    WGS84, Interpretation, PipelineRun, class_colormap, class_shares, common_summary, model_resolution, open_raster,
)
from landsentry.models.analysis.polygons import region_properties
from landsentry.models.analysis.publish import SURROUNDINGS
from landsentry.models.inference.runner import Predictor, ProgressFn, classes_and_confidence
from landsentry.models.inference.timing import NO_TIMER, Timer
from landsentry.models.io.geojson import write_features
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.models.vocabulary.kinds import KIND_NAMES, KINDS


def write_rasters(source, predictor: Predictor, work: Path, progress: ProgressFn | None, timer: Timer,
                  zoom: float = 1.0) -> tuple[Path, Path]:
    """Stream the predictor's strips (windows resampled by `zoom`) into the raw class raster and confidence.tif."""
    raw, conf = work / "classes.raw.tif", work / "confidence.tif"
    info = source.info
    with timer.stage("rasters"), open_raster(raw, info, IGNORE_INDEX, class_colormap()) as cls_ds, open_raster(conf, info) as conf_ds:
        for strip in predictor.iter_strips(source, progress=progress, timer=timer, zoom=zoom):
            classes, confidence = classes_and_confidence(strip)
            window = Window(0, strip.row0, info.width, classes.shape[0])
            cls_ds.write(classes, 1, window=window)
            conf_ds.write(confidence, 1, window=window)
    return raw, conf


def run(inputs: Inputs, outdir: str | Path, predictor: Predictor, rules: FlagRules = FlagRules(), wgs84: bool = False,
        progress: ProgressFn | None = None, timer: Timer = NO_TIMER, previews_max_pixels: int = 0) -> Interpretation:
    """Interpret `inputs.after` into `outdir` (see the README's table of outputs)."""
    info = inputs.info
    with PipelineRun(outdir, info, rules, wgs84, timer) as pipeline:
        resolution = model_resolution(info, inputs.metric, predictor)
        raw, conf = write_rasters(inputs.after, predictor, pipeline.work, progress, timer, resolution["zoom"])
        values = {k.class_id: k.name for k in KINDS}
        regions, counts = pipeline.regions(raw, conf, values, inputs.metric, "classes.tif", SURROUNDINGS)
        items = [(region_properties(r, i + 1), r.geometry) for i, r in enumerate(regions)]
        with timer.stage("vectors"):
            write_features(pipeline.work / "regions.geojson", items, info.crs)
            if wgs84 and info.crs is not None:
                write_features(pipeline.work / "regions.wgs84.geojson", items, info.crs, to_crs=WGS84)
        flags, rows = pipeline.flags(regions, KIND_NAMES, inputs.permits, inputs.metric)
        with timer.stage("overlay"):
            pipeline.overlay(class_overlay(inputs.after, pipeline.work / "classes.tif"))
            pipeline.previews("classes.tif", {"after": inputs.after}, previews_max_pixels)
        summary = {**common_summary(inputs, flags, rows, rules, resolution), "class_shares": class_shares(counts)}
        return pipeline.finish(flags, regions, summary)
