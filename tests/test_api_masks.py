"""The service's annotation masks go through the data layer's mask reader and keep the upload's own rules."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from landsentry.api.masks import class_pixels, read_mask
from landsentry.models.vocabulary.errors import InputError, UnsupportedMediaError


def test_canvas_export_alpha_zero_is_ignore(tmp_path):
    ids = np.zeros((6, 8), np.uint8)
    ids[1:3, 2:5] = 2
    alpha = np.full_like(ids, 255)
    alpha[5] = 0  # not painted on the page
    Image.fromarray(np.dstack([ids, ids, ids, alpha]), "RGBA").save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png", 8, 6)
    assert out.dtype == np.uint8 and (out[5] == 255).all() and (out[1:3, 2:5] == 2).all()
    assert class_pixels(out) == {"background": 34, "building": 0, "road": 6, "bare_soil": 0, "vegetation": 0, "water": 0, "ignore": 8}


def test_palette_and_grey_masks_hold_ids(tmp_path):
    ids = np.arange(48, dtype=np.uint8).reshape(6, 8) % 6
    palette = Image.fromarray(ids, "L").convert("P")
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_mask(tmp_path / "p.png", 8, 6), np.asarray(palette))


@pytest.mark.parametrize("array, error, words", [
    (np.zeros((6, 9), np.uint8), InputError, "the mask is 9x6 px but the image is 8x6 px"),
    (np.full((6, 8), 9, np.uint8), InputError, "unknown class ids [9]"),
    (np.dstack([np.zeros((6, 8), np.uint8), np.ones((6, 8), np.uint8), np.zeros((6, 8), np.uint8)]), InputError, "colour image"),
])
def test_refusals_name_the_reason(tmp_path, array, error, words):
    Image.fromarray(array).save(tmp_path / "m.png")
    with pytest.raises(error) as err:
        read_mask(tmp_path / "m.png", 8, 6)
    assert words in str(err.value)


def test_only_png(tmp_path):
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "m.tif")
    with pytest.raises(UnsupportedMediaError, match="must be a PNG"):
        read_mask(tmp_path / "m.tif", 8, 6)
