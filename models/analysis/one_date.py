"""One image in, interpretation files out: class and confidence GeoTIFFs, region polygons, an overlay.

Rasters are written strip by strip as the predictor finishes them; everything lands in a hidden
work folder first and is moved into place only when complete, so a failure never leaves half files.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from landsentry.models.vocabulary.classes import CLASS_ID, CLASS_NAMES, IGNORE_INDEX
from landsentry.models.io.geojson import write_features
from landsentry.models.analysis.polygons import Region, region_properties, vectorize
from landsentry.models.inference.predictor import Predictor, ProgressFn, classes_and_confidence
from landsentry.models.io.raster import RasterInfo, RasterSource
from landsentry.models.io.render import class_legend, colorize, side_by_side

# What a single-date interpretation reports, and the smallest area (m²) worth a person's look.
KINDS: dict[str, str] = {"building": "building", "road": "road", "bare_soil": "earthwork"}
DEFAULT_MIN_AREA_M2: dict[str, float] = {"building": 20.0, "road": 50.0, "earthwork": 100.0}
MIN_AREA_PX = 16  # used when the ground size of a pixel is unknown
PREVIEW_SIDE = 1024


@dataclass
class Interpretation:
    """Paths of the written outputs and the regions found."""

    outdir: Path
    files: dict[str, Path]
    regions: list[Region]
    info: RasterInfo
    summary: dict = field(default_factory=dict)


def raster_profile(info: RasterInfo, dtype: str, nodata: int | None) -> dict:
    """GeoTIFF profile carrying the input's CRS and transform, tiled and compressed."""
    profile = {
        "driver": "GTiff", "width": info.width, "height": info.height, "count": 1, "dtype": dtype,
        "crs": info.crs, "transform": info.transform, "compress": "deflate", "zlevel": 1,  # 3x faster than level 6, 10-30 % larger
    }
    if info.width >= 256 and info.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def write_rasters(source: RasterSource, predictor: Predictor, workdir: Path, progress: ProgressFn | None) -> tuple[Path, Path, np.ndarray]:
    """Stream the predictor's strips into classes.tif and confidence.tif; pixel counts per class value (0..255)."""
    class_path, conf_path = workdir / "classes.tif", workdir / "confidence.tif"
    counts = np.zeros(256, np.int64)
    info = source.info
    with rasterio.open(class_path, "w", **raster_profile(info, "uint8", IGNORE_INDEX)) as cls_ds, \
            rasterio.open(conf_path, "w", **raster_profile(info, "uint8", None)) as conf_ds:
        cls_ds.write_colormap(1, {c: tuple(v) + (255,) for c, v in enumerate(_palette_rows())})
        for strip in predictor.iter_strips(source, progress):
            classes, confidence = classes_and_confidence(strip)
            window = Window(0, strip.row0, info.width, classes.shape[0])
            cls_ds.write(classes, 1, window=window)
            conf_ds.write(confidence, 1, window=window)
            counts += np.bincount(classes.ravel(), minlength=256)
    return class_path, conf_path, counts


def _palette_rows() -> list[tuple[int, int, int]]:
    from landsentry.models.vocabulary.classes import palette

    return [tuple(int(v) for v in row) for row in palette()[: len(CLASS_NAMES)]]


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1))


def overlay_image(source: RasterSource, class_path: Path, regions_present: bool = True) -> Image.Image:
    """Image | image with class colours, decimated to at most PREVIEW_SIDE pixels a side."""
    info = source.info
    scale = max(info.width, info.height) / PREVIEW_SIDE
    shape = (max(1, round(info.height / max(scale, 1))), max(1, round(info.width / max(scale, 1))))
    rgb = source.preview(shape)
    with rasterio.open(class_path) as ds:
        classes = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    return side_by_side([rgb, colorize(classes, rgb)], ["image", "classes"], class_legend())


