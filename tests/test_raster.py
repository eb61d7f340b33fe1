"""Raster input: bad files become clear InputErrors (library and CLI), and bands/masks are read right.

Fixtures here are small images generated in the test with rasterio / PIL (or real files from
../shared/data cut short); nothing is committed.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.windows import Window

from landsentry.models.io import raster
from landsentry.models.vocabulary.errors import InputError, TooLargeError, UnsupportedMediaError
from landsentry.models.io.raster import ArraySource, RasterSource, sniff_format

UTM = CRS.from_epsg(32616)


def write_tif(path: Path, data: np.ndarray, **profile) -> Path:
    """A GeoTIFF from a C x H x W array (generated fixture)."""
    count, height, width = data.shape
    meta = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": str(data.dtype),
            "crs": UTM, "transform": Affine(0.5, 0, 733600, 0, -0.5, 3725100)}
    meta.update(profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **meta) as ds:
            ds.write(data)
    return path


def read_all(path: Path, **kwargs) -> tuple[np.ndarray, np.ndarray, RasterSource]:
    with RasterSource(path, **kwargs) as src:
        data, valid = src.read(Window(0, 0, src.info.width, src.info.height))
        return data, valid, src


def read_everything(path: Path) -> None:
    """Open and read every row, in windows, as `predict` does."""
    with RasterSource(path) as src:
        for y in range(0, src.info.height, 256):
            src.read(Window(0, y, src.info.width, min(256, src.info.height - y)))


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid tiny PNG whose IHDR (with a correct CRC) claims width x height pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


# --- bad files, as a library ---------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        RasterSource(tmp_path / "nope.tif")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        RasterSource(tmp_path)


def test_zero_byte_png(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        RasterSource(path)


def test_text_named_png_is_unsupported(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    with pytest.raises(UnsupportedMediaError, match="not a PNG, JPEG or GeoTIFF"):
        RasterSource(path)
    assert UnsupportedMediaError.http_status == 415


def test_format_is_sniffed_not_guessed_from_the_name(tmp_path, shared_file):
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(shared_file("loveda/Val/Rural/images_png/0.png").read_bytes())
    assert sniff_format(path) == "PNG"
    assert sniff_format(shared_file("naip_pair/m_4709963_se_14_1_20100629.tif")) == "GTiff"


@pytest.mark.parametrize("relpath", ["loveda/Val/Rural/images_png/0.png", "dubai_aerial/images/image_part_001t4.jpg"])
@pytest.mark.parametrize("fraction", [0.5, 0.05])
def test_truncated_picture(tmp_path, shared_file, relpath, fraction):
    data = shared_file(relpath).read_bytes()
    path = tmp_path / ("cut" + Path(relpath).suffix)
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError, match="damaged or truncated"):
        read_everything(path)


@pytest.mark.parametrize("relpath", ["naip_pair/m_4709963_se_14_1_20100629.tif", "spacenet_atlanta/sample_geotiff.tif"])
@pytest.mark.parametrize("cut", [0.5, 0.1, 200])
def test_truncated_geotiff(tmp_path, shared_file, relpath, cut):
    data = shared_file(relpath).read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: int(len(data) * cut) if cut < 1 else cut])
    with pytest.raises(InputError):  # at open or at read, but never another exception type
        read_everything(path)


def test_png_claiming_huge_size_is_refused_before_decoding(tmp_path):
    path = bomb_png(tmp_path / "bomb.png")
    # decoding would fail on the 4x4 pixel data; a TooLargeError proves the header was checked first
    # (by Pillow's own bomb check at this size, mapped to TooLargeError without touching its global)
    with pytest.raises(TooLargeError, match=r"bomb.png claims 10,000,000,000 pixels, over the limit of 150,000,000 \(set LANDSENTRY_MAX_DECODED_PIXELS"):
        RasterSource(path)
    assert TooLargeError.http_status == 413


def test_decoded_pixel_limit(tmp_path, monkeypatch):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    monkeypatch.setattr(raster, "MAX_DECODED_PIXELS", 40 * 50 - 1)
    with pytest.raises(TooLargeError, match="40"):
        RasterSource(path)
    monkeypatch.setattr(raster, "MAX_DECODED_PIXELS", 40 * 50)
    assert RasterSource(path).info.width == 50


def test_geotiff_pixel_limit(tmp_path, monkeypatch):
    path = write_tif(tmp_path / "img.tif", np.zeros((3, 40, 50), np.uint8))
    monkeypatch.setattr(raster, "MAX_PIXELS", 1000)
    with pytest.raises(TooLargeError, match="50x40"):
        RasterSource(path)


# --- bands ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [2, 5])
def test_unusual_band_counts_need_explicit_bands(tmp_path, count):
    path = write_tif(tmp_path / f"b{count}.tif", np.ones((count, 20, 30), np.uint8))
    with pytest.raises(InputError, match=f"{count} data band.*--bands"):
        RasterSource(path)


def test_five_bands_with_explicit_selection(tmp_path):
    data = np.stack([np.full((20, 30), 10 * (b + 1), np.uint8) for b in range(5)])
    path = write_tif(tmp_path / "b5.tif", data)
    out, valid, src = read_all(path, bands=[1, 2, 3])
    assert src.band_indexes == [1, 2, 3]
    assert [float(v) for v in out[:, 0, 0]] == [10.0, 20.0, 30.0]
    assert valid.all()
    out, _, _ = read_all(path, bands=[5, 4, 2])
    assert [float(v) for v in out[:, 0, 0]] == [50.0, 40.0, 20.0]
    with pytest.raises(InputError, match="out of range"):
        RasterSource(path, bands=[1, 2, 6])


@pytest.mark.parametrize("photometric", [None, "MINISBLACK"], ids=["gdal-default", "minisblack"])
def test_four_band_rgbn_geotiff(tmp_path, photometric):
    rng = np.random.default_rng(0)
    data = np.stack([np.full((20, 30), v, np.uint8) for v in (11, 22, 33)] + [rng.integers(0, 200, (20, 30), dtype=np.uint8)])
    data[3, :4] = 0  # dark water in the NIR: real data, not a transparent area
    path = write_tif(tmp_path / "rgbn.tif", data, **({"photometric": photometric} if photometric else {}))
    if photometric is None:  # GDAL's default for 4-band 8-bit TIFFs calls the 4th band alpha
        with rasterio.open(path) as ds:
            assert ds.colorinterp[3].name == "alpha"
    out, valid, src = read_all(path)
    assert src.band_indexes == [1, 2, 3]
    assert [float(v) for v in out[:, 5, 5]] == [11.0, 22.0, 33.0]
    assert valid.all(), "an NIR band must not be used as a transparency mask"
    out, valid, src = read_all(path, channels=4)
    assert src.band_indexes == [1, 2, 3, 4]
    assert np.array_equal(out[3], data[3].astype(np.float32)) and valid.all()


def test_rgba_geotiff_alpha_is_the_mask_not_a_band(tmp_path):
    data = np.stack([np.full((20, 30), v, np.uint8) for v in (11, 22, 33, 255)])
    data[3, :5] = 0  # transparent top rows
    path = write_tif(tmp_path / "rgba.tif", data, photometric="RGB", alpha="YES")
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3].name == "alpha"
    out, valid, src = read_all(path)
    assert src.band_indexes == [1, 2, 3]
    assert [float(v) for v in out[:, 10, 10]] == [11.0, 22.0, 33.0]
    assert not valid[:5].any() and valid[5:].all()
    with pytest.raises(InputError, match="3 data band"):  # RGB + alpha is not RGB + NIR
        RasterSource(path, channels=4)


def test_grey_with_alpha_geotiff(tmp_path):
    data = np.stack([np.full((20, 30), 77, np.uint8), np.full((20, 30), 255, np.uint8)])
    data[1, :, :4] = 0
    path = write_tif(tmp_path / "ga.tif", data)
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [rasterio.enums.ColorInterp.gray, rasterio.enums.ColorInterp.alpha]
    out, valid, src = read_all(path)
    assert src.band_indexes == [1, 1, 1] and (out == 77).all()
    assert not valid[:, :4].any() and valid[:, 4:].all()


def test_one_band_uint16_is_stretched_to_0_255(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 5000, (1, 64, 80)).astype(np.uint16)
    path = write_tif(tmp_path / "pan.tif", data)
    out, valid, src = read_all(path)
    assert out.shape == (3, 64, 80) and out.dtype == np.float32
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2]), "panchromatic fills all three channels"
    assert out.min() >= 0 and out.max() <= 255
    assert out.min() == 0 and out.max() == 255, "2-98 % stretch saturates the tails"
    assert np.percentile(out, 50) == pytest.approx(127.5, abs=15)
    flat, order = data[0].ravel(), np.argsort(data[0].ravel())
    assert (np.diff(out[0].ravel()[order]) >= 0).all(), "the stretch keeps the order of values"
    assert valid.all() and flat.size == valid.size


def test_real_uint16_geotiff_is_stretched(shared_file):
    out, valid, src = read_all(shared_file("spacenet_atlanta/sample_geotiff.tif"))
    assert src.info.dtype == "uint16" and src.info.count == 1
    assert out.shape == (3, 900, 900) and 0 <= out.min() and out.max() <= 255
    assert out.std() > 20, "a stretched panchromatic image uses the range"


def test_geotiff_nodata_masks_pixels(tmp_path):
    data = np.full((3, 20, 30), 100, np.uint8)
    data[:, 3:6, 7:9] = 0
    path = write_tif(tmp_path / "nd.tif", data, nodata=0)
    _, valid, _ = read_all(path)
    assert not valid[3:6, 7:9].any()
    assert valid.sum() == 20 * 30 - 6


def test_uint16_nodata_is_masked_and_left_out_of_the_stretch(tmp_path):
    data = np.full((1, 40, 40), 3000, np.uint16)
    data[0, :, 20:] = 4000
    data[0, :10] = 65535  # nodata: would wreck the percentiles if counted
    path = write_tif(tmp_path / "nd16.tif", data, nodata=65535)
    out, valid, _ = read_all(path)
    assert not valid[:10].any() and valid[10:].all()
    assert out[0, 20, 0] == 0 and out[0, 20, 30] == 255


def test_rgba_png_alpha_becomes_the_mask(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 255
    rgba[:, :7, 3] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out, valid, src = read_all(path)
    assert src.info.count == 3 and out.shape == (3, 20, 30)
    assert [float(v) for v in out[:, 0, 10]] == [10.0, 20.0, 30.0]
    assert not valid[:, :7].any() and valid[:, 7:].all()


def test_grey_png_and_16bit_png(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 30), 90, np.uint8), "L").save(grey)
    out, valid, _ = read_all(grey)
    assert out.shape == (3, 20, 30) and (out == 90).all() and valid.all()
    deep = tmp_path / "deep.png"
    values = np.tile(np.linspace(1000, 60000, 30).astype(np.uint16), (20, 1))
    Image.fromarray(values).save(deep)
    out, _, src = read_all(deep)
    assert src.info.dtype == "uint16"
    assert out.min() == 0 and out.max() == 255 and (np.diff(out[0, 0]) >= 0).all()


def test_gsd_gives_png_a_metric_pixel(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    with RasterSource(path, gsd=0.3) as src:
        assert src.info.pixel_area == pytest.approx(0.09) and src.info.crs is None
    with RasterSource(path) as src:
        assert src.info.pixel_area == 1.0 and not src.info.georeferenced


def test_windowed_read_matches_the_file(shared_file):
    path = shared_file("naip_pair/m_4709963_se_14_1_20100629.tif")
    with rasterio.open(path) as ds:
        expected = ds.read([1, 2, 3], window=Window(100, 200, 64, 32))
    with RasterSource(path) as src:
        assert src.info.crs.to_epsg() == 26914 and src.info.count == 4
        data, valid = src.read(Window(100, 200, 64, 32))
    assert np.array_equal(data, expected.astype(np.float32)) and valid.all()


def test_array_source_reads_windows():
    image = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8)
    src = ArraySource(image)
    data, valid = src.read(Window(2, 1, 3, 4))
    assert np.array_equal(data, image[:, 1:5, 2:5]) and valid.shape == (4, 3)
    with pytest.raises(InputError):
        ArraySource(np.zeros((6, 8)))


# --- bad files, through the CLI ------------------------------------------------------------------

def _bad_inputs(tmp_path: Path, shared_file) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error message must contain)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    png = shared_file("loveda/Val/Rural/images_png/0.png").read_bytes()
    half_png = tmp_path / "half.png"
    half_png.write_bytes(png[: len(png) // 2])
    jpg = shared_file("dubai_aerial/images/image_part_001t4.jpg").read_bytes()
    half_jpg = tmp_path / "half.jpg"
    half_jpg.write_bytes(jpg[: len(jpg) // 2])
    tif = shared_file("naip_pair/m_4709963_se_14_1_20100629.tif").read_bytes()
    half_tif = tmp_path / "half.tif"
    half_tif.write_bytes(tif[: len(tif) // 2])
    head_tif = tmp_path / "head.tif"
    head_tif.write_bytes(tif[:100])
    return {
        "missing": (tmp_path / "missing.tif", "file not found"),
        "empty": (empty, "empty"),
        "text": (text, "not a PNG, JPEG or GeoTIFF"),
        "half_png": (half_png, "truncated"),
        "half_jpg": (half_jpg, "truncated"),
        "half_tif": (half_tif, "half.tif"),
        "head_tif": (head_tif, "head.tif"),
        "bomb": (bomb_png(tmp_path / "bomb.png"), "over the limit"),
        "five_bands": (write_tif(tmp_path / "five.tif", np.ones((5, 20, 30), np.uint8)), "--bands"),
        "two_bands": (write_tif(tmp_path / "two.tif", np.ones((2, 20, 30), np.uint8)), "--bands"),
    }


BAD = ["missing", "empty", "text", "half_png", "half_jpg", "half_tif", "head_tif", "bomb", "five_bands", "two_bands"]


@pytest.mark.parametrize("name", BAD)
def test_cli_reports_bad_input_cleanly(name, tmp_path, shared_file, tiny_checkpoint, cli):
    path, phrase = _bad_inputs(tmp_path / "in", shared_file)[name]
    outdir = tmp_path / "out"
    code, stdout, stderr = cli(["predict", path, "-o", outdir, "--checkpoint", tiny_checkpoint, "--tile", "128", "--overlap", "16"])
    assert code != 0
    assert "landsentry predict: error:" in stderr and phrase in stderr, stderr
    assert "Traceback" not in stderr + stdout
    leftovers = sorted(p.name for p in outdir.iterdir()) if outdir.exists() else []
    assert leftovers == [], f"partial outputs left behind: {leftovers}"


def test_cli_bad_bands_argument(tmp_path, tiny_checkpoint, cli):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    code, _, stderr = cli(["predict", path, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--bands", "r,g,b"])
    assert code != 0 and "--bands takes comma-separated band numbers" in stderr and "Traceback" not in stderr


def test_refused_geotiffs_are_closed(tmp_path, monkeypatch):
    """A file refused after opening (bands, size) must not stay open: no leaked handles in a server."""
    opened = []
    real_open = rasterio.open

    def tracking_open(*args, **kwargs):
        ds = real_open(*args, **kwargs)
        opened.append(ds)
        return ds

    five = write_tif(tmp_path / "five.tif", np.ones((5, 20, 30), np.uint8))
    big = write_tif(tmp_path / "big.tif", np.ones((3, 20, 30), np.uint8))
    monkeypatch.setattr(raster.rasterio, "open", tracking_open)
    with pytest.raises(InputError, match="--bands"):
        RasterSource(five)
    monkeypatch.setattr(raster, "MAX_PIXELS", 100)
    with pytest.raises(TooLargeError):
        RasterSource(big)
    assert len(opened) == 2
    assert all(ds.closed for ds in opened), "a refused dataset was left open"


def test_reads_from_several_threads_take_turns(shared_file):
    """Prefetch threads share one GDAL handle: concurrent reads must give exactly the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    path = shared_file("naip_pair/m_4709963_se_14_1_20100629.tif")
    windows = [Window(c, r, 300, 200) for r in range(0, 1200, 200) for c in (0, 300, 600)]
    with RasterSource(path) as source:
        serial = [source.read(w)[0] for w in windows]
        with ThreadPoolExecutor(4) as pool:
            concurrent = list(pool.map(lambda w: source.read(w)[0], windows * 3))
    for i, data in enumerate(concurrent):
        assert np.array_equal(data, serial[i % len(windows)])
