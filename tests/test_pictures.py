"""What a viewer shows is what is interpreted: EXIF orientation, 12-bit data in a 16-bit PNG, several images in one file.

Built from a real Dubai aerial image (../shared/data); the bundled model interprets each file and the
classes are compared with those of the same pixels in a plain container.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import rasterio
from PIL import Image, ImageOps

from landsentry.models.inference.runner import Predictor
from landsentry.models.io.header import probe
from landsentry.models.io.raster import RasterSource
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError
from tests.bad_files import dubai_crop, interpret_file, write_tif


@pytest.fixture(scope="module")
def predictor():
    return Predictor(load_checkpoint(), device="cpu")


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_orientation_is_applied(shared_file, predictor, tmp_path, orientation):
    """A camera-style JPEG: pixels stored turned, with the EXIF tag that turns them back for viewers."""
    image = dubai_crop(shared_file, 384)[:, :256].transpose(1, 2, 0)  # 384 wide, 256 tall
    stored = {6: np.rot90(image, 1), 8: np.rot90(image, -1), 3: image[::-1, ::-1]}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    jpeg = tmp_path / "camera.jpg"
    Image.fromarray(np.ascontiguousarray(stored)).save(jpeg, quality=95, exif=exif.tobytes())
    with Image.open(jpeg) as stored_file:
        shown = ImageOps.exif_transpose(stored_file)  # what a viewer shows
    assert shown.size == (384, 256)
    viewer = tmp_path / "as_shown.png"
    shown.save(viewer)
    classes, summary = interpret_file(jpeg, predictor)
    expected, _ = interpret_file(viewer, predictor)
    np.testing.assert_array_equal(classes, expected)
    assert (summary["width"], summary["height"]) == (384, 256)
    assert summary["inputs"]["image"]["exif_orientation"] == orientation


def test_exif_orientation_swaps_the_size_a_header_reports(tmp_path):
    path = tmp_path / "tall.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((40, 100, 3), np.uint8)).save(path, exif=exif.tobytes())  # stored 100 wide, shown 40 wide
    header = probe(path)
    assert (header.width, header.height) == (40, 100)


def test_twelve_bit_data_in_a_sixteen_bit_png_is_read_at_full_depth(shared_file, predictor, tmp_path):
    """Pillow keeps the high byte of 16-bit colour PNGs: 12-bit data would become 0..15, nearly black."""
    data = dubai_crop(shared_file).astype(np.uint16) * 16  # 12-bit values, 16..4080
    png = tmp_path / "twelve.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(png, "w", driver="PNG", width=data.shape[2], height=data.shape[1], count=3, dtype="uint16") as ds:
            ds.write(data)
    with Image.open(png) as pillow:
        assert pillow.mode == "RGB"  # what Pillow makes of it (8 bits)
    assert probe(png).dtype == "uint16"
    classes, summary = interpret_file(png, predictor)
    expected, _ = interpret_file(write_tif(tmp_path / "twelve.tif", data), predictor)  # the same values in a TIFF
    np.testing.assert_array_equal(classes, expected)
    scaling = summary["inputs"]["image"]["scaling"]
    assert "16-bit data stretched" in scaling["rule"] and 16 <= min(scaling["low"]) and max(scaling["high"]) <= 4080


def test_an_animated_png_is_refused(shared_file, tmp_path):
    frames = [Image.fromarray(dubai_crop(shared_file, 64).transpose(1, 2, 0)), Image.new("RGB", (64, 64))]
    path = tmp_path / "anim.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="anim.png is an animated PNG with 2 frames"):
        RasterSource(path)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG")  # one frame: fine
    (tmp_path / "still.png").write_bytes(buffer.getvalue())
    RasterSource(tmp_path / "still.png").close()
