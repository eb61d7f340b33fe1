"""The web page in a real headless browser against the real server (`landsentry serve`, bundled model).

Debian's chromium (`make chromium` installs it) driven by Playwright's driver only: no browser is
downloaded. Missing chromium or playwright: a failure under CI=true, a skip elsewhere.

One server for the module (temporary data directory, free port); each test uses its own page.
Uploads are real imagery: `sample_tiles/spacenet_atlanta_pan.tif` (SpaceNet, CC BY-SA 4.0) and the
demo pair generated from it by `sample_tiles/make_demo_pair.py`.
"""
from __future__ import annotations

import base64
import io
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from scipy import ndimage
from shapely.geometry import Polygon

from tests.bad_files import sparse_scene
from tests.serving import get_json as _get_json
from tests.serving import serve as _serve

ROOT = Path(__file__).resolve().parents[1]
TILES = ROOT / "sample_tiles"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JOB_WAIT_MS = 600_000  # one interpretation, inline or queued, on a busy machine
INLINE_MAX_PIXELS = 500_000
WATER = 5              # class id painted in the annotation test (models.vocabulary.classes: water)


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server_data(tmp_path_factory) -> Path:
    """The data directory of the module's server (tests read stored sample masks from it)."""
    return tmp_path_factory.mktemp("serve-data")


@pytest.fixture(scope="module")
def server(server_data):
    """Base URL of a `landsentry serve` process with a fresh data directory, for the module."""
    # the 900x900 Atlanta tile becomes a queued job (the page polls it); the 576x512 demo stays inline
    with _serve(server_data, LANDSENTRY_INLINE_MAX_PIXELS=str(INLINE_MAX_PIXELS)) as base:
        yield base


