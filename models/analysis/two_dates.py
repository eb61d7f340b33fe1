"""Two images in, change flags out: aligned classes of both dates, a change raster, flags with rules.

`interpret_pair` opens the pair on one grid (`models.align`), runs the segmentation predictor on
both dates strip by strip (and the learned change model when given), compares the classes
(`models.change`), writes the rasters as strips finish, vectorises the change raster, drops flags
under their minimum area (also from change.tif, so raster and flags agree), applies the rules
(`models.flags`) and draws the overlay. Everything is written to a hidden work folder in OUTDIR
first and moved into place only when complete: a failure leaves no partial outputs.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio import features
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from shapely import STRtree
from shapely.geometry import box

from landsentry.models.io.align import AlignedPair, open_pair
from landsentry.models.analysis.change import CHANGE_CODES, CODE_COLOURS, NODATA, ChangeParams, StripChange
from landsentry.models.nn.change_net import ChangeRunner
from landsentry.models.vocabulary.classes import CLASS_NAMES, IGNORE_INDEX
from landsentry.models.analysis.flags import CHANGE_KINDS, Flag, FlagRules, base_kind, make_flags, write_flag_files
from landsentry.models.analysis.one_date import MIN_AREA_PX, PREVIEW_SIDE, _palette_rows, raster_profile, write_json
from landsentry.models.io.permits import Permits, load_permits
from landsentry.models.analysis.polygons import Region, simplify, vectorize
from landsentry.models.inference.predictor import Predictor, ProgressFn, classes_and_confidence
from landsentry.models.io.raster import RasterInfo
from landsentry.models.io.render import side_by_side

SUSPECT_COLOUR = (255, 0, 255)


@dataclass
class PairInterpretation:
    """Paths of the written outputs (keyed by file name), the flags, the analysis grid and the summary."""

    outdir: Path
    files: dict[str, Path]
    flags: list[Flag]
    info: RasterInfo
    summary: dict = field(default_factory=dict)


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


def interpret_pair(
    before: str | Path,
    after: str | Path,
    outdir: str | Path,
    predictor: Predictor,
    change_runner: ChangeRunner | None = None,
    permits: str | Path | Permits | None = None,
    rules: FlagRules = FlagRules(),
    params: ChangeParams = ChangeParams(),
    gsd: float | None = None,
    bands: list[int] | None = None,
    wgs84: bool = False,
    progress: ProgressFn | None = None,
) -> PairInterpretation:
    """Compare `before` with `after` into `outdir` (see the README's table of outputs)."""
    outdir = Path(outdir)
    with open_pair(before, after, channels=predictor.checkpoint.in_channels, bands=bands, gsd=gsd) as pair:
        info = pair.info
        if permits is not None and not isinstance(permits, Permits):
            permits = load_permits(permits, info.crs)  # checked before any work is done
        outdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".partial-", dir=outdir))
        try:
            runner = change_runner if params.use_change_model else None
            paths, stats = write_change_rasters(pair, predictor, runner, params, workdir, progress)
            metric = info.crs is not None or gsd is not None
            regions = change_regions(paths["change_raw"], paths["change_confidence"], workdir / "change.tif", rules, metric)
            flags = make_flags(regions, rules, permits, before_classes=paths["before_classes"])
            rows = write_flag_files(workdir, flags, info.crs, CHANGE_KINDS, wgs84)
            pair_overlay(pair, workdir / "change.tif", flags).save(workdir / "overlay.png", compress_level=1)
            for internal in ("change_raw", "change_confidence"):
                paths[internal].unlink()
            summary = pair_summary(pair, Path(before), Path(after), rows, flags, stats, workdir / "change.tif",
                                   rules, params, runner, predictor, permits)
            write_json(workdir / "summary.json", summary)
            files = {}
            for path in sorted(workdir.iterdir()):
                os.replace(path, outdir / path.name)
                files[path.name] = outdir / path.name
            return PairInterpretation(outdir, files, flags, info, summary)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def write_change_rasters(
    pair: AlignedPair,
    predictor: Predictor,
    runner: ChangeRunner | None,
    params: ChangeParams,
    workdir: Path,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Path], dict]:
    """Classes and confidences of both dates, and the (raw) change codes and confidence, strip by strip."""
    info = pair.info
    names = ("before_classes", "before_confidence", "after_classes", "after_confidence", "change_raw", "change_confidence")
    paths = {n: workdir / f"{n}.tif" for n in names}
    nodata = {"before_classes": IGNORE_INDEX, "after_classes": IGNORE_INDEX, "change_raw": NODATA}
    counter = _Progress(progress, 3 if runner is not None else 2)
    strips_b = predictor.iter_strips(pair.before, counter.part(0))
    strips_a = predictor.iter_strips(pair.after, counter.part(1))
    strips_c = runner.iter_strips(pair.before, pair.after, counter.part(2)) if runner is not None else None
    stitch = StripChange(params)
    class_counts = {"before": np.zeros(256, np.int64), "after": np.zeros(256, np.int64)}
    datasets: dict[str, rasterio.io.DatasetWriter] = {}
    try:
        with warnings.catch_warnings():  # PNG pairs: a pixel grid, on purpose
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            for n in names:
                datasets[n] = rasterio.open(paths[n], "w", **raster_profile(info, "uint8", nodata.get(n)))
        for n in ("before_classes", "after_classes"):
            datasets[n].write_colormap(1, {c: tuple(v) + (255,) for c, v in enumerate(_palette_rows())})
        datasets["change_raw"].write_colormap(1, {0: (0, 0, 0, 0), **{c: CODE_COLOURS[c] + (255,) for c in CHANGE_CODES}})
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