def interpret(
    image: str | Path,
    outdir: str | Path,
    predictor: Predictor,
    gsd: float | None = None,
    bands: list[int] | None = None,
    min_area_m2: dict[str, float] | None = None,
    wgs84: bool = False,
    progress: ProgressFn | None = None,
    permits: "str | Path | object | None" = None,
    rules: "object | None" = None,
) -> Interpretation:
    """Interpret one image into `outdir`: classes.tif, confidence.tif, regions.geojson, flags.geojson,
    summary.csv, overlay.png, summary.json.

    Flags are its buildings, roads and earthworks (`models.flags`, `rules` a `FlagRules`); with
    `permits` (a GeoJSON path or a loaded `models.permits.Permits`) buildings and earthworks outside
    every permitted parcel are marked suspected illegal. `files` is keyed by file name.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    min_area = {**DEFAULT_MIN_AREA_M2, **(min_area_m2 or {})}
    workdir = Path(tempfile.mkdtemp(prefix=".partial-", dir=outdir))
    try:
        with RasterSource(image, channels=predictor.checkpoint.in_channels, bands=bands, gsd=gsd) as source:
            info = source.info
            class_path, conf_path, counts = write_rasters(source, predictor, workdir, progress)
            metric = info.crs is not None or gsd is not None
            regions = find_regions(class_path, conf_path, min_area, metric)
            items = [(region_properties(r, i + 1), r.geometry) for i, r in enumerate(regions)]
            write_features(workdir / "regions.geojson", items, info.crs)
            if wgs84 and info.crs is not None:
                write_features(workdir / "regions.wgs84.geojson", items, info.crs, to_crs=CRS.from_epsg(4326))
            overlay_image(source, class_path).save(workdir / "overlay.png", compress_level=1)  # level 6: 5x slower
        summary = summarize(regions, info, counts)
        from landsentry.models.analysis.flags import single_date_flags  # flags imports this module

        summary["flags"] = single_date_flags(workdir, regions, info.crs, permits, rules, wgs84)
        write_json(workdir / "summary.json", summary)
        files = {}
        for path in sorted(workdir.iterdir()):
            os.replace(path, outdir / path.name)
            files[path.name] = outdir / path.name
        return Interpretation(outdir, files, regions, info, summary)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def find_regions(class_path: Path, conf_path: Path, min_area: dict[str, float], metric: bool) -> list[Region]:
    """Building, road and earthwork regions above their minimum areas, each tagged with its kind."""
    ids = {CLASS_ID[name]: kind for name, kind in KINDS.items()}
    regions = vectorize(
        class_path, list(ids), min_area_m2={cid: min_area[kind] if metric else 0.0 for cid, kind in ids.items()},
        metric_pixels=metric, confidence_path=conf_path, min_pixels=0 if metric else MIN_AREA_PX,
    )
    for r in regions:
        r.properties["kind"] = ids[r.class_id]
    order = list(ids)  # kinds in KINDS order, largest first within a kind
    regions.sort(key=lambda r: order.index(r.class_id))
    return regions


def summarize(regions: list[Region], info: RasterInfo, counts: np.ndarray) -> dict:
    """Counts and areas per kind, and class shares of the valid pixels (`counts`: pixels per class value)."""
    kinds: dict[str, dict] = {}
    for r in regions:
        k = kinds.setdefault(r.properties["kind"], {"count": 0, "area_m2": 0.0})
        k["count"] += 1
        k["area_m2"] += r.area_m2 or 0.0
    valid = counts[: len(CLASS_NAMES)].sum()
    shares = {name: round(float(counts[i]) / valid, 4) if valid else 0.0 for i, name in enumerate(CLASS_NAMES)}
    return {
        "width": info.width, "height": info.height, "crs": info.crs.to_string() if info.crs else None,
        "pixel_area": info.pixel_area, "kinds": {k: {"count": v["count"], "area_m2": round(v["area_m2"], 1)} for k, v in kinds.items()},
        "class_shares": shares,
    }
