"""`landsentry batch` end to end on Dask LocalClusters of 2 worker processes, on real scenes.

Thirteen scenes: the NAIP 2010/2020 pair and four overlapping tiles of it (GeoTIFF pairs), the
SpaceNet Atlanta tile and four overlapping tiles of it, a LEVIR-CD and a SZTAKI pair (PNG, with a
gsd), and a truncated copy of the SpaceNet file. The sharp test checkpoint (random weights, confident
head) gives real flags where the tiles overlap, so the register has copies to leave out.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.warp import transform_geom
from rasterio.windows import Window

from landsentry.models.nn.checkpoint import sha256_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAIP_BEFORE = "naip_pair/m_4709963_se_14_1_20100629.tif"
NAIP_AFTER = "naip_pair/m_4709963_se_14_1_20200831.tif"
SPACENET = "spacenet_atlanta/sample_geotiff.tif"
LEVIR = "levir_cd/test/{}/test_102_0512_0000.png"
SZTAKI = "sztaki_airchange/Szada_1/{}.png"
NAIP_TILES = [Window(c, r, 544, 416) for r in (0, 307) for c in (0, 390)]  # of 934 x 723: 154 x 109 px shared
SPACENET_TILES = [Window(c, r, 512, 512) for r in (0, 388) for c in (0, 388)]  # of 900 x 900: 124 px shared
GOOD = ["naip", *[f"naip_t{i}" for i in range(4)], "spacenet", *[f"spacenet_t{i}" for i in range(4)], "levir", "sztaki"]
SIX = GOOD[:6]  # the NAIP pair, its tiles and the SpaceNet tile: enough to keep both workers busy when one is killed
SHARED_OPTIONS = ["--tile", "256", "--threads", "1", "--quiet"]
ENGINE = ["--workers", "2", "--dashboard", "none"]


def crop(source: Path, target: Path, window: Window) -> Path:
    """A tiled GeoTIFF copy of part of a real scene, with its georeferencing."""
    with rasterio.open(source) as ds:
        profile = {**ds.profile, "width": window.width, "height": window.height, "transform": ds.window_transform(window),
                   "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
        with rasterio.open(target, "w", **profile) as out:
            out.write(ds.read(window=window))
    return target


@pytest.fixture(scope="module")
def scenes(shared_file, tmp_path_factory) -> dict:
    """id -> {after, before, gsd}; and the manifest (generated files by relative path) with the corrupt scene last."""
    root = tmp_path_factory.mktemp("province")
    naip_b, naip_a, spacenet = shared_file(NAIP_BEFORE), shared_file(NAIP_AFTER), shared_file(SPACENET)
    table = {"naip": {"after": naip_a, "before": naip_b}, "spacenet": {"after": spacenet}}
    for i, window in enumerate(NAIP_TILES):
        table[f"naip_t{i}"] = {"after": crop(naip_a, root / f"naip_t{i}_20200831.tif", window),
                               "before": crop(naip_b, root / f"naip_t{i}_20100629.tif", window)}
    for i, window in enumerate(SPACENET_TILES):
        table[f"spacenet_t{i}"] = {"after": crop(spacenet, root / f"spacenet_t{i}.tif", window)}
    table["levir"] = {"after": shared_file(LEVIR.format("B")), "before": shared_file(LEVIR.format("A")), "gsd": 0.5}
    table["sztaki"] = {"after": shared_file(SZTAKI.format("B")), "before": shared_file(SZTAKI.format("A")), "gsd": 1.5}
    (root / "corrupt.tif").write_bytes(spacenet.read_bytes()[:20000])
    table["corrupt"] = {"after": root / "corrupt.tif"}
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "after", "before", "gsd"])
        for scene_id, s in table.items():
            relative = [os.path.relpath(p, root) if p is not None and root in p.parents else p for p in (s["after"], s.get("before"))]
            writer.writerow([scene_id, *(p or "" for p in relative), s.get("gsd", "")])
    return {"table": table, "manifest": root / "manifest.csv", "root": root}


def read_report(outdir: Path) -> dict:
    return json.loads((outdir / "report.json").read_text())


def ledger_lines(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "ledger.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def first(scenes, sharp_checkpoint, cli, tmp_path_factory) -> dict:
    outdir = tmp_path_factory.mktemp("batch") / "out"
    code, out, err = cli(["batch", scenes["manifest"], "-o", outdir, "--checkpoint", sharp_checkpoint, *SHARED_OPTIONS, *ENGINE])
    assert "Traceback" not in err, err
    return {"code": code, "stdout": out, "outdir": outdir, "report": read_report(outdir), "ledger": ledger_lines(outdir)}


def test_every_good_scene_is_done_and_the_corrupt_one_fails_alone(first, scenes, sharp_checkpoint):
    report, outdir = first["report"], first["outdir"]
    assert first["code"] == 1  # some scene failed
    assert report["scenes"] == {"total": 13, "done": 12, "failed": 1, "skipped": 0, "done_in_outdir": 12, "failed_in_outdir": 1}
    [failure] = report["failed"]
    assert failure["id"] == "corrupt" and "corrupt.tif could not be read" in failure["reason"]
    assert f"failed: corrupt: {failure['reason']}" in first["stdout"]
    assert sorted(p.name for p in (outdir / "scenes").iterdir()) == sorted(GOOD)  # no folder for it, no work folders left
    records = {r["id"]: r for r in first["ledger"]}
    assert records["corrupt"]["status"] == "failed" and records["corrupt"]["permanent"] is True
    digest = sha256_file(sharp_checkpoint)
    for scene_id in GOOD:
        assert records[scene_id]["status"] == "done" and records[scene_id]["model_sha256"] == digest
        assert json.loads((outdir / "scenes" / scene_id / "scene.json").read_text())["model_sha256"] == digest
    with (outdir / "scenes.csv").open() as fh:
        rows = {row["id"]: row for row in csv.DictReader(fh)}
    assert list(rows) == list(scenes["table"])  # the manifest's order
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["reason"] == failure["reason"]
    assert rows["naip"]["after_date"] == "2020-08-31" and rows["naip"]["before_date"] == "2010-06-29"


def test_figures_count_the_area_and_each_worker(first):
    report = first["report"]
    area = {"naip": 934 * 723 * 25, "spacenet": 900 * 900 * 0.25, "levir": 256 * 256 * 0.25, "sztaki": 952 * 640 * 2.25}
    area.update({f"naip_t{i}": 544 * 416 * 25 for i in range(4)})
    area.update({f"spacenet_t{i}": 512 * 512 * 0.25 for i in range(4)})
    records = {r["id"]: r for r in first["ledger"]}
    for scene_id, m2 in area.items():
        assert records[scene_id]["area_km2"] == pytest.approx(m2 / 1e6, rel=1e-5), scene_id
    assert report["area_km2"] == pytest.approx(sum(area.values()) / 1e6, rel=1e-4)
    assert report["km2_per_min"] == pytest.approx(report["area_km2"] / report["processing_s"] * 60, rel=1e-2)
    workers = report["workers"]
    assert len(workers) == 2 and sum(w["scenes"] for w in workers) == 12
    assert sum(w["km2"] for w in workers) == pytest.approx(report["area_km2"], rel=1e-3)
    by_pid: dict[int, list[bool]] = {}
    for r in first["ledger"]:
        if "pid" in r:
            by_pid.setdefault(r["pid"], []).append(r["loaded_model"])
    assert len(by_pid) == 2 and all(loads.count(True) == 1 and loads[0] for loads in by_pid.values())  # once per worker process


def same_outputs(expected: Path, got: Path) -> None:
    """predict's folder and the batch's scene folder hold the same files with the same content (rasters by pixels)."""
    names = sorted(p.name for p in expected.iterdir())
    assert names == sorted(p.name for p in got.iterdir() if p.name != "scene.json")
    for name in names:
        a, b = expected / name, got / name
        if name.endswith(".tif"):
            with rasterio.open(a) as da, rasterio.open(b) as db:
                assert (da.crs, da.transform, da.nodata) == (db.crs, db.transform, db.nodata), name
                assert np.array_equal(da.read(), db.read()), name
        elif name.endswith(".json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text()), name
        else:
            assert a.read_bytes() == b.read_bytes(), name


@pytest.mark.parametrize("scene_id", GOOD)
def test_each_scene_equals_predict(scene_id, scenes, first, sharp_checkpoint, cli, tmp_path):
    s = scenes["table"][scene_id]
    extra = (["--before", s["before"]] if "before" in s else []) + (["--gsd", s["gsd"]] if "gsd" in s else [])
    code, _, err = cli(["predict", s["after"], "-o", tmp_path / "p", "--checkpoint", sharp_checkpoint, *SHARED_OPTIONS, *extra])
    assert code == 0, err
    same_outputs(tmp_path / "p", first["outdir"] / "scenes" / scene_id)


def scene_flags(outdir: Path, scene_id: str) -> tuple[list[dict], list]:
    collection = json.loads((outdir / "scenes" / scene_id / "flags.geojson").read_text())
    crs = collection.get("crs", {}).get("properties", {}).get("name")
    geoms = [shapely.geometry.shape(transform_geom(crs, "EPSG:4326", f["geometry"])) if crs else None for f in collection["features"]]
    return [f["properties"] for f in collection["features"]], geoms


def copies(a, b) -> bool:
    return a.intersects(b) and a.intersection(b).area >= 0.5 * min(a.area, b.area)


def test_the_register_holds_every_flag_once(first):
    outdir, report = first["outdir"], first["report"]
    path = outdir / "flags.gpkg"
    info = pyogrio.read_info(path, layer="flags")
    assert info["crs"] == "EPSG:4326" and info["geometry_type"] == "MultiPolygon"
    meta, _, wkb, columns = pyogrio.raw.read(path, layer="flags")
    rows = [dict(zip(meta["fields"], values)) for values in zip(*columns)]
    geoms = [shapely.from_wkb(g) if g is not None else None for g in wkb]
    with sqlite3.connect(path) as db:  # a second reader of the same file: plain SQLite
        assert db.execute("SELECT count(*) FROM flags").fetchone()[0] == len(rows) == report["register"]["flags"]
    keys = [(r["scene_id"], int(r["flag_id"])) for r in rows]
    assert len(set(keys)) == len(keys)
    kept = dict(zip(keys, zip(rows, geoms)))
    total, left_out = 0, []
    for scene_id in GOOD:
        props, originals = scene_flags(outdir, scene_id)
        total += len(props)
        for p, g in zip(props, originals):
            if (scene_id, p["id"]) not in kept:
                left_out.append((scene_id, p["kind"], g))
                continue
            row, geom = kept[(scene_id, p["id"])]
            assert (row["kind"], bool(row["suspected_illegal"]), row["reason"]) == (p["kind"], p["suspected_illegal"], p["reason"])
            assert row["area_m2"] == pytest.approx(p["area_m2"]) and row["confidence"] == pytest.approx(p["confidence"])
            if g is None:
                assert geom is None and scene_id in ("levir", "sztaki")
            else:
                assert geom.symmetric_difference(g).area <= 1e-6 * g.area
    assert report["register"]["duplicates_dropped"] == len(left_out) > 0 and total == len(rows) + len(left_out)
    located = [(r["scene_id"], r["kind"], g) for r, g in zip(rows, geoms) if g is not None]
    tree = shapely.STRtree([g for _, _, g in located])
    for i, j in zip(*tree.query([g for _, _, g in located], predicate="intersects")):
        (si, ki, gi), (sj, kj, gj) = located[i], located[j]
        assert not (si != sj and ki == kj and copies(gi, gj)), f"{si} and {sj} both keep one {ki}"
    for scene_id, kind, g in left_out:  # a copy is left out only for one that is kept
        assert any(s != scene_id and k == kind and copies(g, h) for s, k, h in located), (scene_id, kind)


def test_register_dates_and_province_summary(first):
    outdir, report = first["outdir"], first["report"]
    meta, _, _, columns = pyogrio.raw.read(outdir / "flags.gpkg", layer="flags")
    rows = [dict(zip(meta["fields"], values)) for values in zip(*columns)]
    naip = [r for r in rows if r["scene_id"].startswith("naip")]
    assert naip and all((r["after_date"], r["before_date"]) == ("2020-08-31", "2010-06-29") for r in naip)
    assert all(r["kind"].startswith("new_") for r in naip) and all(not r["kind"].startswith("new_") for r in rows if r["scene_id"].startswith("spacenet"))
    with (outdir / "province_summary.csv").open() as fh:
        province = {row["kind"]: row for row in csv.DictReader(fh)}
    for kind, row in province.items():
        mine = [r for r in rows if r["kind"] == kind]
        assert int(row["count"]) == len(mine)
        assert float(row["area_m2"]) == pytest.approx(sum(r["area_m2"] for r in mine), abs=0.1 * max(1, len(mine)))
        assert int(row["suspected_illegal_count"]) == sum(bool(r["suspected_illegal"]) for r in mine)
    assert {r["kind"]: r["count"] for r in report["province"]} == {k: int(v["count"]) for k, v in province.items()}
    scenes_meta, _, footprints, scene_columns = pyogrio.raw.read(outdir / "flags.gpkg", layer="scenes")
    layer = dict(zip(scene_columns[0], footprints))
    assert set(layer) == set(GOOD) and layer["levir"] is None and layer["sztaki"] is None
    assert shapely.from_wkb(layer["naip"]).contains(shapely.from_wkb(layer["naip_t3"]).buffer(-1e-6))


def test_rerun_skips_every_scene(first, scenes, sharp_checkpoint, cli):
    outdir = first["outdir"]
    before = {p.name: p.stat().st_mtime_ns for p in (outdir / "scenes").glob("*/summary.json")}
    code, out, err = cli(["batch", scenes["manifest"], "-o", outdir, "--checkpoint", sharp_checkpoint, *SHARED_OPTIONS, *ENGINE])
    assert code == 1 and "Traceback" not in err  # the corrupt scene is still failed
    assert "nothing to run" in out
    report = read_report(outdir)
    assert report["scenes"] == {"total": 13, "done": 0, "failed": 0, "skipped": 13, "done_in_outdir": 12, "failed_in_outdir": 1}
    assert report["cluster"]["scheduler"] is None  # no cluster was started
    assert len(ledger_lines(outdir)) == len(first["ledger"])
    assert {p.name: p.stat().st_mtime_ns for p in (outdir / "scenes").glob("*/summary.json")} == before
    assert report["register"]["flags"] == first["report"]["register"]["flags"]


def test_touching_one_input_redoes_only_that_scene(first, scenes, sharp_checkpoint, cli):
    outdir = first["outdir"]
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in (outdir / "scenes").glob("*/summary.json")}
    touched = scenes["table"]["naip_t1"]["before"]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    code, _, err = cli(["batch", scenes["manifest"], "-o", outdir, "--checkpoint", sharp_checkpoint, *SHARED_OPTIONS, *ENGINE])
    assert code == 1, err
    report = read_report(outdir)
    assert report["scenes"]["done"] == 1 and report["scenes"]["skipped"] == 12
    assert [r["id"] for r in ledger_lines(outdir)[len(first["ledger"]):]] == ["naip_t1"]
    now = {p.parent.name: p.stat().st_mtime_ns for p in (outdir / "scenes").glob("*/summary.json")}
    assert [k for k in stamps if now[k] != stamps[k]] == ["naip_t1"]


@pytest.fixture
def own_cluster():
    """A cluster the test starts and the batch joins, so the test knows (and can kill) its worker processes."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield cluster, client


