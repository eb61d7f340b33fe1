"""Sliding windows, blend weights and the streaming stitch: full coverage, every row once, no seams."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.inference.runner import Predictor
from landsentry.models.inference.tiling import StripStitcher, blend_weights, window_starts

ODD_LENGTHS = [1, 31, 511, 512, 513, 1000, 1025]


@pytest.mark.parametrize("length", ODD_LENGTHS)
def test_window_starts_cover_every_pixel_with_windows_inside(length):
    tile, overlap = 512, 64
    t = min(tile, length)  # as StripStitcher does: a short side gets one window of its own length
    starts = window_starts(length, t, tile - overlap)
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert all(0 <= s and s + t <= length for s in starts), "every window must lie inside the image"
    covered = np.zeros(length, int)
    for s in starts:
        covered[s : s + t] += 1
    assert covered.min() >= 1, "some pixels are in no window"
    assert starts[-1] + t == length, "the last window is flush with the end"
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])), "neighbours overlap by at least `overlap`"
    if length > tile:
        assert len(starts) == int(np.ceil((length - tile) / (tile - overlap))) + 1


@pytest.mark.parametrize("shape,overlap", [((512, 512), 64), ((31, 513), 64), ((1, 7), 64), ((128, 96), 0), ((100, 100), 32)])
def test_blend_weights_positive_and_partition_of_unity(shape, overlap):
    w = blend_weights(*shape, overlap)
    assert w.shape == shape and w.dtype == np.float32
    assert (w > 0).all() and w.max() <= 1.0
    if min(shape) >= 2 * overlap + 2:
        assert w[shape[0] // 2, shape[1] // 2] == 1.0
    if overlap and shape[1] >= 2 * overlap:
        # two windows offset by tile - overlap: their ramps add up to 1 across the overlap
        row = w[shape[0] // 2] / w[shape[0] // 2].max()
        assert np.allclose(row[-overlap:] + row[:overlap], 1.0)


@pytest.mark.parametrize("height", [1, 31, 100, 511, 512, 513, 1000, 1025])
@pytest.mark.parametrize("width", [1, 37, 600])
def test_strip_stitcher_emits_every_row_once_in_order(height, width):
    stitcher = StripStitcher(height, width, 2, tile=512, overlap=64)
    assert stitcher.tile_h == min(512, height) and stitcher.tile_w == min(512, width)
    rows: list[int] = []
    for y, cols in stitcher.windows():
        for x in cols:
            h, w = stitcher.tile_h, stitcher.tile_w
            gy, gx = np.mgrid[y : y + h, x : x + w].astype(np.float32)
            stitcher.add(y, x, np.stack([gy, gx]))  # a "model" whose output is its global position
        strip = stitcher.finish_row(y)
        if strip is None:
            continue
        n = strip.probs.shape[1]
        assert strip.probs.shape == (2, n, width) and strip.valid.shape == (n, width)
        assert strip.row0 == (rows[-1] + 1 if rows else 0), "strips must follow each other without gaps"
        rows.extend(range(strip.row0, strip.row0 + n))
        gy, gx = np.mgrid[strip.row0 : strip.row0 + n, 0:width]
        np.testing.assert_allclose(strip.probs[0], gy, atol=1e-3)
        np.testing.assert_allclose(strip.probs[1], gx, atol=1e-3)
    assert rows == list(range(height))


def test_strip_stitcher_combines_validity():
    stitcher = StripStitcher(100, 300, 1, tile=128, overlap=32)
    for y, cols in stitcher.windows():
        for x in cols:
            valid = np.ones((stitcher.tile_h, stitcher.tile_w), bool)
            if x == cols[-1]:
                valid[:, -5:] = False  # the right edge of the scene is nodata
            stitcher.add(y, x, np.ones((1, stitcher.tile_h, stitcher.tile_w), np.float32), valid)
        strip = stitcher.finish_row(y)
    assert strip.valid[:, -5:].sum() == 0 and strip.valid[:, :-5].all()


class FieldPredictor(Predictor):
    """A stand-in model: each window's output is a smooth function of GLOBAL position (read from the
    input's first two bands, which hold the row and column numbers) plus a bias that ramps with the
    position INSIDE the window, as a real network's border effects do. The bias differs between
    windows at the same pixel, so an unblended stitch shows steps where windows meet."""

    def __init__(self, tile: int, overlap: int, bias: float = 0.0) -> None:  # no checkpoint needed
        self.tile, self.overlap, self.batch_size, self.num_classes = tile, overlap, 3, 2
        self.bias = bias
        self.windows_seen = 0

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        gy, gx = batch[:, 0], batch[:, 1]
        field = np.sin(gx / 37.0) + np.cos(gy / 23.0)
        h, w = batch.shape[-2:]
        ramp = self.bias * (np.arange(w)[None, :] / w + np.arange(h)[:, None] / h)
        self.windows_seen += len(batch)
        return np.stack([field + ramp, field - ramp], axis=1).astype(np.float32)


def _coordinates(height: int, width: int) -> np.ndarray:
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([gy, gx, np.zeros_like(gy)])


def _field(height: int, width: int) -> np.ndarray:
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.sin(gx / 37.0) + np.cos(gy / 23.0)


@pytest.mark.parametrize("shape,tile,overlap", [((300, 470), 128, 32), ((300, 470), 128, 0), ((50, 700), 128, 32), ((129, 97), 64, 16)])
def test_position_only_model_stitches_exactly(shape, tile, overlap):
    predictor = FieldPredictor(tile, overlap)
    probs = predictor.predict_array(_coordinates(*shape))
    assert probs.shape == (2, *shape)
    assert predictor.windows_seen > 1
    assert np.abs(probs[0] - _field(*shape)).max() < 1e-5


def test_blending_hides_window_borders_of_a_biased_model():
    shape, tile = (300, 470), 128
    steps = {}
    for overlap in (0, 32):
        probs = FieldPredictor(tile, overlap, bias=1.0).predict_array(_coordinates(*shape))
        residual = probs[0] - _field(*shape)  # what the windows' own bias contributes after stitching
        steps[overlap] = max(np.abs(np.diff(residual, axis=1)).max(), np.abs(np.diff(residual, axis=0)).max())
    # unblended, the bias jumps by almost its full range where one window hands over to the next
    assert steps[0] > 0.9
    # blended, the change between neighbouring pixels stays of the order of bias / overlap
    assert steps[32] < 4.0 / 32


@pytest.fixture(scope="module")
def real_crop(shared_file) -> np.ndarray:
    image = np.asarray(Image.open(shared_file("loveda/Val/Rural/images_png/0.png")).convert("RGB"))
    return image[100:484, 200:584].transpose(2, 0, 1).astype(np.float32)  # 384 x 384, 3 x 3 tiles of 128


def _seam_ratio(probs: np.ndarray, tile: int, overlap: int) -> float:
    """Mean change between adjacent columns/rows at window edges, over the mean change elsewhere."""
    size = probs.shape[1]
    starts = window_starts(size, tile, tile - overlap)
    edges = sorted({s for s in starts if s > 0} | {s + tile for s in starts if s + tile < size})
    at = np.array(edges) - 1  # diff index i compares pixel i with pixel i + 1
    other = np.setdiff1d(np.arange(size - 1), at)
    dx = np.abs(np.diff(probs, axis=2)).mean(axis=(0, 1))
    dy = np.abs(np.diff(probs, axis=1)).mean(axis=(0, 2))
    return float(max(dx[at].mean() / dx[other].mean(), dy[at].mean() / dy[other].mean()))


def test_real_model_tiled_prediction_has_no_seams(tiny_checkpoint, real_crop):
    checkpoint = load_checkpoint(tiny_checkpoint)
    single = Predictor(checkpoint, device="cpu", tile=384, overlap=0).predict_array(real_crop)
    tiled = Predictor(checkpoint, device="cpu", tile=128, overlap=32).predict_array(real_crop)
    hard = Predictor(checkpoint, device="cpu", tile=128, overlap=0).predict_array(real_crop)
    for probs in (single, tiled, hard):
        assert probs.shape == (6, 384, 384)
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    # less context per window changes the answer only a little
    assert (tiled.argmax(0) == single.argmax(0)).mean() > 0.95
    assert np.abs(tiled - single).mean() < np.abs(hard - single).mean()
    # the single window is seam-free by construction: its "edges" are ordinary columns
    assert _seam_ratio(single, 128, 32) < 1.5
    blended = _seam_ratio(tiled, 128, 32)
    assert blended <= 2.0, f"window edges still visible after blending (ratio {blended:.2f})"
    seams = _seam_ratio(hard, 128, 0)
    assert seams > 2 * blended, f"overlap 0 should show steps at window edges (ratio {seams:.2f} vs {blended:.2f})"


def test_stitch_windows_prefetches_each_row_once_in_order():
    """The reader runs one row ahead in its own thread; strips and progress are as without prefetching."""
    import threading

    from landsentry.models.inference.tiling import stitch_windows

    image = np.random.default_rng(0).random((2, 300, 250)).astype(np.float32)
    calls: list[tuple[int, str]] = []

    def read(y: int):
        calls.append((y, threading.current_thread().name))
        return [image[:, y : y + 128]], np.ones((128, 250), bool)

    def predict(batch: np.ndarray) -> np.ndarray:  # a "model" that passes the first band through as one class
        return batch[:, :1]

    stitcher = StripStitcher(300, 250, 1, 128, 16)
    seen: list[tuple[int, int]] = []
    strips = list(stitch_windows(stitcher, read, predict, 2, lambda done, total: seen.append((done, total))))
    assert [y for y, _ in calls] == stitcher.rows
    assert all(name.startswith("landsentry-read") for _, name in calls)
    assert np.allclose(np.concatenate([s.probs for s in strips], axis=1)[0], image[0], atol=1e-6)
    total = len(stitcher.rows) * len(stitcher.cols)
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_test_time_augmentation_averages_the_mirror_images(tiny_checkpoint):
    """--tta: each window's probabilities are the mean of the window and its three mirror images, un-mirrored."""
    from landsentry.models.nn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    plain = Predictor(ckpt, device="cpu", backend="eager", tile=128, overlap=16)
    tta = Predictor(ckpt, device="cpu", backend="eager", tile=128, overlap=16, tta=True)
    image = np.random.default_rng(3).uniform(0, 255, (3, 96, 160)).astype(np.float32)
    expected = np.mean([np.flip(plain.predict_batch(np.ascontiguousarray(np.flip(image[None], axis=axes))), axis=axes)
                        for axes in ((), (-1,), (-2,), (-2, -1))], axis=0)
    got = tta.predict_batch(image[None])
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(got - plain.predict_batch(image[None])).max() > 1e-4  # a random network is not mirror-symmetric
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
