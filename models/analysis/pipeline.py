"""The skeleton both interpretations fill in: a hidden work folder, rasters, regions, flags, overlay, summary, publish.

`PipelineRun` holds the steps the one-date path (`models.analysis.one_date`) and the two-date path
(`models.analysis.two_dates`) share; each path only writes its own rasters and summary. Everything
lands in a hidden folder in OUTDIR first and is moved into place only when complete, so a failure
never leaves half files. Stage times go to the caller's `Timer` (`models.inference.timing`).
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
from shapely.geometry import Polygon

from landsentry.models.analysis.flags import Flag, FlagRules, make_flags, write_flag_files
from landsentry.models.analysis.polygons import Region, area_m2
from landsentry.models.analysis.publish import RasterPublisher
from landsentry.models.analysis.regions import find_regions
from landsentry.models.inference.resolution import gsd_from_pixel_area
from landsentry.models.inference.timing import NO_TIMER, Timer
from landsentry.models.io.formats import quiet_georeferencing_warnings
from landsentry.models.io.raster import RasterInfo
from landsentry.models.vocabulary.classes import CLASS_NAMES, palette

PREVIEW_SIDE = 1024
"""Overlays are decimated to at most this many pixels a side."""
WGS84 = CRS.from_epsg(4326)


@dataclass
class Interpretation:
    """Paths of the written outputs (keyed by file name), the flags and regions, the analysis grid and the summary."""

    outdir: Path
    files: dict[str, Path]
    flags: list[Flag]
    regions: list[Region]
    info: RasterInfo
    summary: dict = field(default_factory=dict)


def raster_profile(info: RasterInfo, dtype: str, nodata: int | None) -> dict:
    """GeoTIFF profile carrying the grid's CRS and transform, tiled and compressed."""
    profile = {
        "driver": "GTiff", "width": info.width, "height": info.height, "count": 1, "dtype": dtype,
        "crs": info.crs, "transform": info.transform, "compress": "deflate", "zlevel": 1,  # 3x faster than level 6, 10-30 % larger
    }
    if info.width >= 256 and info.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def open_raster(path: Path, info: RasterInfo, nodata: int | None = None, colormap: dict | None = None):
    """A uint8 GeoTIFF writer on the grid (plain images get a pixel grid without the georeferencing warning)."""
    quiet_georeferencing_warnings()
    ds = rasterio.open(path, "w", **raster_profile(info, "uint8", nodata))
    if colormap is not None:
        ds.write_colormap(1, colormap)
    return ds


def class_colormap() -> dict[int, tuple[int, int, int, int]]:
    return {c: tuple(int(v) for v in row) + (255,) for c, row in enumerate(palette()[: len(CLASS_NAMES)])}


def class_shares(counts: np.ndarray) -> dict[str, float]:
    """Share of each class among the valid pixels, from pixel counts per class value (0..255)."""
    valid = counts[: len(CLASS_NAMES)].sum()
    return {name: round(float(counts[i]) / valid, 4) if valid else 0.0 for i, name in enumerate(CLASS_NAMES)}


def pixel_area_m2(info: RasterInfo, metric: bool) -> float | None:
    """Ground area of one pixel at the grid's centre in m² (None when the ground size is unknown)."""
    if not metric:
        return None
    col, row = info.width // 2, info.height // 2
    pixel = Polygon([info.transform @ (col + dc, row + dr) for dc, dr in ((0, 0), (1, 0), (1, 1), (0, 1))])
    area = area_m2(pixel, info.crs, metric_pixels=True)
    return None if area is None else round(area, 6)


def model_resolution(info: RasterInfo, metric: bool, predictor) -> dict:
    """The input's ground resolution, the model's working resolution (both m per pixel, null when unknown)
    and the factor every window is resampled by before the network (`models.inference.resolution`)."""
    ground = gsd_from_pixel_area(pixel_area_m2(info, metric))
    return {"input_gsd_m": round(ground, 4) if ground else None, "working_gsd_m": predictor.working_gsd,
            "applies_to_gsd_m": list(predictor.resample_range) if predictor.resample_range else None,
            "zoom": predictor.zoom_for(ground)}


