"""What one would otherwise write (a plain per-tile eager loop over an smp UNet-ResNet18), and the model-only check."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from landsentry.models.bench.measure import peak_rss_mib, reset_peak_rss
from landsentry.models.inference.runner import Predictor
from landsentry.models.io.raster import RasterSource
from landsentry.models.nn.network import count_flops
from landsentry.models.nn.normalization import Normalize

MATMUL_SIZE = 4096


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
