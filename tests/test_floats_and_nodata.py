"""Float imagery is read as what it holds, NaN and ±inf are nodata, and nodata never reaches the network.

Every image here is a real Dubai aerial image (../shared/data) rewritten the way archives hold it:
as floats (0..255, fractions of 1, reflectance scaled to 0..10000), with NaN or ±inf holes, with a
wide nodata collar. The bundled model interprets each; its classes are compared with the 8-bit original's.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from landsentry.models.inference.runner import Predictor
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.classes import IGNORE_INDEX
from tests.bad_files import dubai_crop, interpret_file, write_tif


@pytest.fixture(scope="module")
def predictor():
    return Predictor(load_checkpoint(), device="cpu")


@pytest.fixture(scope="module")
def original(shared_file, tmp_path_factory, predictor):
    """The real image (uint8) and its classes."""
    image = dubai_crop(shared_file)
    classes, summary = interpret_file(write_tif(tmp_path_factory.mktemp("u8") / "u8.tif", image), predictor)
    return image, classes, summary


@pytest.fixture(scope="module")
def hole_results() -> dict:
    """The classes of the first holed image, which every other kind of hole must reproduce."""
    return {}


def holes_mask(shape: tuple[int, int]) -> np.ndarray:
    hole = np.zeros(shape, bool)
    hole[100:180, 150:230] = True
    hole[350:380, 300:450] = True
    return hole


@pytest.mark.parametrize("scale, rule", [(1.0, "8-bit values stored as floats"), (1 / 255, "fractions of 1")])
def test_float_copies_of_8_bit_data_give_the_same_classes(original, predictor, tmp_path, scale, rule):
    image, expected, original_summary = original
    classes, summary = interpret_file(write_tif(tmp_path / "f.tif", image.astype(np.float32) * np.float32(scale)), predictor)
    np.testing.assert_array_equal(classes, expected)
    assert original_summary["inputs"]["image"]["scaling"]["rule"] == "8-bit values, used as they are"
    assert rule in summary["inputs"]["image"]["scaling"]["rule"]


@pytest.mark.parametrize("fill, nodata", [(np.nan, None), (np.nan, float("nan")), (np.inf, None), (-np.inf, None), (-9999.0, -9999.0)],
                         ids=["nan", "nan-declared", "inf", "-inf", "-9999-declared"])
def test_holes_are_nodata_and_the_rest_keeps_its_classes(original, predictor, hole_results, tmp_path, fill, nodata):
    image, expected, _ = original
    data = image.astype(np.float32) / 255
    hole = holes_mask(expected.shape)
    data[:, hole] = fill
    classes, summary = interpret_file(write_tif(tmp_path / "holes.tif", data, nodata=nodata), predictor)
    assert (classes[hole] == IGNORE_INDEX).all()
    outside = ~hole
    assert (classes[outside] == expected[outside]).mean() > 0.98  # only context near the holes differs
    far = ndimage.distance_transform_edt(outside) > 128  # a quarter window: the network sees that far
    assert (classes[far] == expected[far]).mean() > 0.995
    assert "fractions of 1" in summary["inputs"]["image"]["scaling"]["rule"]  # the holes do not change the scaling
    # what the holes held never reaches the network: every kind of hole gives the very same classes
    first = hole_results.setdefault("first", classes)
    np.testing.assert_array_equal(classes, first)


def test_scaled_reflectance_is_stretched_by_percentiles(original, predictor, tmp_path):
    image, expected, _ = original
    data = image.astype(np.float32) * np.float32(10000 / 255)  # 0..10000 "scaled reflectance"
    classes, summary = interpret_file(write_tif(tmp_path / "sr.tif", data), predictor)
    shares = summary["class_shares"]
    assert max(shares.values()) < 0.9 and sum(v > 0.01 for v in shares.values()) >= 3, shares  # never all one class
    scaling = summary["inputs"]["image"]["scaling"]
    assert "float data stretched linearly between the 2 % and 98 % percentiles" in scaling["rule"]
    for band, low, high in zip(data, scaling["low"], scaling["high"]):
        assert (low, high) == pytest.approx(tuple(np.percentile(band[band != 0], (2, 98))), rel=1e-5)
    assert (classes == expected).mean() > 0.6  # a stretched image, not the 8-bit one: close, not equal


def _collared(image: np.ndarray, width: int, collar: np.ndarray) -> np.ndarray:
    out = collar.copy()
    out[:, width : width + image.shape[1], width : width + image.shape[2]] = image
    return out


def test_a_wide_nodata_collar_leaves_the_classes_inside_alone(original, predictor, tmp_path):
    """A 240 px collar (so windows straddle the image edge): its values, black nodata or noise behind a mask,
    never reach the network, so the classes inside are identical whatever it holds, and close to the
    classes of the image without any collar (the window grid moves, so not equal)."""
    image, expected, _ = original
    width = 240
    size = (3, image.shape[1] + 2 * width, image.shape[2] + 2 * width)
    black = write_tif(tmp_path / "black.tif", _collared(image, width, np.zeros(size, np.uint8)), nodata=0)
    noise = _collared(image, width, np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8))
    masked = write_tif(tmp_path / "masked.tif", noise)
    with warnings.catch_warnings():  # a GDAL mask band, as many archives carry
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(masked, "r+") as ds:
            ds.write_mask(_collared(np.full((1, *image.shape[1:]), 255, np.uint8), width, np.zeros((1, *size[1:]), np.uint8))[0])
    inside = (slice(width, width + image.shape[1]), slice(width, width + image.shape[2]))
    a, _ = interpret_file(black, predictor)
    b, _ = interpret_file(masked, predictor)
    assert (a[:width] == IGNORE_INDEX).all() and (b[:, :width] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(a[inside], b[inside])
    assert (a[inside] == expected).mean() > 0.95