def common_summary(inputs, flags: list[Flag], rows: list[dict], rules: FlagRules, resolution: dict | None = None) -> dict:
    """The summary.json fields both interpretations report, named and shaped the same way in both:
    the grid (areas in m², null when unknown), how each input was read, the flags and their rules."""
    info = inputs.info
    return {
        "width": info.width, "height": info.height, "crs": info.crs.to_string() if info.crs else None,
        "transform": list(info.transform)[:6], "pixel_area_m2": pixel_area_m2(info, inputs.metric),
        "inputs": inputs.describe(), "resolution": resolution,
        "flags": len(flags), "suspected_illegal": sum(f.suspected_illegal for f in flags),
        "kinds": {r["kind"]: {k: v for k, v in r.items() if k != "kind"} for r in rows},
        "rules": rules.as_dict(),
        "permits": inputs.permits.describe() if inputs.permits is not None else None,
    }


def preview_shape(info: RasterInfo, side: int = PREVIEW_SIDE) -> tuple[int, int]:
    scale = max(1.0, max(info.width, info.height) / side)
    return max(1, round(info.height / scale)), max(1, round(info.width / scale))


class PipelineRun:
    """One interpretation in progress: its work folder and the steps both paths share."""

    def __init__(self, outdir: str | Path, info: RasterInfo, rules: FlagRules, wgs84: bool = False, timer: Timer = NO_TIMER) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.outdir))
        self.info, self.rules, self.wgs84, self.timer = info, rules, wgs84, timer

    def regions(self, raw: Path, confidence: Path, values: dict[int, str], metric: bool, published: str,
                fill: int | None) -> tuple[list[Region], np.ndarray]:
        """The regions of the raw raster at or above their minimum areas, and `published` written without the
        others (`models.analysis.publish`); returns them with the published raster's value counts."""
        with self.timer.stage("polygonize"), RasterPublisher(raw, self.work / published, list(values), fill) as publisher:
            regions = find_regions(raw, confidence, values, self.rules, metric, publisher)
        raw.unlink()
        return regions, publisher.counts

    def flags(self, regions: list[Region], kinds: tuple[str, ...], permits, metric: bool,
              before_classes: Path | None = None) -> tuple[list[Flag], list[dict]]:
        """Flags with the rules applied, written as flags.geojson (+ WGS84 copy) and summary.csv; returns them and the rows."""
        with self.timer.stage("polygonize"):
            flags = make_flags(regions, self.rules, permits, before_classes)
        with self.timer.stage("vectors"):
            rows = write_flag_files(self.work, flags, self.info.crs, kinds, self.wgs84, metric)
        return flags, rows

    def overlay(self, image: Image.Image) -> None:
        image.save(self.work / "overlay.png", compress_level=1)  # level 6: 5x slower

    def previews(self, classes_name: str, sources: dict[str, object], max_pixels: int) -> None:
        """Full-resolution PNGs for annotation on the page (NAME.png per source, classes.png: one byte per
        pixel), written from the open sources, only for grids up to `max_pixels`."""
        if self.info.width * self.info.height > max_pixels:
            return
        with rasterio.open(self.work / classes_name) as ds:
            classes = ds.read(1)
        for name, source in sources.items():
            Image.fromarray(source.preview(classes.shape)).save(self.work / f"{name}.png", compress_level=1)
        Image.fromarray(classes.astype(np.uint8), mode="L").save(self.work / "classes.png", compress_level=1)

    def finish(self, flags: list[Flag], regions: list[Region], summary: dict) -> Interpretation:
        """Write summary.json and move every output into OUTDIR."""
        (self.work / "summary.json").write_text(json.dumps(summary, indent=1))
        files = {}
        for path in sorted(self.work.iterdir()):
            os.replace(path, self.outdir / path.name)
            files[path.name] = self.outdir / path.name
        return Interpretation(self.outdir, files, flags, regions, self.info, summary)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> "PipelineRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
