"""Regions -> flags: what an analyst receives, with the rules that mark construction as suspect.

A flag is one polygon of a kind - `new_building`, `new_road`, `new_earthwork` between two dates,
or `building`, `road`, `earthwork` for a single image - with its area, mean confidence, the
dominant class the before image showed there, and whether it is *suspected illegal* and why.

Rules (`FlagRules`, all thresholds configurable):

(a) **protected land** (two dates only): a new building or new earthwork where the before image
    showed vegetation (farmland, forest) or water on at least `protected_share` of its area;
(b) **outside permits** (when a permits GeoJSON is given): a (new) building or earthwork with at
    least `outside_permits_share` of its area outside every permitted parcel.

Roads are never flagged as suspected illegal by these rules: road building is public works more
often than not, and a permit map of parcels says nothing about roads between them. They are still
reported (kind `new_road` / `road`) for a person to look at.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from landsentry.models.analysis.polygons import Region
from landsentry.models.io.geojson import write_features
from landsentry.models.io.permits import Permits
from landsentry.models.vocabulary.classes import CLASS_ID, CLASS_NAMES
from landsentry.models.vocabulary.kinds import DEFAULT_MIN_AREA_M2, KIND_NAMES, KINDS, kind_of

CSV_COLUMNS = ("kind", "count", "area_m2", "suspected_illegal_count", "suspected_illegal_area_m2")


@dataclass(frozen=True)
class FlagRules:
    """Minimum areas and the suspected-illegal rules: the only carrier of both. Defaults are what
    `landsentry predict` uses (the kinds table, `models.vocabulary.kinds`)."""

    min_area_m2: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_AREA_M2))
    """Smallest flag kept per kind (building, road, earthwork; the same for new_*), in m²."""
    min_area_px: int = 16
    """Without a ground size (PNG/JPEG without --gsd) a flag must cover at least this many pixels instead."""
    protected_classes: tuple[str, ...] = ("vegetation", "water")
    """Before-image classes that make a new building/earthwork suspect (rule a)."""
    protected_share: float = 0.5
    """Rule (a) fires when at least this share of the flag's area showed protected classes before."""
    outside_permits_share: float = 0.5
    """Rule (b) fires when at least this share of the flag's area lies outside every permitted parcel."""
    suspect_kinds: tuple[str, ...] = tuple(k.name for k in KINDS if k.suspectable)
    """Kinds the rules apply to (roads are never suspected; see the module docstring)."""

    def __post_init__(self) -> None:
        for name in ("protected_share", "outside_permits_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        unknown = [c for c in self.protected_classes if c not in CLASS_ID]
        if unknown:
            raise ValueError(f"unknown protected classes {unknown}; known: {', '.join(CLASS_NAMES)}")
        missing = [k for k in KIND_NAMES if k not in self.min_area_m2]
        if missing or any(v < 0 for v in self.min_area_m2.values()) or self.min_area_px < 0:
            raise ValueError(f"min_area_m2 needs a non-negative area for each of {KIND_NAMES}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Flag:
    kind: str
    geometry: BaseGeometry
    area_m2: float | None
    confidence: float | None
    before_class: str | None = None
    suspected_illegal: bool = False
    reason: str = ""

    def properties(self, index: int) -> dict:
        return {
            "id": index,
            "kind": self.kind,
            "suspected_illegal": self.suspected_illegal,
            "reason": self.reason,
            "area_m2": None if self.area_m2 is None else round(self.area_m2, 1),
            "confidence": self.confidence,
            "before_class": self.before_class,
        }


def class_shares_under(geometry: BaseGeometry, dataset: rasterio.DatasetReader) -> np.ndarray:
    """Pixel counts per class id (0..255) of a class raster under a polygon (nodata excluded by the caller)."""
    window = features.geometry_window(dataset, [geometry])
    counts = np.zeros(256, np.int64)
    if window.width < 1 or window.height < 1:
        return counts
    classes = dataset.read(1, window=window)
    transform = dataset.window_transform(window)
    inside = features.geometry_mask([geometry], classes.shape, transform, invert=True)
    if not inside.any():  # a sliver thinner than a pixel centre: count what it touches
        inside = features.geometry_mask([geometry], classes.shape, transform, invert=True, all_touched=True)
    return np.bincount(classes[inside].ravel(), minlength=256)


def make_flags(
    regions: list[Region],
    rules: FlagRules = FlagRules(),
    permits: Permits | None = None,
    before_classes: Path | None = None,
) -> list[Flag]:
    """Flags from regions tagged with `properties["kind"]`, with the rules applied.

    `before_classes`: the before image's class raster on the same grid (two dates); gives each flag
    its dominant `before_class` and drives rule (a).
    """
    protected = [CLASS_ID[c] for c in rules.protected_classes]
    out: list[Flag] = []
    ds = rasterio.open(before_classes) if before_classes is not None else None
    try:
        for region in regions:
            kind = region.properties["kind"]
            flag = Flag(kind, region.geometry, region.area_m2, region.confidence)
            reasons = []
            suspect_kind = kind_of(kind).name in rules.suspect_kinds
            if ds is not None:
                counts = class_shares_under(region.geometry, ds)[: len(CLASS_NAMES)]
                total = counts.sum()
                if total:
                    flag.before_class = CLASS_NAMES[int(counts.argmax())]
                    share = counts[protected].sum() / total
                    if suspect_kind and share >= rules.protected_share:
                        what = " or ".join(rules.protected_classes)
                        reasons.append(f"the before image showed {what} on {share:.0%} of its area (rule: at least {rules.protected_share:.0%})")
            if permits is not None and suspect_kind:
                outside = permits.outside_share(region.geometry)
                if outside >= rules.outside_permits_share:
                    reasons.append(f"{outside:.0%} of its area lies outside every permitted parcel (rule: at least {rules.outside_permits_share:.0%})")
            flag.suspected_illegal = bool(reasons)
            flag.reason = "; ".join(reasons)
            out.append(flag)
    finally:
        if ds is not None:
            ds.close()
    return out


def flag_items(flags: list[Flag]) -> list[tuple[dict, BaseGeometry]]:
    """(GeoJSON properties, geometry) per flag, ids from 1, for `models.geojson.write_features`."""
    return [(f.properties(i + 1), f.geometry) for i, f in enumerate(flags)]


def write_flag_files(workdir: Path, flags: list[Flag], crs: CRS | None, kinds: tuple[str, ...], wgs84: bool = False,
                     metric: bool = True) -> list[dict]:
    """flags.geojson (source CRS, named in a `crs` member), flags.wgs84.geojson (with `wgs84` and a CRS)
    and summary.csv into `workdir`; returns the summary rows (`metric`: whether areas are known)."""
    items = flag_items(flags)
    write_features(workdir / "flags.geojson", items, crs)
    if wgs84 and crs is not None:
        write_features(workdir / "flags.wgs84.geojson", items, crs, to_crs=CRS.from_epsg(4326))
    rows = summary_rows(flags, kinds, metric)
    write_summary_csv(workdir / "summary.csv", rows)
    return rows


def summary_rows(flags: list[Flag], kinds: tuple[str, ...], metric: bool = True) -> list[dict]:
    """One row per kind (all kinds, zeros included): count, total area, suspected count and area.
    Areas are None (an empty CSV cell, null in JSON) whenever they are unknown - never 0.0 for 'unknown'."""
    rows = []
    for kind in kinds:
        mine = [f for f in flags if f.kind == kind]
        known = [f for f in mine if f.area_m2 is not None]
        sus = [f for f in mine if f.suspected_illegal]
        area = round(float(sum(f.area_m2 for f in known)), 1) if metric and len(known) == len(mine) else None
        sus_area = round(float(sum(f.area_m2 or 0.0 for f in sus)), 1) if area is not None else None
        rows.append({"kind": kind, "count": len(mine), "area_m2": area, "suspected_illegal_count": len(sus), "suspected_illegal_area_m2": sus_area})
    return rows


def write_summary_csv(path: Path, rows: list[dict]) -> None:
    """CSV with CSV_COLUMNS; unknown areas (no ground size) are empty cells."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
