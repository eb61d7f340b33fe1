"""Helpers for the tests of awkward input: real imagery from ../shared/data rewritten the way archives
hold it (floats, NaN, collars, rotations, GCPs, EXIF, 16-bit PNG...), and one interpretation per file."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from landsentry.models.analysis.interpret import interpret, open_inputs

DUBAI = "dubai_aerial/images/image_part_003t5.jpg"  # 682x658 RGB: sand, roads, water, buildings
NAIP = "naip_pair/m_4709963_se_14_1_20200831.tif"  # 934x723 RGB+NIR uint8, EPSG:26914, 5 m


def dubai_crop(shared_file, size: int = 512) -> np.ndarray:
    """A real RGB image as uint8 C x H x W (values 1..255: 0 is kept free for nodata)."""
    with Image.open(shared_file(DUBAI)) as picture:
        image = np.asarray(picture.convert("RGB"))[:size, :size]
    return np.maximum(image, 1).transpose(2, 0, 1).copy()


def naip_crop(shared_file, size: int = 256) -> tuple[np.ndarray, dict]:
    """RGB of a real georeferenced NAIP tile (uint8 C x H x W) and its CRS and transform."""
    with rasterio.open(shared_file(NAIP)) as ds:
        return ds.read([1, 2, 3], window=((0, size), (0, size))), {"crs": ds.crs, "transform": ds.transform}


def write_tif(path: Path, data: np.ndarray, **profile) -> Path:
    """A GeoTIFF from a C x H x W array; plain (no georeferencing) unless `profile` says otherwise."""
    meta = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0], "dtype": str(data.dtype)}
    meta.update(profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **meta) as ds:
            ds.write(data)
    return path


def sparse_scene(path: Path, shared_file, side: int = 12000) -> Path:
    """A GeoTIFF declaring side x side pixels, with real data in one 256 px block and nothing written elsewhere."""
    data, geo = naip_crop(shared_file)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8", "tiled": True,
               "blockxsize": 256, "blockysize": 256, "sparse_ok": True, **geo}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, window=((0, 256), (0, 256)))
    assert path.stat().st_size < 300_000
    return path


def interpret_file(path: Path, predictor, **open_kwargs) -> tuple[np.ndarray, dict]:
    """(classes on the analysis grid, summary.json) of one interpretation of `path`."""
    outdir = path.with_name(path.stem + "_out")
    with open_inputs(path, channels=predictor.checkpoint.in_channels, **open_kwargs) as inputs:
        result = interpret(inputs, outdir, predictor)
    with rasterio.open(result.files["classes.tif"]) as ds:
        classes = ds.read(1)
    return classes, json.loads((outdir / "summary.json").read_text())
