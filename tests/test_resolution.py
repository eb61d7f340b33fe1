"""Ground resolution as an input: the zoom rule, windows resampled on the input's grid, and what predict reports.

The equivalence test is made here from the committed SpaceNet sample tile: a crop, and the same crop
upsampled 2x (as if photographed at 0.25 m instead of 0.5 m).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from torch.nn import functional as F

from landsentry.models.inference.resolution import MAX_ZOOM, MIN_ZOOM, check_zoom, gsd_from_pixel_area, resample_range, working_gsd, zoom_for
from landsentry.models.inference.runner import Predictor
from landsentry.models.io.raster import RasterSource
from landsentry.models.nn.checkpoint import load_checkpoint
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SAMPLE = ROOT / "sample_tiles" / "spacenet_atlanta_pan.tif"


def test_zoom_rule():
    assert zoom_for(0.5, 0.5) == 1.0
    assert zoom_for(0.52, 0.5) == 1.0  # within 10 %: used as it is
    assert zoom_for(1.0, 0.5) == 2.0 and zoom_for(0.25, 0.5) == 0.5
    assert zoom_for(None, 0.5) == 1.0 and zoom_for(0.3, None) == 1.0
    assert zoom_for(10.0, 0.5) == MAX_ZOOM and zoom_for(0.05, 0.5) == MIN_ZOOM
    assert working_gsd({"gsd": 0.4}) == 0.4 and working_gsd({}) is None
    assert resample_range({"gsd_range": [0.3, 0.6]}) == (0.3, 0.6) and resample_range({}) is None
    assert zoom_for(1.0, 0.3, (0.3, 0.6)) == 1.0 and zoom_for(0.5, 0.3, (0.3, 0.6)) == 1.6667
    assert gsd_from_pixel_area(0.25) == pytest.approx(0.5) and gsd_from_pixel_area(None) is None
    with pytest.raises(ValueError, match="between 0.25 and 4"):
        check_zoom(5)


def _crop() -> np.ndarray:
    with RasterSource(SAMPLE) as source:
        band, _ = source.read(rasterio.windows.Window(300, 300, 256, 256))
    return band.astype(np.float32)


def test_windows_are_resampled_for_the_network_and_the_probabilities_back():
    """A 0.25 m copy at working resolution 0.5 m: the network sees the copy downsampled to the original's size,
    and its probabilities come back on the copy's grid."""
    checkpoint = load_checkpoint()
    image = _crop()
    fine = F.interpolate(torch.from_numpy(image)[None], scale_factor=2, mode="bilinear", align_corners=False)
    zoomed = Predictor(checkpoint, device="cpu", tile=512, backend="eager").predict_array(fine[0].numpy(), zoom=0.5)
    assert zoomed.shape == (checkpoint.num_classes, 512, 512)  # outputs stay on the input's grid
    seen = F.interpolate(fine, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)[0].numpy()
    direct = Predictor(checkpoint, device="cpu", tile=256, backend="eager").predict_array(seen)
    expected = F.interpolate(torch.from_numpy(direct)[None], size=(512, 512), mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(zoomed, expected, atol=1e-4)
    as_is = Predictor(checkpoint, device="cpu", tile=512, backend="eager").predict_array(fine[0].numpy())
    assert float((as_is.argmax(0) != zoomed.argmax(0)).mean()) > 0.05  # resampling changes what the model reads


def test_predict_reports_and_applies_the_working_resolution(cli, tmp_path):
    rc, out, err = cli(["predict", str(SAMPLE), "-o", str(tmp_path / "a"), "--working-gsd", "0.25", "--quiet", "--tile", "256"])
    assert rc == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["resolution"] == {"input_gsd_m": 0.5, "working_gsd_m": 0.25, "applies_to_gsd_m": None, "zoom": 2.0}
    with rasterio.open(tmp_path / "a" / "classes.tif") as ds, rasterio.open(SAMPLE) as src:
        assert (ds.width, ds.height, ds.transform, ds.crs) == (src.width, src.height, src.transform, src.crs)
    rc, out, err = cli(["predict", str(SAMPLE), "-o", str(tmp_path / "b"), "--working-gsd", "0", "--quiet", "--tile", "256"])
    assert rc == 0, err
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["resolution"] == {
        "input_gsd_m": 0.5, "working_gsd_m": None, "applies_to_gsd_m": None, "zoom": 1.0}


def test_bad_working_resolution_is_one_line(cli, tmp_path):
    rc, out, err = cli(["predict", str(SAMPLE), "-o", str(tmp_path / "a"), "--working-gsd", "-1"])
    assert rc == 2 and "--working-gsd must be" in err


def test_the_bundled_model_resamples_only_the_resolutions_it_gains_on(cli, tmp_path):
    """0.5 m (SpaceNet) is shown to the network at 0.3 m; a plain picture declared 1 m is used as it is."""
    rc, _, err = cli(["predict", str(SAMPLE), "-o", str(tmp_path / "a"), "--quiet", "--tile", "256"])
    assert rc == 0, err
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["resolution"] == {
        "input_gsd_m": 0.5, "working_gsd_m": 0.3, "applies_to_gsd_m": [0.3, 0.6], "zoom": 1.6667}
    picture = tmp_path / "crop.png"
    Image.fromarray(_crop()[0].astype(np.uint8)).save(picture)
    rc, _, err = cli(["predict", str(picture), "-o", str(tmp_path / "b"), "--quiet", "--gsd", "1", "--tile", "256"])
    assert rc == 0, err
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["resolution"] == {
        "input_gsd_m": 1.0, "working_gsd_m": 0.3, "applies_to_gsd_m": [0.3, 0.6], "zoom": 1.0}