def change_regions(raw_path: Path, conf_path: Path, final_path: Path, rules: FlagRules, metric: bool) -> list[Region]:
    """Vectorise the change raster, keep regions at or above their kind's minimum area, and write
    `final_path` = the raster without the dropped ones (so change.tif and the flags agree)."""
    kept: list[Region] = []
    dropped: list = []
    # pixel-exact outlines (no simplification yet), so the dropped ones erase exactly their pixels
    found = vectorize(raw_path, list(CHANGE_CODES), min_area_m2=0.0, simplify_px=0.0, metric_pixels=metric, confidence_path=conf_path)
    for r in found:
        kind = CHANGE_CODES[r.class_id]
        limit = rules.min_area_m2[base_kind(kind)]
        big = (r.area_m2 >= limit) if (metric and r.area_m2 is not None) else (r.geometry.area >= MIN_AREA_PX)
        if big:
            r.properties["kind"] = kind
            kept.append(r)
        else:
            dropped.append(r.geometry)
    _erase(raw_path, final_path, dropped)
    with rasterio.open(final_path) as ds:
        pixel = abs(ds.transform.a * ds.transform.e - ds.transform.b * ds.transform.d) ** 0.5
    simplify(kept, pixel)  # by one pixel, as single-date regions are
    order = {k: i for i, k in enumerate(CHANGE_KINDS)}
    kept.sort(key=lambda r: (order[r.properties["kind"]], -(r.area_m2 if r.area_m2 is not None else r.geometry.area)))
    return kept


