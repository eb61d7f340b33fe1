"""`landsentry bench`: measure the whole interpretation path on this machine, against a baseline.

The measured run is the real one: `models.interpret.interpret` (or `interpret_pair` with `--pair`)
on a GeoTIFF, reading, preprocessing, running the model, stitching, writing the rasters,
polygonising and drawing the overlay. Stage times come from timing wrappers put around the
predictor's own methods and the interpretation's steps for the length of the run only
(`_Instrument`); none of them changes what the path does. Without an IMAGE, the scene is a mosaic
of a real image (mirrored, so no seams) grown to `--megapixels` and written window by window, so
even a 400-megapixel scene never sits in memory.

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
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from landsentry.models.inference.backends import BACKENDS, onnxruntime_available, resolve_backend
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.cli.options import check_common_options
from landsentry.models.vocabulary.errors import InputError
from landsentry.models.nn.network import count_flops
from landsentry.models.nn.normalization import Normalize
from landsentry.models.inference.predictor import Predictor, resolve_device
from landsentry.models.io.formats import MAX_PIXELS
from landsentry.models.io.header import probe
from landsentry.models.io.raster import RasterSource
from landsentry.models.inference.tiling import default_overlap, window_starts

SAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "sample_tiles" / "spacenet_atlanta_pan.tif"
DEFAULT_MEGAPIXELS = 16.0
MATMUL_SIZE = 4096
MAX_SOURCE_PIXELS = 64_000_000


# --- measuring ----------------------------------------------------------------------------------
class Clock:
    """Seconds per stage, summed over calls; `peaks` holds the RSS high-water mark seen when a stage ended."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start)
                if stage == "rasters":  # the streamed part: its memory should not grow with the scene's height
                    self.peaks[stage] = peak_rss_mib()

        return timed

    def wrap_iter(self, stage: str, iterator: Iterator) -> Iterator:
        """Time spent producing each item (not the time the consumer spends on it)."""
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.add(stage, time.perf_counter() - start)
                return
            self.add(stage, time.perf_counter() - start)
            yield item


def reset_peak_rss() -> bool:
    """Restart the kernel's RSS high-water mark (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """High-water mark of resident memory since the last reset (or process start), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    """Set `target.name` for the duration of a block and restore it after."""
    had = name in vars(target)
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        if had:
            setattr(target, name, old)
        else:
            delattr(target, name)