def _open(browser, base: str):
    """A new page on the server, loaded and done with its first API calls; also returns its JS errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(base + "/")
    pg.wait_for_selector("body[data-ready=true]")
    return context, pg, errors


@pytest.fixture
def page(browser, server):
    context, pg, errors = _open(browser, server)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _interpret(pg, after: Path, before: Path | None = None, permits: Path | None = None, status: int = 200) -> dict:
    """Upload through the form, wait for the flag list, return the job the page shows.

    `status`: what POST /v1/interpret must answer, 200 (inline) or 202 (queued: the page polls)."""
    pg.set_input_files("#file-after", str(after))
    if before:
        pg.set_input_files("#file-before", str(before))
    if permits:
        pg.set_input_files("#file-permits", str(permits))
    with pg.expect_response(lambda r: r.url.endswith("/v1/interpret")) as response:
        pg.click("#run-btn")
    assert response.value.status == status, response.value.text()
    pg.wait_for_selector("#result-panel:not([hidden])", timeout=JOB_WAIT_MS)
    assert pg.is_hidden("#error"), pg.inner_text("#error")
    return pg.evaluate("window.landsentry.state.job")


def _visible_flags(pg, kind: str | None = None) -> int:
    sel = "#flags-svg path.flag" + (f'[data-kind="{kind}"]' if kind else "")
    return pg.eval_on_selector_all(sel, "els => els.filter(e => getComputedStyle(e).display !== 'none').length")


def _stage_scale(pg) -> float:
    return pg.evaluate("window.landsentry.viewer.zoom")


def test_single_tile_flags_toggle_and_annotate(page, server, tmp_path):
    pg = page
    job = _interpret(pg, TILES / "spacenet_atlanta_pan.tif", status=202)
    assert job["status"] == "done" and job["progress"] == 1
    assert pg.inner_text("#job-message").startswith("done")
    features = job["result"]["flags"]["features"]
    grid = job["result"]["grid"]
    assert (grid["width"], grid["height"]) == (900, 900)
    assert features, "the bundled model finds buildings, roads and earthworks in the Atlanta tile"

    # flags in the list and on the map, one each
    assert pg.locator("#flag-list tr[data-id]").count() == len(features)
    assert _visible_flags(pg) == len(features)
    # a flag lies where its coordinates say: its SVG box (pixels) matches the geometry mapped by the grid
    first = features[0]
    a, b, c, d, e, f = grid["transform"]
    xs = [x for ring in first["geometry"]["coordinates"] for x, _ in ring] if first["geometry"]["type"] == "Polygon" else None
    if xs is not None:
        box = pg.eval_on_selector(f'#flags-svg path.flag[data-id="{first["properties"]["id"]}"]', "p => { const b = p.getBBox(); return [b.x, b.width]; }")
        assert box[0] == pytest.approx((min(xs) - c) / a, abs=0.5)
        assert box[0] + box[1] == pytest.approx((max(xs) - c) / a, abs=0.5)

    # toggle a kind off and on again
    kinds = sorted({ft["properties"]["kind"] for ft in features})
    kind = max(kinds, key=lambda k: sum(ft["properties"]["kind"] == k for ft in features))
    n_kind = sum(ft["properties"]["kind"] == kind for ft in features)
    pg.uncheck(f'#kinds input[data-kind="{kind}"]')
    assert _visible_flags(pg, kind) == 0
    assert _visible_flags(pg) == len(features) - n_kind
    assert pg.locator(f'#flag-list tr[data-kind="{kind}"]:visible').count() == 0
    pg.check(f'#kinds input[data-kind="{kind}"]')
    assert _visible_flags(pg) == len(features)

    # clicking a flag in the list selects it and zooms in to it
    zoom_before = _stage_scale(pg)
    small = min(features, key=lambda ft: ft["properties"]["area_m2"] or 0)["properties"]["id"]
    pg.click(f'#flag-list tr[data-id="{small}"]')
    assert _stage_scale(pg) > zoom_before
    assert pg.get_attribute(f'#flags-svg path.flag[data-id="{small}"]', "class").split().count("selected") == 1

    # wheel zooms around the cursor; fit shows the whole image again
    pg.click("#fit-btn")
    fitted = _stage_scale(pg)
    box = pg.locator("#viewport").bounding_box()
    pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    pg.mouse.wheel(0, -400)
    pg.wait_for_function(f"window.landsentry.viewer.zoom > {fitted}")  # wheel() does not wait for the handler
    # dragging pans by the distance dragged
    tx, ty = pg.evaluate("[window.landsentry.viewer.tx, window.landsentry.viewer.ty]")
    pg.mouse.move(box["x"] + 300, box["y"] + 300)
    pg.mouse.down()
    pg.mouse.move(box["x"] + 380, box["y"] + 250, steps=4)
    pg.mouse.up()
    moved = pg.evaluate("[window.landsentry.viewer.tx, window.landsentry.viewer.ty]")
    assert moved == pytest.approx([tx + 80, ty - 50], abs=1)

    # the class layer the page decoded from classes.png equals the server's file, pixel for pixel
    png = urllib.request.urlopen(server + job["result"]["files"]["classes_png"]).read()
    served = np.asarray(Image.open(io.BytesIO(png)))
    hist_page = pg.evaluate("() => { const h = new Array(256).fill(0); for (const v of window.landsentry.viewer.ids) h[v]++; return h; }")
    assert hist_page == np.bincount(served.ravel(), minlength=256).tolist()

    # paint water with the brush across the middle of the view, then save as a sample
    pg.click("#fit-btn")
    pg.click(f'#class-picker button[data-class-id="{WATER}"]')
    assert pg.is_checked("#tool-paint")
    pg.eval_on_selector("#brush-size", "el => { el.value = '30'; el.dispatchEvent(new Event('input')); }")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    pg.mouse.move(cx - 120, cy)
    pg.mouse.down()
    for step in range(1, 13):
        pg.mouse.move(cx - 120 + step * 20, cy + step * 5)
    pg.mouse.up()
    count_water = f"() => window.landsentry.viewer.ids.reduce((n, v) => n + (v === {WATER}), 0)"
    water_page = pg.evaluate(count_water)
    assert water_page > int((served == WATER).sum()), "painting added water pixels"
    assert int(pg.inner_text("#annotate-message").split()[0]) > 0  # "N pixel(s) changed"
    pg.screenshot(path=str(tmp_path / "annotate.png"))
    # a second stroke, erasing to ignore, taken back with undo
    pg.click('#class-picker button[data-class-id="255"]')
    pg.mouse.move(cx, cy - 150)
    pg.mouse.down()
    pg.mouse.move(cx + 100, cy - 150, steps=5)
    pg.mouse.up()
    assert pg.evaluate("() => window.landsentry.viewer.ids.includes(255)")
    pg.click("#undo-stroke")
    assert pg.evaluate(count_water) == water_page
    assert not pg.evaluate("() => window.landsentry.viewer.ids.includes(255)") or (served == 255).any()

    # the page's PNG encoder writes exactly its class-id array (decoded here by Pillow)
    png_b64, ids_b64 = pg.evaluate("""async () => {
        const { encodeIndexPng } = await import("./static/png.js");
        const v = window.landsentry.viewer;
        const b64 = (bytes) => { let s = ""; for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192)); return btoa(s); };
        const png = new Uint8Array(await (await encodeIndexPng(v.ids, v.width, v.height)).arrayBuffer());
        return [b64(png), b64(v.ids)];
    }""")
    encoded = Image.open(io.BytesIO(base64.b64decode(png_b64)))
    assert encoded.mode == "L" and encoded.size == (900, 900)
    assert np.array_equal(np.asarray(encoded).ravel(), np.frombuffer(base64.b64decode(ids_b64), np.uint8))

    pg.click("#save-sample")
    pg.wait_for_selector("#samples-list li[data-id]")
    assert pg.is_hidden("#error"), pg.inner_text("#error")
    samples = _get_json(server + "/v1/samples")["samples"]
    assert len(samples) == 1
    s = samples[0]
    assert (s["width"], s["height"]) == (900, 900)
    assert s["class_pixels"]["water"] == water_page  # the mask the page encoded arrived id for id
    assert job["id"] in s["source"]

    # delete it from the page
    pg.click(f'#samples-list li[data-id="{s["id"]}"] .delete-sample')
    pg.wait_for_selector(f'#samples-list li[data-id="{s["id"]}"]', state="detached")
    assert _get_json(server + "/v1/samples")["samples"] == []


def test_demo_pair_with_permits_shows_new_buildings(page, tmp_path):
    pg = page
    job = _interpret(pg, TILES / "demo_after.tif", TILES / "demo_before.tif", TILES / "demo_permits.geojson")
    props = [ft["properties"] for ft in job["result"]["flags"]["features"]]
    # exactly what `landsentry predict` gives (tests/test_demo_pair.py): four houses, the three outside the permits suspected
    assert [p["kind"] for p in props] == ["new_building"] * 4, props
    assert sum(p["suspected_illegal"] for p in props) == 3, props
    assert _visible_flags(pg, "new_building") == sum(p["kind"] == "new_building" for p in props)
    # suspected flags carry their reason in the list, and the filter keeps only them
    reasons = pg.locator("#flag-list tr.suspected td.reason").all_inner_texts()
    assert reasons and all("permitted parcel" in r or "before image" in r for r in reasons)
    pg.check("#suspected-only")
    assert _visible_flags(pg) == sum(p["suspected_illegal"] for p in props)
    # the before image can be shown under the same flags
    pg.select_option("#image-select", "before")
    assert pg.get_attribute(".stage img", "src").endswith("before.png")
    pg.screenshot(path=str(tmp_path / "pair.png"))


def test_api_errors_are_shown(page, tmp_path):
    pg = page
    junk = tmp_path / "notes.png"
    junk.write_text("this is not an image")
    pg.set_input_files("#file-after", str(junk))
    pg.click("#run-btn")
    pg.wait_for_selector("#error:not([hidden])")
    text = pg.inner_text("#error-text")
    assert "HTTP 4" in text and len(text) > 12, text  # the API's detail, not a bare status
    assert pg.is_hidden("#result-panel")
    # the status line under the form says it too, instead of staying at "uploading 0%"
    assert pg.inner_text("#job-message") == f"failed · {text}"
    assert pg.is_hidden("#job-cancel")


def test_a_running_job_is_cancelled_from_the_page(page, server, tmp_path, shared_file):
    """A scene large enough to run for a while (a sparse 6000x6000 GeoTIFF): Cancel stops it, the page says so."""
    pg = page
    pg.set_input_files("#file-after", str(sparse_scene(tmp_path / "scene.tif", shared_file, 6000)))
    with pg.expect_response(lambda r: r.url.endswith("/v1/interpret")) as response:
        pg.click("#run-btn")
    assert response.value.status == 202, response.value.text()
    job_id = response.value.json()["id"]
    pg.wait_for_function("document.getElementById('job-message').textContent.startsWith('running')", timeout=JOB_WAIT_MS)
    assert pg.is_visible("#job-cancel")
    with pg.expect_response(lambda r: r.url.endswith(f"/v1/jobs/{job_id}/cancel")) as cancelled:
        pg.click("#job-cancel")
    assert cancelled.value.status == 200
    pg.wait_for_function("document.getElementById('job-message').textContent === 'cancelled'")
    assert pg.is_hidden("#job-cancel") and pg.is_hidden("#error") and pg.is_hidden("#result-panel")
    assert _get_json(f"{server}/v1/jobs/{job_id}")["status"] == "cancelled"


def test_model_versions_listed_with_active(page):
    pg = page
    models = pg.locator("#models-list .model[data-id]")
    assert models.count() >= 1
    assert pg.locator("#models-list .model.active .badge").count() == 1


def test_retrain_from_page_samples_then_activate_and_roll_back(page, server):
    pg = page
    job = _interpret(pg, TILES / "demo_after.tif")
    first_model = _get_json(server + "/v1/models")["active"]
    # two annotated samples, so one can be held out and the new version gets scores
    pg.click(f'#class-picker button[data-class-id="{WATER}"]')
    box = pg.locator("#viewport").bounding_box()
    for dy in (-60, 60):
        y = box["y"] + box["height"] / 2 + dy
        pg.mouse.move(box["x"] + box["width"] / 2 - 80, y)
        pg.mouse.down()
        pg.mouse.move(box["x"] + box["width"] / 2 + 80, y, steps=8)
        pg.mouse.up()
        n = pg.locator("#samples-list li[data-id]").count()
        pg.click("#save-sample")
        pg.wait_for_function(f"document.querySelectorAll('#samples-list li[data-id]').length === {n + 1}")
    assert all(job["id"] in s["source"] for s in _get_json(server + "/v1/samples")["samples"])

    # the smallest retraining the API allows: one epoch of one step
    pg.fill("#epochs", "1")
    pg.fill("#steps", "1")
    pg.click("#train-btn")
    pg.wait_for_function("document.getElementById('train-message').textContent.startsWith('done')", timeout=JOB_WAIT_MS)
    assert pg.is_hidden("#error"), pg.inner_text("#error")
    models = _get_json(server + "/v1/models")["models"]
    new = next(m for m in models if m["id"] != first_model)
    assert new["parent"] == first_model
    card = pg.locator(f'#models-list .model[data-id="{new["id"]}"]')
    assert "mIoU" in card.inner_text()

    # activate the new version from the page, then roll back to the first one
    card.locator("button.activate").click()
    pg.wait_for_selector(f'#models-list .model.active[data-id="{new["id"]}"]')
    assert _get_json(server + "/v1/health")["model"]["id"] == new["id"]
    pg.locator(f'#models-list .model[data-id="{first_model}"] button.activate').click()
    pg.wait_for_selector(f'#models-list .model.active[data-id="{first_model}"]')
    assert _get_json(server + "/v1/models")["active"] == first_model


def test_token_field_authorizes_mutating_requests(browser, tmp_path):
    """With LANDSENTRY_TOKEN set, the page's requests need the token typed into its field."""
    with _serve(tmp_path / "data", LANDSENTRY_TOKEN="s3cret-token") as base:
        context, pg, errors = _open(browser, base)  # GETs need no token: the page loads
        try:
            pg.click("#train-btn")
            pg.wait_for_selector("#error:not([hidden])")
            assert "HTTP 401" in pg.inner_text("#error-text")
            pg.fill("#token", "s3cret-token")
            pg.click("#train-btn")
            # past the token check, the API refuses for the next reason: nothing to train on
            pg.wait_for_function("document.getElementById('error-text').textContent.includes('HTTP 409')")
            assert "sample" in pg.inner_text("#error-text")
        finally:
            context.close()
        assert not errors, errors