def _erase(src_path: Path, dst_path: Path, geometries: list) -> None:
    """Copy a change raster block by block, setting the pixels of the given (pixel-exact) polygons to 0."""
    tree = STRtree(geometries) if geometries else None
    with rasterio.open(src_path) as src:
        profile = src.profile
        colormap = src.colormap(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dst = rasterio.open(dst_path, "w", **profile)
        with dst:
            dst.write_colormap(1, colormap)
            for _, window in src.block_windows(1):
                codes = src.read(1, window=window)
                if tree is not None:
                    t = src.window_transform(window)
                    xs, ys = zip(*(t * (c, r) for c in (0, window.width) for r in (0, window.height)))
                    hits = tree.query(box(min(xs), min(ys), max(xs), max(ys)))
                    if len(hits):
                        burn = features.rasterize([geometries[i] for i in hits], out_shape=codes.shape, transform=t, fill=0, default_value=1).astype(bool)
                        codes[burn & (codes != NODATA)] = 0
                dst.write(codes, 1, window=window)


def pair_overlay(pair: AlignedPair, change_path: Path, flags: list[Flag]) -> Image.Image:
    """before | after | flags over the after image (outlined by kind; suspected illegal thick, with a magenta marker)."""
    info = pair.info
    scale = max(info.width, info.height) / PREVIEW_SIDE
    shape = (max(1, round(info.height / max(scale, 1))), max(1, round(info.width / max(scale, 1))))
    before_rgb, after_rgb = pair.before.preview(shape), pair.after.preview(shape)
    with rasterio.open(change_path) as ds:
        codes = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    tint = after_rgb.astype(np.float32)
    for code, colour in CODE_COLOURS.items():
        sel = codes == code
        tint[sel] = 0.6 * tint[sel] + 0.4 * np.array(colour, np.float32)
    panel = Image.fromarray(tint.astype(np.uint8))
    draw = ImageDraw.Draw(panel)
    sx, sy = shape[1] / info.width, shape[0] / info.height
    inverse = ~info.transform
    colours = {kind: CODE_COLOURS[code] for code, kind in CHANGE_CODES.items()}

    def to_px(coords) -> list[tuple[float, float]]:
        out = []
        for x, y in coords:
            c, r = inverse * (x, y)
            out.append((c * sx, r * sy))
        return out

    for flag in sorted(flags, key=lambda f: f.suspected_illegal):  # suspects drawn last, on top
        colour = colours.get(flag.kind, colours.get(f"new_{flag.kind}", (255, 255, 255)))
        width = 3 if flag.suspected_illegal else 1
        for poly in getattr(flag.geometry, "geoms", [flag.geometry]):
            for ring in [poly.exterior, *poly.interiors]:
                draw.line(to_px(ring.coords), fill=colour, width=width)
        if flag.suspected_illegal:
            (cx, cy), = to_px(flag.geometry.representative_point().coords)
            draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=SUSPECT_COLOUR, outline=(0, 0, 0))
    entries = [(kind.replace("_", " "), colours[kind]) for kind in CHANGE_KINDS]
    entries.append(("suspected illegal (thick outline, dot)", SUSPECT_COLOUR))
    return side_by_side([before_rgb, after_rgb, np.asarray(panel)], ["before", "after", "flags (new since before)"], entries)


def pair_summary(pair, before: Path, after: Path, rows, flags, stats, change_path: Path, rules, params,
                 runner, predictor, permits) -> dict:
    info = pair.info
    codes = np.zeros(256, np.int64)
    with rasterio.open(change_path) as ds:
        for _, window in ds.block_windows(1):
            codes += np.bincount(ds.read(1, window=window).ravel(), minlength=256)
    valid = int(codes[:NODATA].sum())

    def shares(counts: np.ndarray) -> dict:
        n = counts[: len(CLASS_NAMES)].sum()
        return {name: round(float(counts[i]) / n, 4) if n else 0.0 for i, name in enumerate(CLASS_NAMES)}

    return {
        "before": before.name, "after": after.name,
        "width": info.width, "height": info.height,
        "crs": info.crs.to_string() if info.crs else None,
        "transform": list(info.transform)[:6], "pixel_area": info.pixel_area,
        "alignment": pair.describe(),
        "method": "class comparison + learned change model" if runner is not None else "class comparison",
        "checkpoint": str(predictor.checkpoint.path) if predictor.checkpoint.path else None,
        "change_checkpoint": str(runner.checkpoint.path) if runner is not None and runner.checkpoint and runner.checkpoint.path else None,
        "flags": len(flags),
        "suspected_illegal": sum(f.suspected_illegal for f in flags),
        "kinds": {r["kind"]: {k: v for k, v in r.items() if k != "kind"} for r in rows},
        "valid_share": round(valid / max(1, info.width * info.height), 4),
        "change_pixels": {kind: int(codes[code]) for code, kind in CHANGE_CODES.items()},
        "class_shares": {"before": shares(stats["class_counts"]["before"]), "after": shares(stats["class_counts"]["after"])},
        "rules": rules.as_dict(),
        "change_params": params.as_dict(),
        "permits": permits.describe() if permits is not None else None,
    }
