"""`landsentry batch` without a cluster: manifests in every form, bad input refused before anything starts,
the ledger's skip rule, and the register's rule for copies of one flag in overlapping scenes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyogrio.raw
import pytest
import shapely
from rasterio.crs import CRS

from landsentry.models.batch.cores import cgroup_cpu_limit, usable_cores
from landsentry.models.batch.ledger import Ledger, fingerprint
from landsentry.models.batch.manifest import Scene, read_manifest
from landsentry.models.batch.register import write_register
from landsentry.models.io.geojson import reproject, write_features
from landsentry.models.vocabulary.errors import InputError
from tests.serving import free_port

NAIP_BEFORE = "naip_pair/m_4709963_se_14_1_20100629.tif"
NAIP_AFTER = "naip_pair/m_4709963_se_14_1_20200831.tif"
SPACENET = "spacenet_atlanta/sample_geotiff.tif"


def test_csv_and_json_manifests_give_the_same_scenes(shared_file, tmp_path):
    before, after, spacenet = shared_file(NAIP_BEFORE), shared_file(NAIP_AFTER), shared_file(SPACENET)
    permits = tmp_path / "parcels.geojson"
    permits.write_text('{"type": "FeatureCollection", "features": []}')
    (tmp_path / "m.csv").write_text(f"id,after,before,permits,gsd,after_date\nnaip,{after},{before},parcels.geojson,,\n"
                                    f"atl,{spacenet},,,0.5,2019-07-01\n")
    (tmp_path / "m.json").write_text(json.dumps({"scenes": [
        {"id": "naip", "after": str(after), "before": str(before), "permits": "parcels.geojson"},
        {"id": "atl", "after": str(spacenet), "gsd": 0.5, "after_date": "20190701"}]}))
    expected = [Scene("naip", after, before, permits.resolve(), None, "2020-08-31", "2010-06-29"),
                Scene("atl", spacenet, None, None, 0.5, "2019-07-01", None)]
    assert read_manifest(tmp_path / "m.csv") == expected
    assert read_manifest(tmp_path / "m.json") == expected


def test_folders_of_images_and_of_pairs(shared_file, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    for name in ("b.tif", "a.TIF", "notes.txt", ".hidden.tif"):
        (single / name).write_bytes(b"x")
    assert [(s.id, s.after.name, s.before) for s in read_manifest(single, gsd=2.0)] == [("a", "a.TIF", None), ("b", "b.tif", None)]
    assert {s.gsd for s in read_manifest(single, gsd=2.0)} == {2.0}
    pairs = tmp_path / "pairs"
    for side in ("before", "after"):
        (pairs / side).mkdir(parents=True)
        (pairs / side / "x_20200101.tif").write_bytes(b"x")
    [scene] = read_manifest(pairs)
    assert (scene.id, scene.after.parent.name, scene.before.parent.name, scene.after_date) == ("x_20200101", "after", "before", "2020-01-01")
    (pairs / "after" / "lonely.tif").write_bytes(b"x")
    with pytest.raises(InputError, match=r"after/lonely.tif has no before/lonely\.\*"):
        read_manifest(pairs)


BAD_MANIFESTS = {
    "missing file": ("id,after\na,{after}\nb,nowhere.tif\n", "line 3: after file not found"),
    "duplicate id": ("id,after\na,{after}\nA,{after}\n", "duplicate id 'A' (also 'a')"),
    "no after": ("id,after,before\na,,{after}\n", "line 2: no 'after' image"),
    "bad gsd": ("id,after,gsd\na,{after},-3\n", "line 2: gsd must be a positive number"),
    "unknown column": ("id,after,befor\na,{after},x\n", "line 2: unknown column(s) befor"),
    "ragged row": ("id,after\na,{after},extra\n", "line 2: more values than the header has columns"),
    "bad id": ("id,after\n../up,{after}\n", "id '../up' must be letters"),
    "bad date": ("id,after,after_date\na,{after},yesterday\n", "after_date must be a date"),
    "empty": ("id,after\n", "it lists no scenes"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_stop_before_anything_starts(case, shared_file, tiny_checkpoint, cli, tmp_path):
    text, message = BAD_MANIFESTS[case]
    (tmp_path / "m.csv").write_text(text.format(after=shared_file(SPACENET)))
    code, out, err = cli(["batch", tmp_path / "m.csv", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint])
    assert code == 2 and message in err and "nothing was started" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_unreadable_manifests(tmp_path, cli):
    (tmp_path / "m.json").write_text("[{")
    (tmp_path / "list.json").write_text('[["a", "b.tif"]]')
    (tmp_path / "m.txt").write_text("")
    for name, message in (("m.json", "is not JSON"), ("list.json", "scene 1: not an object"), ("m.txt", "a .csv or .json file"),
                          ("absent.csv", "manifest not found")):
        code, _, err = cli(["batch", tmp_path / name, "-o", tmp_path / "out"])
        assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_scheduler_that_does_not_answer(shared_file, tiny_checkpoint, cli, tmp_path):
    (tmp_path / "m.csv").write_text(f"id,after\na,{shared_file(SPACENET)}\n")
    address = f"tcp://127.0.0.1:{free_port()}"
    code, _, err = cli(["batch", tmp_path / "m.csv", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint,
                        "--scheduler", address, "--connect-timeout", "2"])
    assert code == 2 and f"--scheduler {address} does not answer" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [(["--crs", "EPSG:0"], "--crs 'EPSG:0' is not a CRS"),
                                            (["--workers", "0"], "--workers must be at least 1"),
                                            (["--retries", "-1"], "--retries must be at least 0"),
                                            (["--tile", "100"], "--tile must be a multiple of 32")])
def test_bad_options(extra, message, shared_file, tiny_checkpoint, cli, tmp_path):
    (tmp_path / "m.csv").write_text(f"id,after\na,{shared_file(SPACENET)}\n")
    code, _, err = cli(["batch", tmp_path / "m.csv", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, *extra])
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_ledger_skips_what_is_settled_and_redoes_what_changed(tmp_path):
    image = tmp_path / "a.tif"
    image.write_bytes(b"x")
    scene = Scene("a", image)
    models, settings = {"segmentation": "abc"}, {"tile": 512}
    print_ = fingerprint(scene, models, settings)
    assert print_ == fingerprint(scene, models, settings)
    assert print_ != fingerprint(scene, {"segmentation": "abd"}, settings) != fingerprint(scene, models, {"tile": 256})
    ledger = Ledger(tmp_path)
    assert not ledger.skips(scene, print_)
    ledger.append({"id": "a", "fingerprint": print_, "status": "done"})
    assert not ledger.skips(scene, print_)  # done, but its folder is gone
    (tmp_path / "scenes" / "a").mkdir(parents=True)
    assert Ledger(tmp_path).skips(scene, print_)  # read back from the file
    ledger.append({"id": "a", "fingerprint": print_, "status": "failed", "permanent": False})
    assert not ledger.skips(scene, print_)  # a transient failure is tried again
    ledger.append({"id": "a", "fingerprint": print_, "status": "failed", "permanent": True})
    assert ledger.skips(scene, print_) and not ledger.skips(scene, print_, retry_failed=True)
    with (tmp_path / "ledger.jsonl").open("a") as fh:
        fh.write('{"id": "a", "fingerp')  # a line torn by a crash
    assert Ledger(tmp_path).records["a"]["permanent"] is True
    image.write_bytes(b"xy")
    assert fingerprint(scene, models, settings) != print_


def synthetic_scene(outdir: Path, scene_id: str, left: float, flags: list[shapely.Polygon]) -> dict:
    """A done scene of 100 x 100 m at x = left..left+100 (UTM 32616) with one building flag per polygon."""
    crs = CRS.from_epsg(32616)
    folder = outdir / "scenes" / scene_id
    folder.mkdir(parents=True)
    items = [({"id": i + 1, "kind": "building", "suspected_illegal": False, "reason": "", "area_m2": g.area, "confidence": 0.9,
               "before_class": None}, g) for i, g in enumerate(flags)]
    write_features(folder / "flags.geojson", items, crs)
    outline = shapely.box(500000 + left, 3700000, 500000 + left + 100, 3700100)
    footprint = reproject([shapely.segmentize(outline, 5)], crs, CRS.from_epsg(4326))[0]
    return {"id": scene_id, "status": "done", "crs": "EPSG:32616", "footprint_wgs84": shapely.to_wkt(footprint), "flags": len(flags)}


def test_copies_in_overlapping_scenes_are_kept_once_from_the_scene_that_sees_them_whole(tmp_path):
    # scene a covers x 0..100, scene b x 60..160 (metres from 500000); a building at x 90..110 crosses a's edge:
    # a sees its left part (90..100), b sees it whole and deeper inside (b's edge at 60 is 30 m away)
    x = 500000
    house = shapely.box(x + 90, 3700040, x + 110, 3700060)
    inner_a, shared = shapely.box(x + 10, 3700010, x + 20, 3700020), shapely.box(x + 70, 3700070, x + 80, 3700080)
    records = [synthetic_scene(tmp_path, "a", 0, [inner_a, house.intersection(shapely.box(x, 3700000, x + 100, 3700100)), shared]),
               synthetic_scene(tmp_path, "b", 60, [house, shared.buffer(0.5, join_style="mitre")])]
    result = write_register(tmp_path, records, CRS.from_epsg(32616))
    _, _, wkb, columns = pyogrio.raw.read(result.path, layer="flags")
    kept = sorted(zip(columns[0], columns[1]))
    # the cut-off piece gives way to b's whole house; the small shared square lies deeper in a (25 m from its edge) than in b (15 m)
    assert kept == [("a", 1), ("a", 3), ("b", 1)]
    assert result.flags == 3 and result.duplicates_dropped == 2
    assert result.per_scene == {"a": {"flags_in_register": 2, "suspected_in_register": 0}, "b": {"flags_in_register": 1, "suspected_in_register": 0}}
    house_row = [shapely.from_wkb(g) for g, s, i in zip(wkb, columns[0], columns[1]) if (s, i) == ("b", 1)][0]
    assert house_row.area == pytest.approx(400.0)


def test_a_containers_cpu_quota_caps_the_cores(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None  # no cgroup files: no limit known
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # Kubernetes limits.cpu: 2.5
    assert cgroup_cpu_limit(tmp_path) == 3
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert cgroup_cpu_limit(v1) == 4
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("extra, message", [(["--worker-counts", "1,x"], "--worker-counts takes numbers"),
                                            (["--worker-counts", "0"], "--worker-counts takes numbers"),
                                            (["--workers", "2"], "give --worker-counts, not --workers")])
def test_bench_batch_refuses_bad_options_before_it_starts(extra, message, shared_file, tiny_checkpoint, cli, tmp_path):
    (tmp_path / "m.csv").write_text(f"id,after\na,{shared_file(SPACENET)}\n")
    code, _, err = cli(["bench-batch", tmp_path / "m.csv", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, *extra])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_bench_batch_needs_an_empty_workdir(shared_file, tiny_checkpoint, cli, tmp_path):
    (tmp_path / "m.csv").write_text(f"id,after\na,{shared_file(SPACENET)}\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, _, err = cli(["bench-batch", tmp_path / "m.csv", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint])
    assert code == 2 and "is not empty" in err, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
