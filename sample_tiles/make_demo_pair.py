"""Make the before/after demo pair and its permits from the redistributable SpaceNet tile.

    .venv/bin/python sample_tiles/make_demo_pair.py            # writes sample_tiles/demo_*.{tif,geojson}

Why generated: the project may not ship real two-date imagery (see README.md here), so the pair is
made from one real date. The *after* tile is a crop of `spacenet_atlanta_pan.tif`, unchanged. The
*before* tile is the same crop with five houses removed: each house box is filled with a patch of
ground/trees cut from nearby, chosen (seeded) so that the patch's border matches the pixels around
the house, then blended in with a soft edge; the whole tile also gets a mild seeded gain and noise,
so the two dates are not identical outside the changes. The permits GeoJSON (WGS84, RFC 7946) holds
parcels around two of the five new houses, so the other three come out "outside permits".

Same seed, same bytes: the outputs are committed, and re-running this script reproduces them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_geom
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "spacenet_atlanta_pan.tif"
SEED = 20261124
CROP = Window(col_off=32, row_off=0, width=576, height=512)
"""The part of the 900x900 source with most of its houses; 288 m x 256 m at 0.5 m."""
HOUSES: dict[str, tuple[int, int, int, int]] = {
    # name: (col0, row0, col1, row1) in source pixels, house plus its shadow, end-exclusive
    "north": (438, 0, 490, 40),
    "centre": (398, 160, 436, 228),
    "middle": (392, 278, 432, 345),
    "east": (500, 355, 600, 412),
    "west": (56, 410, 104, 500),
}
PERMITTED: tuple[str, ...] = ("centre", "middle")
"""Houses whose parcel is in the permits file; the others are built outside every permit."""
RING = 8          # pixels around a house compared with a candidate patch's surroundings
FEATHER = 6       # pixels of soft blend inside a filled box
CANDIDATES = 400  # seeded candidate patch offsets tried per house


def _crop_boxes() -> dict[str, tuple[int, int, int, int]]:
    """House boxes in crop pixel coordinates, clipped to the crop."""
    c0, r0 = int(CROP.col_off), int(CROP.row_off)
    out = {}
    for name, (a, b, c, d) in HOUSES.items():
        out[name] = (max(a - c0, 0), max(b - r0, 0), min(c - c0, CROP.width), min(d - r0, CROP.height))
    return out


def _ring_mask(shape: tuple[int, int], box: tuple[int, int, int, int], ring: int) -> np.ndarray:
    a, b, c, d = box
    m = np.zeros(shape, bool)
    m[max(b - ring, 0):d + ring, max(a - ring, 0):c + ring] = True
    m[b:d, a:c] = False
    return m


def _overlaps(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]], pad: int) -> bool:
    a, b, c, d = box
    return any(a < o[2] + pad and o[0] - pad < c and b < o[3] + pad and o[1] - pad < d for o in others)


def _fill(img: np.ndarray, box: tuple[int, int, int, int], avoid: list[tuple[int, int, int, int]],
          rng: np.random.Generator) -> tuple[int, int]:
    """Replace img[box] with the nearby patch whose surroundings best match the box's; returns the offset."""
    h, w = img.shape
    a, b, c, d = box
    bw, bh = c - a, d - b
    ring = _ring_mask(img.shape, box, RING)
    rows, cols = np.nonzero(ring)
    target = img[rows, cols].astype(np.float64)
    best, best_off = np.inf, None
    for _ in range(CANDIDATES):
        dx = int(rng.integers(-4 * bw, 4 * bw + 1))
        dy = int(rng.integers(-4 * bh, 4 * bh + 1))
        if abs(dx) < bw + RING and abs(dy) < bh + RING:
            continue  # overlaps the house itself
        src = (a + dx, b + dy, c + dx, d + dy)
        if src[0] - RING < 0 or src[1] - RING < 0 or src[2] + RING > w or src[3] + RING > h:
            continue
        if _overlaps(src, avoid, RING):
            continue  # never copy another house
        score = np.abs(img[rows + dy, cols + dx].astype(np.float64) - target).mean()
        if score < best:
            best, best_off = score, (dx, dy)
    if best_off is None:
        raise RuntimeError(f"no patch found for box {box}")
    dx, dy = best_off
    patch = img[b + dy:d + dy, a + dx:c + dx].astype(np.float64)
    # soft edge: weight 1 deep inside the box, falling to 0 at its border (sides clipped by the
    # crop edge have no neighbours to blend with, so they count as far away)
    far = 10**6
    top = np.arange(bh) if b > 0 else np.full(bh, far)
    bottom = np.arange(bh)[::-1] if d < h else np.full(bh, far)
    left = np.arange(bw) if a > 0 else np.full(bw, far)
    right = np.arange(bw)[::-1] if c < w else np.full(bw, far)
    yy = np.minimum(top, bottom)[:, None]
    xx = np.minimum(left, right)[None, :]
    alpha = np.clip(np.minimum(yy, xx) / FEATHER, 0.0, 1.0)
    region = img[b:d, a:c].astype(np.float64)
    img[b:d, a:c] = np.round(alpha * patch + (1 - alpha) * region).astype(img.dtype)
    return dx, dy


def make(outdir: Path, seed: int = SEED) -> dict[str, Path]:
    """Write demo_after.tif, demo_before.tif and demo_permits.geojson into outdir."""
    rng = np.random.default_rng(seed)
    with rasterio.open(SOURCE) as src:
        after = src.read(1, window=CROP)
        profile = src.profile.copy()
        profile.update(width=CROP.width, height=CROP.height, transform=src.window_transform(CROP),
                       compress="deflate", predictor=2, tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    boxes = _crop_boxes()
    before = after.copy()
    for name, box in boxes.items():
        _fill(before, box, list(boxes.values()), rng)
    valid = before > 0  # keep the source's no-data value (0) where it is
    gain = 1.0 + rng.uniform(-0.06, 0.06)
    noisy = before.astype(np.float64) * gain + rng.normal(0.0, 4.0, before.shape)
    before = np.where(valid, np.clip(np.round(noisy), 1, np.iinfo(np.uint16).max), 0).astype(np.uint16)

    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"after": outdir / "demo_after.tif", "before": outdir / "demo_before.tif", "permits": outdir / "demo_permits.geojson"}
    for key in ("after", "before"):
        with rasterio.open(paths[key], "w", **profile) as dst:
            dst.write(after if key == "after" else before, 1)
            dst.update_tags(source="spacenet_atlanta_pan.tif (SpaceNet, CC BY-SA 4.0)",
                            generated_by=f"sample_tiles/make_demo_pair.py seed={seed}", date=key)
    transform = profile["transform"]
    features = []
    for i, name in enumerate(PERMITTED, start=1):
        a, b, c, d = boxes[name]
        pad = 10  # a parcel is larger than the house on it
        x0, y0 = transform @ (a - pad, d + pad)
        x1, y1 = transform @ (c + pad, b - pad)
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        geom = transform_geom(profile["crs"], "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}, precision=7)
        features.append({"type": "Feature", "properties": {"permit": f"DEMO-{i:03d}", "house": name},
                         "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in geom["coordinates"][0]]]}})
    paths["permits"].write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1) + "\n")
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outdir", type=Path, default=HERE)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args()
    for key, path in make(args.outdir, args.seed).items():
        print(f"{key:>8}: {path}")


if __name__ == "__main__":
    main()
