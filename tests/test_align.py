"""Aligning two dates (models/io/align.py) on the real NAIP 2010/2020 pair and copies of it made here.

The reprojected, resampled, cropped and shifted copies are generated in tmp from the real before
image with rasterio; the PNGs are generated.
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from landsentry.models.io.align import WarpedSource, WindowedSource, open_pair
from landsentry.models.vocabulary.errors import InputError

BEFORE = "naip_pair/m_4709963_se_14_1_20100629.tif"
AFTER = "naip_pair/m_4709963_se_14_1_20200831.tif"


@pytest.fixture(scope="module")
def naip(shared_file):
    return shared_file(BEFORE), shared_file(AFTER)


def _write(path, data, crs, transform, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
    return path


def _read_all(source):
    return source.read(Window(0, 0, source.info.width, source.info.height))


def test_real_pair_lands_on_the_after_grid(naip):
    before, after = naip
    with rasterio.open(after) as ds:
        grid = (ds.crs, ds.transform, ds.width, ds.height)
    with rasterio.open(before) as ds:
        assert ds.transform.c != grid[1].c, "the real dates are offset by 1 m (a fifth of a pixel)"
    with open_pair(before, after) as pair:
        assert (pair.info.crs, pair.info.transform, pair.info.width, pair.info.height) == grid
        assert pair.resampled and isinstance(pair.before, WarpedSource)
        data, valid = _read_all(pair.before)
        assert data.shape == (3, grid[3], grid[2]) and data.dtype == np.float32
        assert valid.mean() > 0.99
        after_data, _ = _read_all(pair.after)
        # same place: the crops changed colour in 10 years (June vs August), but field edges and roads
        # stayed; their edges match best with no shift at all (a misalignment would peak elsewhere)
        edges_b, edges_a = _edges(data), _edges(after_data)
        corr = {(dy, dx): _corr(np.roll(edges_b, (dy, dx), (0, 1)), edges_a) for dy in (-2, 0, 2) for dx in (-2, 0, 2)}
        assert max(corr, key=corr.get) == (0, 0), corr
        assert corr[(0, 0)] > 0.2


def _edges(image: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(image.mean(axis=0))
    return np.hypot(gx, gy)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a[5:-5, 5:-5].ravel(), b[5:-5, 5:-5].ravel())[0, 1])


def _aligned_before(pair) -> tuple[np.ndarray, np.ndarray]:
    data, valid = _read_all(pair.before)
    return data, valid


def test_before_reprojected_to_wgs84_still_aligns(naip, tmp_path):
    before, after = naip
    with rasterio.open(before) as src:
        dst_crs = CRS.from_epsg(4326)
        transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
        out = np.zeros((src.count, height, width), np.uint8)
        reproject(src.read(), out, src_transform=src.transform, src_crs=src.crs, dst_transform=transform, dst_crs=dst_crs,
                  resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
    wgs = _write(tmp_path / "before_wgs84.tif", out, dst_crs, transform, nodata=0)
    with open_pair(before, after) as direct:
        reference, ref_valid = _aligned_before(direct)
    with open_pair(wgs, after) as pair, rasterio.open(after) as ds:
        assert pair.info.crs == ds.crs and pair.resampled
        w = pair.window
        # the analysis grid is (a whole-pixel crop of) the after grid
        assert pair.info.transform == ds.window_transform(w)
        assert w.width >= ds.width - 2 and w.height >= ds.height - 2
        data, valid = _aligned_before(pair)
        ref = reference[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
        both = valid & ref_valid[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
        assert both.mean() > 0.95
        diff = np.abs(data - ref)[:, both]
        assert np.median(diff) < 6, "twice resampled, the before image must still land on the same ground"


def test_before_at_another_resolution_still_aligns(naip, tmp_path):
    before, after = naip
    with rasterio.open(before) as src:
        coarse = src.read(out_shape=(src.count, src.height // 2, src.width // 2), resampling=Resampling.average)
        t = src.transform @ Affine.scale(src.width / coarse.shape[2], src.height / coarse.shape[1])
        crs = src.crs
    path = _write(tmp_path / "before_10m.tif", coarse, crs, t, nodata=0)
    with open_pair(path, after) as pair, rasterio.open(after) as ds, open_pair(before, after) as direct:
        assert pair.resampled and pair.info.transform.a == pytest.approx(5.0) and pair.info.crs == ds.crs
        data, valid = _aligned_before(pair)
        ref, ref_valid = _aligned_before(direct)
        w = pair.window
        ref = ref[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
        assert valid.mean() > 0.95
        corr = np.corrcoef(data[0][valid].ravel(), ref[0][valid].ravel())[0, 1]
        assert corr > 0.9, corr


def test_whole_pixel_crop_is_read_without_resampling(naip, tmp_path):
    _, after = naip
    with rasterio.open(after) as ds:
        win = Window(200, 100, 400, 300)
        crop = ds.read(window=win)
        path = _write(tmp_path / "crop.tif", crop, ds.crs, ds.window_transform(win), nodata=0)
        expected_transform = ds.window_transform(win)
    with open_pair(path, after) as pair:
        assert not pair.resampled
        assert (pair.window.col_off, pair.window.row_off, pair.window.width, pair.window.height) == (200, 100, 400, 300)
        assert pair.info.transform == expected_transform and (pair.info.width, pair.info.height) == (400, 300)
        assert isinstance(pair.after, WindowedSource)
        b, _ = _read_all(pair.before)
        a, _ = _read_all(pair.after)
        assert np.array_equal(a, b), "the after image cropped to the overlap is the crop itself"
        assert pair.after.preview((30, 40)).shape == (30, 40, 3)


def test_partial_overlap_is_cropped_to_the_overlap(naip, tmp_path):
    before, after = naip
    with rasterio.open(before) as src:
        data = src.read()
        shifted = src.transform @ Affine.translation(500, -200)  # 2.5 km east, 1 km north
        path = _write(tmp_path / "shifted.tif", data, src.crs, shifted, nodata=0)
    with open_pair(path, after) as pair, rasterio.open(after) as ds:
        w = pair.window
        assert (w.col_off, w.row_off) == (500, 0)
        assert w.width == ds.width - 500 and w.height == ds.height - 200 + 1  # before starts 1 m into an after pixel
        assert pair.info.transform == ds.window_transform(w)
        _, valid = _read_all(pair.before)
        assert valid[:, 1:].mean() > 0.99


def test_no_overlap_is_a_clear_error(naip, tmp_path):
    before, after = naip
    with rasterio.open(before) as src:
        far = src.transform @ Affine.translation(src.width + 10, 0)
        path = _write(tmp_path / "far.tif", src.read(), src.crs, far, nodata=0)
    with pytest.raises(InputError, match="do not overlap on the ground"):
        open_pair(path, after)
    with rasterio.open(before) as src:
        sliver = src.transform @ Affine.translation(src.width - 5, 0)
        path = _write(tmp_path / "sliver.tif", src.read(), src.crs, sliver, nodata=0)
    with pytest.raises(InputError, match="overlap by only"):
        open_pair(path, after)


def test_band_counts_must_match(naip, tmp_path):
    before, after = naip
    with rasterio.open(before) as src:
        rgb = _write(tmp_path / "rgb.tif", src.read([1, 2, 3]), src.crs, src.transform, nodata=0)
    with pytest.raises(InputError, match=r"different band counts: the before image \(rgb\.tif\) has 3 band\(s\), the after image \(.*\) has 4"):
        open_pair(rgb, after)


def _png(path, size, seed=0):
    rng = np.random.default_rng(seed)  # generated
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_png_pairs_need_equal_sizes(tmp_path):
    a, b = _png(tmp_path / "a.png", (64, 48)), _png(tmp_path / "b.png", (64, 48), 1)
    with open_pair(a, b) as pair:
        assert pair.info.crs is None and (pair.info.width, pair.info.height) == (64, 48) and not pair.resampled
    c = _png(tmp_path / "c.png", (64, 50))
    with pytest.raises(InputError, match="must have the same size"):
        open_pair(a, c)


def test_georeferenced_with_plain_image_is_refused(naip, tmp_path):
    before, _ = naip
    png = _png(tmp_path / "plain.png", (934, 723))
    with pytest.raises(InputError, match=r"is georeferenced but the before image \(plain\.png\) is not"):
        open_pair(png, before)


def test_nir_tagged_as_alpha_is_data_when_resampling(naip, tmp_path):
    """rasterio tags the 4th band of a 4-band uint8 GeoTIFF as alpha; NIR there must not mask pixels."""
    before, after = naip
    with rasterio.open(before) as src:
        data = src.read()
        data[3, 100:200, 100:300] = 0  # a black NIR block (generated): data, not transparency
        path = _write(tmp_path / "nir.tif", data, src.crs, src.transform)
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3].name == "alpha"
    with open_pair(path, after) as pair:
        assert pair.resampled
        _, valid = _read_all(pair.before)
        assert valid[110:190, 110:290].all()


def test_a_sliver_of_overlap_is_refused_and_the_share_reported(naip, tmp_path):
    """Neighbouring tiles overlap by a few percent: under 10 % of both images is not a second date."""
    before, after = naip
    with rasterio.open(before) as src:
        data, crs, transform, width, height = src.read(), src.crs, src.transform, src.width, src.height
    sliver = _write(tmp_path / "neighbour.tif", data, crs, transform @ Affine.translation(width - 60, 0), nodata=0)
    with pytest.raises(InputError, match=r"the before image \(neighbour.tif\) and the after image \(.*\) overlap on only 6.4% "
                                         r"of the after image and 6.4% of the before image \(at least 10%"):
        open_pair(sliver, after)
    half = _write(tmp_path / "half.tif", data, crs, transform @ Affine.translation(width - 400, 0), nodata=0)
    with open_pair(half, after) as pair:
        share = round(400 * height / (width * height), 4)
        assert pair.describe()["overlap_share"] == {"after": share, "before": share}
    with open_pair(before, after) as pair:
        assert pair.describe()["overlap_share"] == {"after": 1.0, "before": 1.0}
