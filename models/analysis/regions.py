"""Flagged regions of a raster: one rule for both interpretations.

The raw raster (classes for one date, change codes for two) is vectorised once for every kind;
regions below their kind's minimum area (`FlagRules`: m² with a ground size, pixels without) are
dropped, and the published raster is written in the same pass without them
(`models.analysis.publish`), so raster and polygons agree.
"""
from __future__ import annotations

from pathlib import Path

from landsentry.models.analysis.flags import FlagRules
from landsentry.models.analysis.polygons import Region, vectorize
from landsentry.models.analysis.publish import RasterPublisher
from landsentry.models.vocabulary.kinds import KIND_NAMES, kind_of


def find_regions(raw_path: Path, conf_path: Path, values: dict[int, str], rules: FlagRules, metric: bool,
                 publisher: RasterPublisher | None = None) -> list[Region]:
    """Regions of the raster `values` (class ids or change codes) -> kind name, at or above their minimum area.

    Each region's `properties["kind"]` is set; regions come in kind order, largest first within a
    kind, outlines simplified by one pixel. `metric`: the raster's units are metres (a CRS or --gsd).
    """
    minimum = {v: rules.min_area_m2[kind_of(kind).name] if metric else 0.0 for v, kind in values.items()}
    regions = vectorize(raw_path, list(values), min_area_m2=minimum, simplify_px=1.0, metric_pixels=metric,
                        confidence_path=conf_path, min_pixels=0 if metric else rules.min_area_px, publish=publisher)
    for r in regions:
        r.properties["kind"] = values[r.class_id]
    order = {name: i for i, name in enumerate(KIND_NAMES)}
    regions.sort(key=lambda r: order[kind_of(r.properties["kind"]).name])  # stable: largest first within a kind
    return regions