class _Instrument:
    """Timing wrappers around the predictor's methods and the interpretation's steps, for one run."""

    def __init__(self, clock: Clock, predictor: Predictor, runner: Any = None, pair: bool = False) -> None:
        self.clock, self.predictor, self.runner, self.pair = clock, predictor, runner, pair
        self.stack = contextlib.ExitStack()

    def _wrap_strips(self, owner: Any, stage: str) -> Callable:
        original = owner.iter_strips

        def iter_strips(*sources: Any, **kwargs: Any) -> Iterator:
            return self.clock.wrap_iter(stage, original(*sources, **kwargs))

        return iter_strips

    def __enter__(self) -> "_Instrument":
        import landsentry.models.analysis.two_dates as pair_mod
        import landsentry.models.analysis.one_date as single_mod

        import landsentry.models.inference.tiling as tiling_mod

        c, p = self.clock, self.predictor
        # reading runs in a prefetch thread: what costs the pipeline is the time spent waiting for it
        self.stack.enter_context(_patched(tiling_mod, "wait_for", c.wrap("read", tiling_mod.wait_for)))
        self.stack.enter_context(_patched(p, "predict_batch", c.wrap("model", p.predict_batch)))
        self.stack.enter_context(_patched(p, "iter_strips", self._wrap_strips(p, "tiles")))
        if self.runner is not None:
            self.stack.enter_context(_patched(self.runner, "predict_batch", c.wrap("change_model", self.runner.predict_batch)))
            self.stack.enter_context(_patched(self.runner, "iter_strips", self._wrap_strips(self.runner, "tiles")))
        if self.pair:
            steps = {"write_change_rasters": "rasters", "change_regions": "polygonize", "make_flags": "polygonize",
                     "pair_overlay": "overlay"}
            module = pair_mod
        else:
            steps = {"write_rasters": "rasters", "find_regions": "polygonize", "overlay_image": "overlay"}
            module = single_mod
        for name, stage in steps.items():
            self.stack.enter_context(_patched(module, name, c.wrap(stage, getattr(module, name))))
        import landsentry.models.analysis.flags as flags_mod

        for owner in (single_mod, flags_mod):  # GeoJSON files (regions, flags; WGS84 copies)
            self.stack.enter_context(_patched(owner, "write_features", c.wrap("vectors", owner.write_features)))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def stage_table(clock: Clock, total: float, load: float) -> dict[str, float]:
    """Exclusive seconds per stage, adding up to the load + run time."""
    s = clock.seconds
    read, model, change = s.get("read", 0.0), s.get("model", 0.0), s.get("change_model", 0.0)
    tiles, rasters = s.get("tiles", 0.0), s.get("rasters", 0.0)
    stages = {
        "load_model": load,
        "read_preprocess": read,
        "model": model,
        "change_model": change,
        "stitch": max(0.0, tiles - read - model - change),
        "write_rasters": max(0.0, rasters - tiles),
        "polygonize": s.get("polygonize", 0.0),
        "write_vectors": s.get("vectors", 0.0),
        "overlay": s.get("overlay", 0.0),
    }
    stages["other"] = max(0.0, total - sum(v for k, v in stages.items() if k != "load_model"))
    if not change:
        del stages["change_model"]
    return {k: round(v, 3) for k, v in stages.items()}


# --- scenes -------------------------------------------------------------------------------------
def mosaic_side(megapixels: float) -> int:
    """Side of the square scene with that many megapixels (a multiple of 16)."""
    side = int(round(math.sqrt(megapixels * 1e6) / 16)) * 16
    return max(side, 64)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices into [0, n) folding back and forth (0..n-1, n-1..0, ...), so copies join without seams."""
    period = 2 * n
    i = index % period
    return np.where(i < n, i, period - 1 - i)


def make_mosaic(source: Path, out: Path, megapixels: float, gsd: float, strip: int = 512) -> Path:
    """A square GeoTIFF of about `megapixels`, the source image mirrored across it, written strip by strip.

    Keeps the source's bands and data type (so the bench reads what a user's file holds) and its
    CRS (EPSG:32616 where it has none), with `gsd` metre pixels. Memory: the source plus one strip.
    """
    side = mosaic_side(megapixels)
    with rasterio.open(source) as src:
        if src.width * src.height > MAX_SOURCE_PIXELS:  # the source is held in memory while the mosaic is written
            raise InputError(f"--source {source.name} has {src.width}x{src.height} pixels; a mosaic source may have "
                             f"at most {MAX_SOURCE_PIXELS / 1e6:g} Mpx (measure a big file directly: landsentry bench FILE)")
        data = src.read()
        crs = src.crs if src.crs is not None and not src.crs.is_geographic else CRS.from_epsg(32616)
        x0, y0 = (src.transform.c, src.transform.f) if src.crs is not None and not src.crs.is_geographic else (500000.0, 3700000.0)
        nodata = src.nodata
    count, h, w = data.shape
    profile = {"driver": "GTiff", "width": side, "height": side, "count": count, "dtype": str(data.dtype), "crs": crs,
               "transform": Affine(gsd, 0, x0, 0, -gsd, y0), "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if nodata is not None:
        profile["nodata"] = nodata
    if count == 3:
        profile["photometric"] = "RGB"
    cols = _mirror(np.arange(side), w)
    tmp = out.with_name(f".{out.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        for y in range(0, side, strip):
            rows = _mirror(np.arange(y, min(side, y + strip)), h)
            dst.write(data[:, rows][:, :, cols], window=Window(0, y, side, len(rows)))
    os.replace(tmp, out)
    return out


def scene_for(args: argparse.Namespace, workdir: Path, source: Path, tag: str) -> tuple[Path, float]:
    """The scene to measure (given, reused from --workdir, or generated) and the seconds spent making it."""
    if args.image is not None:
        return args.image, 0.0
    path = workdir / f"mosaic-{tag}-{source.stem}-{mosaic_side(args.megapixels)}px-{args.gsd:g}m.tif"
    if path.is_file():
        return path, 0.0
    start = time.perf_counter()
    make_mosaic(source, path, args.megapixels, args.gsd)
    return path, time.perf_counter() - start


# --- baseline -----------------------------------------------------------------------------------
def baseline_model(in_channels: int, num_classes: int) -> torch.nn.Module | None:
    """segmentation_models_pytorch's UNet-ResNet18, random weights (nothing downloaded); None if not installed."""
    import landsentry.models.nn.torchvision_compat  # noqa: F401  (smp imports torchvision, which needs the shim here)

    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, in_channels=in_channels, classes=num_classes).eval()