def test_a_killed_worker_loses_no_scene(scenes, sharp_checkpoint, own_cluster, tmp_path):
    cluster, client = own_cluster
    header, *rows = scenes["manifest"].read_text().splitlines()
    (scenes["root"] / "six.csv").write_text("\n".join([header, *(r for r in rows if r.split(",")[0] in SIX)]) + "\n")
    outdir = tmp_path / "out"
    command = [sys.executable, "-m", "landsentry", "batch", scenes["root"] / "six.csv", "-o", outdir, "--checkpoint",
               sharp_checkpoint, "--scheduler", cluster.scheduler_address, *SHARED_OPTIONS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 300
        while not ((outdir / "ledger.jsonl").is_file() and (outdir / "ledger.jsonl").read_text().strip()):
            assert driver.poll() is None and time.time() < deadline, "the batch ended before its first scene"
            time.sleep(0.2)
        pids = client.run(os.getpid)
        busy = {w: list(tasks) for w, tasks in client.processing().items() if tasks}
        victim = sorted(busy)[0]
        os.kill(pids[victim], signal.SIGKILL)
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err
    assert "Traceback" not in err
    report = read_report(outdir)
    assert report["scenes"] == {"total": 6, "done": 6, "failed": 0, "skipped": 0, "done_in_outdir": 6, "failed_in_outdir": 0}
    records = {r["id"]: r for r in ledger_lines(outdir)}
    lost = [key.removeprefix("scene-").rsplit("-", 1)[0] for key in busy[victim]]
    assert lost and all(records[i]["status"] == "done" for i in lost)
    assert any(records[i]["pid"] != pids[victim] for i in lost)  # rerun elsewhere (unless it finished just before the kill)
    assert sorted(p.name for p in (outdir / "scenes").iterdir()) == sorted(SIX)  # no work folder of the lost attempt left
