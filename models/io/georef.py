"""Where a GeoTIFF's pixels are on the ground, in whichever form GDAL reads it - used, or refused with a reason.

GDAL describes georeferencing in four ways: a geotransform (north-up or rotated), ground control
points (GCPs), rational polynomial coefficients (RPCs) of a sensor model, or nothing. landsentry
works on an affine grid, so:

- a geotransform with a CRS is used as it is, rotated or not;
- GCPs are used when one affine transform fits all of them within `GCP_TOLERANCE_PX` (then it is
  the same grid GDAL's first-order GCP transformer would use); otherwise the file is refused, with
  the gdalwarp command that puts it on a map grid;
- RPCs alone need a terrain model to place pixels: refused, with the gdalwarp -rpc command;
- a CRS without any geotransform or GCPs places nothing: refused.
- no georeferencing at all: a plain picture (areas need --gsd); a geotransform without a CRS keeps
  its coordinates, but its units are unknown, so areas are too.

Never is georeferencing dropped while areas quietly fall back to pixels: `Georef.describe()` goes
into every summary.json, and `problem` says why a file cannot be used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_gcps

GCP_TOLERANCE_PX = 0.5
"""Largest distance (pixels) between a GCP and where the fitted affine transform puts it."""


@dataclass(frozen=True)
class Georef:
    """A dataset's georeferencing as landsentry uses it: CRS, affine transform, and what it came from."""

    crs: CRS | None
    transform: Affine
    source: str
    """In words: 'geotransform', 'rotated geotransform', 'N ground control points (...)', 'none', ..."""
    problem: str | None = None
    """Why the file cannot be used (RPC-only, GCPs no affine transform fits, a CRS without positions)."""

    def describe(self) -> dict:
        return {"source": self.source, "crs": self.crs.to_string() if self.crs else None}


def _gcp_fit(gcps: list, crs: CRS | None, name: str) -> Georef:
    """The affine transform of a set of GCPs, or a refusal when they need more than an affine transform."""
    warp = f"warp it onto a map grid first, e.g. gdalwarp -r bilinear {name} {name.rsplit('.', 1)[0]}_warped.tif"
    if crs is None:
        return Georef(None, Affine.identity(), "ground control points", f"{name} has ground control points but no CRS for them: {warp}")
    if len(gcps) < 3:
        return Georef(None, Affine.identity(), "ground control points",
                      f"{name} has only {len(gcps)} ground control point(s); an affine grid needs at least 3: {warp}")
    transform = from_gcps(gcps)
    inverse = ~transform
    worst = max(math.hypot(*(a - b for a, b in zip(inverse @ (g.x, g.y), (g.col, g.row)))) for g in gcps)
    if not math.isfinite(worst) or worst > GCP_TOLERANCE_PX:
        return Georef(None, Affine.identity(), "ground control points",
                      f"{name} is georeferenced by {len(gcps)} ground control points that no affine transform fits "
                      f"(off by up to {worst:.1f} px; landsentry accepts {GCP_TOLERANCE_PX} px): {warp}")
    return Georef(crs, transform, f"{len(gcps)} ground control points, fitted by an affine transform within {worst:.2f} px")


def georeference(ds, name: str) -> Georef:
    """The georeferencing of an open rasterio dataset (`name`: the file's name, for messages)."""
    transform, crs = ds.transform, ds.crs
    gcps, gcp_crs = ds.gcps
    has_transform = not transform.is_identity
    if has_transform:
        rotated = transform.b != 0 or transform.d != 0
        kind = "rotated geotransform" if rotated else "geotransform"
        if crs is None:
            return Georef(None, transform, f"{kind} without a CRS (coordinates kept, ground units unknown)")
        extra = " (its RPCs are not used)" if ds.rpcs is not None else ""
        return Georef(crs, transform, kind + extra)
    if gcps:
        return _gcp_fit(gcps, gcp_crs or crs, name)
    if ds.rpcs is not None:
        return Georef(None, transform, "RPCs", (
            f"{name} is georeferenced only by RPCs (a satellite sensor model), which need a terrain model to place "
            f"pixels on the ground: orthorectify it first, e.g. gdalwarp -rpc -t_srs EPSG:4326 {name} "
            f"{name.rsplit('.', 1)[0]}_ortho.tif (with a DEM: -to RPC_DEM=dem.tif)"))
    if crs is not None:
        return Georef(None, transform, "CRS without a geotransform",
                      f"{name} names a CRS ({crs.to_string()}) but has no geotransform or ground control points to place its pixels")
    return Georef(None, transform, "none")