def test_example_button_interprets_the_demo_pair(page):
    """The sample tiles are ready in the page: one click fetches the demo pair and its permits and interprets them."""
    pg = page
    with pg.expect_response(lambda r: r.url.endswith("/v1/interpret")) as response:
        pg.click("#examples button[data-example=demo-pair]")
    assert response.value.status == 200, response.value.text()
    pg.wait_for_selector("#result-panel:not([hidden])", timeout=JOB_WAIT_MS)
    job = pg.evaluate("window.landsentry.state.job")
    assert job["kind"] == "pair"
    props = [ft["properties"] for ft in job["result"]["flags"]["features"]]
    assert any(p["kind"] == "new_building" and p["suspected_illegal"] for p in props), props
    assert _visible_flags(pg, "new_building") == sum(p["kind"] == "new_building" for p in props)


# ---- annotation tools: polygon, region fill, segment fill, unknown, partial annotation ----------------

BUILDING, ROAD, IGNORE = 1, 2, 255


def _to_screen(pg, x: float, y: float) -> tuple[float, float]:
    """Client coordinates of image point (x, y) at the viewer's current zoom and pan."""
    box = pg.locator("#viewport").bounding_box()
    zoom, tx, ty = pg.evaluate("[window.landsentry.viewer.zoom, window.landsentry.viewer.tx, window.landsentry.viewer.ty]")
    return box["x"] + tx + x * zoom, box["y"] + ty + y * zoom