def run_baseline(image: Path, tile: int, max_tiles: int, in_channels: int, num_classes: int, mean, std, workdir: Path) -> dict:
    """The plain loop: read a tile, normalise, eager forward (batch 1), argmax, write; no overlap, no blending."""
    model = baseline_model(in_channels, num_classes)
    if model is None:
        return {"skipped": "segmentation_models_pytorch is not installed (pip install 'landsentry[bench]')"}
    normalize = Normalize(mean, std, in_channels)
    done = pixels = 0
    reset_peak_rss()
    with torch.inference_mode():  # one warm-up call outside the timing (in the baseline's favour)
        model(torch.zeros(1, in_channels, tile, tile))
    start = time.perf_counter()
    with RasterSource(image, channels=in_channels) as source, torch.inference_mode():
        info = source.info
        profile = {"driver": "GTiff", "width": info.width, "height": info.height, "count": 1, "dtype": "uint8",
                   "crs": info.crs, "transform": info.transform, "compress": "deflate"}
        with rasterio.open(workdir / "baseline_classes.tif", "w", **profile) as out:
            for y in range(0, info.height, tile):
                for x in range(0, info.width, tile):
                    if max_tiles and done >= max_tiles:
                        break
                    win = Window(x, y, min(tile, info.width - x), min(tile, info.height - y))
                    band, _ = source.read(win)
                    t = torch.from_numpy(band)[None]
                    h, w = t.shape[-2:]
                    t = torch.nn.functional.pad(t, (0, (-w) % 32, 0, (-h) % 32))
                    classes = model(normalize(t))[0, :, :h, :w].argmax(0).to(torch.uint8).numpy()
                    out.write(classes, 1, window=win)
                    done += 1
                    pixels += h * w
                if max_tiles and done >= max_tiles:
                    break
    seconds = time.perf_counter() - start
    flops = count_flops(model, in_channels, tile)
    return {
        "model": "segmentation_models_pytorch Unet(resnet18), random weights, eager float32, batch 1, warmed up",
        "tile": tile, "tiles": done, "megapixels": round(pixels / 1e6, 3), "seconds": round(seconds, 3),
        "tiles_per_s": round(done / seconds, 3), "mpx_per_s": round(pixels / 1e6 / seconds, 4),
        "gflops_per_tile": round(flops / 1e9, 2), "peak_rss_mib": round(peak_rss_mib(), 1),
    }


