"""Labelled polygons (GeoJSON or GeoPackage) rasterised onto an image's grid as a mask of class ids.

A department's land-survey polygons carry their class in a property ("landuse": "residential");
the caller says which property and how its values map onto the vocabulary's class names. Each
polygon is reprojected into the image's CRS and burnt in by the pixel-centre rule (a pixel takes a
polygon's class when its centre lies inside); where polygons overlap, the later feature in the file
wins. Every pixel no polygon covers is IGNORE_INDEX ("unknown"): a survey says nothing about what it
did not map. Anything that cannot be placed - a feature without a polygon, a self-intersecting ring,
a value the mapping does not name, a file or image without a CRS, polygons that miss the image - is
refused with a message that names the feature, never guessed or dropped silently.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from landsentry.models.data.masks import class_id_of_name
from landsentry.models.vocabulary.classes import CLASS_NAMES, IGNORE_INDEX
from landsentry.models.vocabulary.errors import InputError

UNKNOWN = "unknown"
"""The name the page and these messages use for IGNORE_INDEX (no label); "ignore" works too."""
NAMES_HINT = f"{', '.join(CLASS_NAMES)}, {UNKNOWN} (ignore) or not_NAME (a partial label: some class other than NAME)"
POLYGONAL = ("Polygon", "MultiPolygon")
MAX_VECTOR_BYTES = 200_000_000


@dataclass
class VectorLabels:
    """A rasterised label mask and what went into it."""

    ids: np.ndarray
    """H x W uint8 class ids on the image grid, IGNORE_INDEX where no polygon lies."""
    features: int
    """Polygons read from the file."""
    on_image: int
    """Polygons that label at least one pixel (not wholly covered by later ones)."""
    source_crs: str


def class_id_of(name: str) -> int:
    """A class name as `classes.json` takes it (models.data.masks) -> its mask value; a clear error for anything else."""
    class_id = class_id_of_name(name) if isinstance(name, str) else None
    if class_id is None:
        raise InputError(f"the class mapping names {name!r}, which is not a class; use {NAMES_HINT}")
    return class_id


def parse_mapping(pairs: dict[str, str] | None) -> dict[str, int] | None:
    """{property value: class name} -> {property value: class id}; None means the values are class names."""
    if pairs is None:
        return None
    if not isinstance(pairs, dict) or not pairs:
        raise InputError('the class mapping must be a non-empty object {"property value": "class name"}')
    out = {}
    for value, name in pairs.items():
        if not isinstance(name, str):
            raise InputError(f"the class mapping gives {value!r} the class {name!r}; class names are text")
        out[str(value)] = class_id_of(name)
    return out


def _layer(path: Path, layer: str | None, name: str) -> str | None:
    import pyogrio

    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio's DataSourceError and friends: not a vector file GDAL reads
        raise InputError(f"the labels file {name} is not GeoJSON or GeoPackage that can be read ({str(exc)[:160]})") from None
    if layer is not None:
        if layer not in layers:
            raise InputError(f"the labels file {name} has no layer {layer!r}; its layers are {', '.join(layers)}")
        return layer
    if len(layers) > 1:
        raise InputError(f"the labels file {name} has {len(layers)} layers ({', '.join(layers)}); say which one holds the labels")
    return layers[0] if layers else None


def read_vector_labels(vector: Path, image: Path, class_field: str, mapping_ids: dict[str, int] | None,
                       layer: str | None = None, name: str | None = None) -> VectorLabels:
    """Rasterise the polygons of `vector` onto `image`'s grid: class ids by `class_field` through `mapping_ids`
    (None: the field holds class names), IGNORE_INDEX elsewhere."""
    import pyogrio.raw

    name = name or vector.name
    if vector.stat().st_size > MAX_VECTOR_BYTES:
        raise InputError(f"the labels file {name} is over {MAX_VECTOR_BYTES // 1_000_000} MB")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(image) as ds:
            image_crs, transform, shape_hw, bounds = ds.crs, ds.transform, (ds.height, ds.width), ds.bounds
    if image_crs is None:
        raise InputError("vector labels need a georeferenced image (a GeoTIFF with a CRS) to be placed on its pixels; "
                         "this image has no CRS: send a mask PNG instead")
    chosen = _layer(vector, layer, name)
    try:
        meta, fids, geometries, values = pyogrio.raw.read(vector, layer=chosen, return_fids=True)
    except Exception as exc:
        raise InputError(f"the labels file {name} cannot be read ({str(exc)[:160]})") from None
    if len(geometries) == 0:
        raise InputError(f"the labels file {name} holds no features")
    fields = list(meta["fields"])
    if class_field not in fields:
        raise InputError(f"the labels file {name} has no property {class_field!r}; its properties are {', '.join(fields) or 'none'}")
    column = values[fields.index(class_field)]
    if not meta.get("crs"):
        raise InputError(f"the labels file {name} has no CRS: save it with one (GeoJSON without a 'crs' member is read as WGS84)")
    try:
        source_crs = CRS.from_user_input(meta["crs"])
    except (CRSError, ValueError) as exc:
        raise InputError(f"the labels file {name} names a CRS that cannot be used: {meta['crs']!r} ({str(exc)[:100]})") from None
    shapes = []
    for index, (fid, wkb, value) in enumerate(zip(fids, geometries, column)):
        where = f"the labels file {name}: feature {index} (fid {fid}, {class_field}={_show(value)})"
        class_id = _class_of(value, mapping_ids, where)
        geom = _polygon(wkb, where)
        if source_crs != image_crs:
            try:
                geom = shape(transform_geom(source_crs, image_crs, mapping(geom)))
            except Exception as exc:
                raise InputError(f"{where} cannot be reprojected from {source_crs.to_string()} to the image CRS "
                                 f"{image_crs.to_string()}: {str(exc)[:120]}") from None
            if geom.is_empty or not all(map(math.isfinite, geom.bounds)):
                raise InputError(f"{where} has no usable area in the image CRS {image_crs.to_string()} after reprojection")
        shapes.append((geom, class_id))
    # one pass: each pixel gets the number of the last feature covering it (0: none), then its class
    order = features.rasterize([(mapping(g), i + 1) for i, (g, _) in enumerate(shapes)], out_shape=shape_hw,
                               transform=transform, fill=0, dtype="int32")
    table = np.array([IGNORE_INDEX, *(c for _, c in shapes)], dtype=np.uint8)
    ids = table[order]
    on_image = int(np.count_nonzero(np.unique(order)))
    if on_image == 0:
        left, bottom, right, top = shapely.union_all([g for g, _ in shapes]).bounds
        raise InputError(
            f"none of the {len(shapes)} polygon(s) in {name} covers a pixel centre of the image (they span x {left:.6g}..{right:.6g}, "
            f"y {bottom:.6g}..{top:.6g}; the image x {bounds.left:.6g}..{bounds.right:.6g}, y {bounds.bottom:.6g}..{bounds.top:.6g}, "
            f"in the image CRS {image_crs.to_string()}); is the file's CRS ({source_crs.to_string()}) right, and is it the same area?")
    if (ids == IGNORE_INDEX).all():
        raise InputError(f"the labels file {name} labels no pixel of the image with a class (every polygon maps to {UNKNOWN})")
    return VectorLabels(ids, len(shapes), on_image, source_crs.to_string())


def _show(value: object) -> str:
    return "null" if value is None else repr(str(value))[:60]


def _class_of(value: object, mapping_ids: dict[str, int] | None, where: str) -> int:
    if value is None:
        raise InputError(f"{where} has no class value")
    key = str(value)
    if mapping_ids is None:
        class_id = class_id_of_name(key)
        if class_id is not None and not key.isdigit():
            return class_id
        raise InputError(f"{where}: {key!r} is not a class name and no class mapping was given; give a mapping "
                         f"such as {{{key!r}: \"building\"}} or use the names {NAMES_HINT}")
    if key not in mapping_ids:
        raise InputError(f"{where}: the class mapping does not name {key!r} (it names {', '.join(map(repr, mapping_ids))})")
    return mapping_ids[key]


def _polygon(wkb: bytes | None, where: str) -> shapely.Geometry:
    if wkb is None:
        raise InputError(f"{where} has no geometry")
    try:
        geom = shapely.from_wkb(wkb)
    except Exception as exc:
        raise InputError(f"{where} has unreadable geometry ({str(exc)[:120]})") from None
    if geom.geom_type not in POLYGONAL:
        raise InputError(f"{where} is a {geom.geom_type}, not a Polygon or MultiPolygon: labels must be areas")
    if geom.is_empty or not all(map(math.isfinite, geom.bounds)):
        raise InputError(f"{where} is empty or has non-finite coordinates")
    if not geom.is_valid:
        raise InputError(f"{where} is not a valid polygon ({shapely.is_valid_reason(geom)}): fix it (e.g. split a "
                         "self-intersecting ring into two polygons) so that its area is what you meant")
    return geom