def _page_array(pg, expr: str, dtype=np.uint8) -> np.ndarray:
    b64 = pg.evaluate(f"""() => {{ const a = {expr}; const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
        let s = ""; for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192)); return btoa(s); }}""")
    return np.frombuffer(base64.b64decode(b64), dtype)


def _interior(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of `mask` farthest from its edge, at least 4 px inside (a click there cannot miss)."""
    depth = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="chessboard")[1:-1, 1:-1]
    y, x = np.unravel_index(int(depth.argmax()), mask.shape)
    assert depth[y, x] >= 4, "no region wide enough to click into"
    return int(x), int(y)


def _draw_polygon(pg, points, close_with_enter: bool) -> list[list[float]]:
    for x, y in points:
        pg.mouse.click(*_to_screen(pg, x, y))
    if close_with_enter:
        pg.keyboard.press("Enter")
    else:
        pg.mouse.click(*_to_screen(pg, *points[0]))  # the first vertex again closes it
    drawn = pg.evaluate("window.landsentry.viewer.lastPolygon")
    assert len(drawn) == len(points) and np.allclose(drawn, points, atol=1.0), drawn  # vertices where clicked
    return drawn


def _centres_inside(vertices, width: int, height: int) -> np.ndarray:
    """Pixels whose centre is inside the polygon (shapely), refusing a test layout with a centre on an edge."""
    polygon = Polygon(vertices)
    rows, cols = np.mgrid[0:height, 0:width]
    points = shapely.points(cols + 0.5, rows + 0.5)
    assert shapely.distance(polygon.exterior, points).min() > 1e-6, "a pixel centre lies on the polygon's edge"
    return shapely.contains(polygon, points)


def _stored_mask(server_data: Path, sample_id: str) -> np.ndarray:
    return np.asarray(Image.open(server_data / "samples" / "masks" / f"{sample_id}.png"))


def _save(pg) -> str:
    n = pg.locator("#samples-list li[data-id]").count()
    pg.click("#save-sample")
    pg.wait_for_function(f"document.querySelectorAll('#samples-list li[data-id]').length === {n + 1}")
    assert pg.is_hidden("#error"), pg.inner_text("#error")
    return pg.locator("#samples-list li[data-id]").last.get_attribute("data-id")


def test_polygon_region_and_segment_fills_are_saved_pixel_for_pixel(page, server, server_data):
    pg = page
    job = _interpret(pg, TILES / "demo_after.tif")
    w, h = job["result"]["grid"]["width"], job["result"]["grid"]["height"]
    predicted = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(server + job["result"]["files"]["classes_png"]).read())))
    expected, painted = predicted.copy(), np.zeros_like(predicted, bool)

    # polygon tool [P], building [1]: click the corners, close on the first one
    pg.keyboard.press("p")
    pg.keyboard.press("1")
    assert pg.is_checked("#tool-polygon") and pg.get_attribute(f'#class-picker button[data-class-id="{BUILDING}"]', "aria-pressed") == "true"
    drawn = _draw_polygon(pg, [(0.12 * w, 0.15 * h), (0.47 * w, 0.21 * h), (0.41 * w, 0.55 * h), (0.17 * w, 0.43 * h)], False)
    inside = _centres_inside(drawn, w, h)
    expected[inside], painted[inside] = BUILDING, True
    assert pg.locator("#draw-svg circle").count() == 0  # the draft is gone once filled

    # unknown [U] is paintable: a triangle of ignore, closed with Enter
    pg.keyboard.press("u")
    drawn = _draw_polygon(pg, [(0.6 * w, 0.1 * h), (0.9 * w, 0.2 * h), (0.7 * w, 0.35 * h)], True)
    inside = _centres_inside(drawn, w, h)
    expected[inside], painted[inside] = IGNORE, True

    # region fill [R], water [5]: one click sets a whole predicted region (4-connected pixels of one class)
    pg.keyboard.press("r")
    pg.keyboard.press(str(WATER))
    regions = [ndimage.label(predicted == c)[0] + 0 for c in np.unique(predicted)]
    sizes = [(np.bincount(lab.ravel())[1:].max(), i) for i, lab in enumerate(regions)]
    lab = regions[max(sizes)[1]]
    region = lab == np.bincount(lab.ravel())[1:].argmax() + 1
    x, y = _interior(region)
    pg.mouse.click(*_to_screen(pg, x + 0.5, y + 0.5))
    expected[region], painted[region] = WATER, True

    # segment fill [S], road [2]: one click sets a whole image segment (SLIC, computed by the server)
    pg.keyboard.press("s")
    pg.keyboard.press(str(ROAD))
    pg.wait_for_function("window.landsentry.viewer.segments !== null")
    segments = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(f"{server}/v1/jobs/{job['id']}/segments?size=medium").read())))
    assert segments.shape == (h, w) and segments.dtype == np.uint16
    page_segments = _page_array(pg, "window.landsentry.viewer.segments", np.uint16)
    assert np.array_equal(page_segments, segments.ravel())  # decoded exactly from the 16-bit PNG
    segment = segments == np.bincount(segments.ravel()).argmax()
    x, y = _interior(segment)
    pg.mouse.click(*_to_screen(pg, x + 0.5, y + 0.5))
    expected[segment], painted[segment] = ROAD, True

    # a polygon taken back with undo (Ctrl+Z) changes nothing
    pg.keyboard.press("p")
    _draw_polygon(pg, [(0.5 * w, 0.6 * h), (0.8 * w, 0.65 * h), (0.6 * w, 0.9 * h)], True)
    pg.keyboard.press("Control+z")

    assert np.array_equal(_page_array(pg, "window.landsentry.viewer.ids").reshape(h, w), expected)
    assert np.array_equal(_page_array(pg, "window.landsentry.viewer.painted").reshape(h, w), painted)
    stats = pg.inner_text("#annotate-stats")
    area = painted.sum() * job["result"]["summary"]["pixel_area_m2"]
    assert stats.startswith(f"annotated {painted.sum()} px (") and "spent" in stats, stats
    assert (f"{area:.1f} m²" if area < 10_000 else f"{area / 10_000:.2f} ha") in stats

    # partial annotation: unpainted pixels are saved as ignore
    pg.check("#unpainted-ignore")
    partial_id = _save(pg)
    assert np.array_equal(_stored_mask(server_data, partial_id), np.where(painted, expected, IGNORE))
    # keep the prediction: the whole class layer as shown
    pg.check("#unpainted-keep")
    full_id = _save(pg)
    assert np.array_equal(_stored_mask(server_data, full_id), expected)
    samples = {s["id"]: s for s in _get_json(server + "/v1/samples")["samples"]}
    assert samples[partial_id]["class_pixels"]["ignore"] == int((~painted | (expected == IGNORE)).sum())

    for sample_id in (partial_id, full_id):  # leave the module's sample list as it was
        pg.click(f'#samples-list li[data-id="{sample_id}"] .delete-sample')
        pg.wait_for_selector(f'#samples-list li[data-id="{sample_id}"]', state="detached")


def test_tool_pixel_rules_match_shapely_and_scipy(page):
    """tools.js in the browser: polygon fills are the pixel centres inside (shapely), for concave polygons
    reaching past the image; region fills are scipy's 4-connected components."""
    pg = page
    rng = np.random.default_rng(7)
    w, h = 120, 90
    polygons = []
    for _ in range(12):  # star-shaped, so simple (valid) but concave; some corners outside the image
        n = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(5, 70, n)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        polygons.append([[float(cx + r * np.cos(a)), float(cy + r * np.sin(a))] for a, r in zip(angles, radii)])
    labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
    labels[20:60, 30:90] = 1  # one big region among the noise
    seeds = [(45, 35), (0, 0), (119, 89), (70, 10)]
    result = pg.evaluate("""async ([polygons, labels, w, h, seeds]) => {
        const { polygonPixels, regionPixels } = await import("./static/tools.js");
        const grid = Uint8Array.from(labels);
        return { polygons: polygons.map((p) => Array.from(polygonPixels(p, w, h))),
                 regions: seeds.map(([x, y]) => Array.from(regionPixels(grid, w, h, x, y))) };
    }""", [polygons, labels.ravel().tolist(), w, h, seeds])
    for vertices, got in zip(polygons, result["polygons"]):
        expected = np.flatnonzero(_centres_inside(vertices, w, h).ravel())
        assert sorted(got) == expected.tolist()
    for (x, y), got in zip(seeds, result["regions"]):
        components = ndimage.label(labels == labels[y, x])[0]
        assert sorted(got) == np.flatnonzero(components.ravel() == components[y, x]).tolist()
