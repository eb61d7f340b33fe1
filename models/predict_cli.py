"""`landsentry predict IMAGE -o OUTDIR`: interpret one image with the bundled (or a given) checkpoint."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.checkpoint import load_checkpoint
from models.errors import InputError
from models.interpret import interpret
from models.predictor import Predictor

PROGRESS_MIN_WINDOWS = 16  # smaller inputs finish before a bar would help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry predict", description=__doc__)
    p.add_argument("image", type=Path, help="PNG, JPEG or GeoTIFF (1, 3 or 4 bands; uint8 or uint16)")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the outputs (created)")
    p.add_argument("--checkpoint", type=Path, default=None, help="landsentry checkpoint (default: the bundled model)")
    p.add_argument("--gsd", type=float, default=None, help="ground sample distance in metres per pixel, for PNG/JPEG (GeoTIFFs carry it)")
    p.add_argument("--bands", type=str, default=None, help="1-based band numbers to use, e.g. 3,2,1 (default: by band count)")
    p.add_argument("--min-area", type=float, default=None, help="smallest region kept, m² (default: building 20, road 50, earthwork 100)")
    p.add_argument("--wgs84", action="store_true", help="also write regions.wgs84.geojson in EPSG:4326")
    p.add_argument("--tile", type=int, default=512, help="window size in pixels (multiple of 32)")
    p.add_argument("--overlap", type=int, default=64, help="overlap between windows in pixels")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise InputError(f"--bands takes comma-separated band numbers like 3,2,1, not {text!r}") from None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.gsd is not None and args.gsd <= 0:
        raise InputError("--gsd must be a positive number of metres per pixel")
    if args.tile < 64 or args.tile % 32:
        raise InputError("--tile must be a multiple of 32 and at least 64")
    if not 0 <= args.overlap < args.tile // 2:
        raise InputError("--overlap must be at least 0 and less than half the tile")
    checkpoint = load_checkpoint(args.checkpoint)
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet or total < PROGRESS_MIN_WINDOWS:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="window", desc=args.image.name)
        bar.update(done - bar.n)

    min_area = {k: args.min_area for k in ("building", "road", "earthwork")} if args.min_area is not None else None
    try:
        result = interpret(args.image, args.outdir, predictor, gsd=args.gsd, bands=parse_bands(args.bands),
                           min_area_m2=min_area, wgs84=args.wgs84, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(result.summary["kinds"], indent=1))
    for name, path in result.files.items():
        print(f"{name:>16}: {path}")
    return 0