# --- model only ---------------------------------------------------------------------------------
def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """This machine's float32 matmul rate with torch's BLAS and threads (best of `repeats`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def model_only(predictor: Predictor, repeats: int = 3) -> dict:
    """The model alone on full windows of random pixels: seconds per window and share of the matmul rate."""
    c, t, n = predictor.checkpoint.in_channels, predictor.tile, max(1, predictor.batch_size)
    batch = np.random.default_rng(0).uniform(0, 255, (n, c, t, t)).astype(np.float32)
    predictor.predict_batch(batch)  # warm-up (and compilation for 'compile')
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_batch(batch)
        best = min(best, time.perf_counter() - start)
    per_tile = best / n
    flops = count_flops(predictor.checkpoint.build_model(), c, t)
    gflops = flops / per_tile / 1e9
    matmul = matmul_gflops() if predictor.device.type == "cpu" else _cuda_matmul_gflops(predictor.device)
    return {
        "tile": t, "batch_size": n, "ms_per_tile": round(per_tile * 1000, 2), "gflops_per_tile": round(flops / 1e9, 3),
        "model_gflops_per_s": round(gflops, 1), "matmul_gflops_per_s": round(matmul, 1),
        "share_of_matmul": round(gflops / matmul, 3),
    }


def _cuda_matmul_gflops(device: torch.device, size: int = 8192) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(5):
        torch.mm(a, b)
    torch.cuda.synchronize(device)
    return 5 * 2 * size**3 / (time.perf_counter() - start) / 1e9


# --- the run ------------------------------------------------------------------------------------
@dataclass
class Scene:
    path: Path
    before: Path | None
    width: int
    height: int
    gsd: float
    generated_s: float
    windows: int = 0
    extra: dict = field(default_factory=dict)


def describe_scene(path: Path, before: Path | None, gsd: float, generated_s: float, tile: int, overlap: int, passes: int) -> Scene:
    info = probe(path)
    pixel = info.ground_size or gsd
    stride = max(1, tile - overlap)
    windows = len(window_starts(info.height, min(tile, info.height), stride)) * len(window_starts(info.width, min(tile, info.width), stride))
    return Scene(path, before, info.width, info.height, pixel, generated_s, windows * passes)


def run_whole(args: argparse.Namespace, scene: Scene, outdir: Path) -> tuple[dict, Predictor]:
    """Load the model and interpret the scene with timing wrappers; the figures of the measured run."""
    clock = Clock()
    reset_peak_rss()
    start = time.perf_counter()
    checkpoint = load_checkpoint(args.checkpoint)
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                          backend=args.backend, precision=args.precision, threads=args.threads)
    runner = None
    if args.pair:
        from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT, ChangeRunner, load_change_model

        if BUNDLED_CHANGE_CHECKPOINT.is_file():
            model, ckpt = load_change_model(None)
            runner = ChangeRunner(model, ckpt, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size)
    load = time.perf_counter() - start
    start = time.perf_counter()
    with _Instrument(clock, predictor, runner, pair=args.pair):
        if args.pair:
            from landsentry.models.analysis.change import ChangeParams
            from landsentry.models.analysis.two_dates import interpret_pair

            interpret_pair(scene.before, scene.path, outdir, predictor, runner, params=ChangeParams(use_change_model=runner is not None))
        else:
            from landsentry.models.analysis.one_date import interpret

            interpret(scene.path, outdir, predictor)
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
    }, predictor


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
                     "batch_size": args.batch_size, "tile": args.tile, "overlap": args.overlap,
                     "gdal_cachemax": os.environ.get("GDAL_CACHEMAX")},  # GDAL's block cache counts in the RSS
    }
    work_ctx = contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="landsentry-bench-")
    with work_ctx as work:
        workdir = Path(work)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.model_only:
            predictor = Predictor(load_checkpoint(args.checkpoint), device=args.device, tile=args.tile, overlap=args.overlap,
                                  batch_size=args.batch_size, backend=args.backend, precision=args.precision, threads=args.threads)
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
             f"batch {s['batch_size']}  tile {s['tile']}  overlap {s['overlap']}"]
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
