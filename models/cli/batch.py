"""`landsentry batch MANIFEST -o OUTDIR`: interpret a province's scenes on Dask distributed, resumably, into one flag register.

MANIFEST is a CSV or JSON of scenes (columns id, after, before, permits, gsd, after_date,
before_date; relative paths are read from the manifest's folder), a folder of images (one date
each, ids from the file names), or a folder holding before/ and after/ (pairs matched by name).
Each scene is interpreted exactly as `landsentry predict` would with the same options, into
OUTDIR/scenes/ID/. A rerun skips scenes already done with the same inputs, models and options.
OUTDIR also receives flags.gpkg (every flag once, in --crs), scenes.csv, province_summary.csv,
report.json and ledger.jsonl. Exit status: 0 every scene done, 1 some failed, 2 nothing started.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from rasterio.crs import CRS
from rasterio.errors import CRSError

from landsentry.models.batch.engine import Cluster, EngineOptions, Settled, available_cores, run_batch
from landsentry.models.batch.ledger import fingerprint
from landsentry.models.batch.manifest import Scene, read_manifest
from landsentry.models.batch.register import write_register
from landsentry.models.batch.report import current_records, write_reports
from landsentry.models.batch.worker import ModelSpec, SceneTask
from landsentry.models.cli.interpretation import (
    add_flag_options, add_model_options, change_checkpoint_path, change_params, flag_rules, parse_bands,
)
from landsentry.models.cli.options import check_common_options
from landsentry.models.nn.change_net import load_change_model
from landsentry.models.nn.checkpoint import load_checkpoint, sha256_file
from landsentry.models.vocabulary.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry batch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="CSV/JSON of scenes, a folder of images, or a folder with before/ and after/")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="folder for every scene's outputs, the register, the reports and the ledger")
    p.add_argument("--permits", type=Path, default=None, help="permitted parcels (GeoJSON) for every scene whose row names none")
    p.add_argument("--gsd", type=float, default=None, help="metres per pixel for PNG/JPEG scenes whose row gives none")
    p.add_argument("--crs", default="EPSG:4326", help="CRS of the merged flag register flags.gpkg (default EPSG:4326)")
    engine = p.add_argument_group("engine (Dask distributed)")
    engine.add_argument("--workers", type=int, default=None, help="worker processes of the local cluster (default: half the cores, at least 1)")
    engine.add_argument("--scheduler", default=None, help="join the existing cluster at this address (tcp://HOST:PORT) instead")
    engine.add_argument("--dashboard", default=":8787", help="the local cluster's dashboard address ('none': no dashboard)")
    engine.add_argument("--retries", type=int, default=2, help="attempts after the first for a scene that raised (default 2)")
    engine.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for --scheduler to answer (default 10)")
    engine.add_argument("--retry-failed", action="store_true", help="also redo scenes that failed by their own fault (corrupt files) with unchanged inputs")
    engine.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    add_flag_options(p.add_argument_group("two dates and flags"))
    return p


def register_crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise InputError(f"--crs {text!r} is not a CRS ({exc})") from None


def engine_options(args: argparse.Namespace) -> EngineOptions:
    for name in ("workers", "retries"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "workers" else 0):
            raise InputError(f"--{name} must be at least {1 if name == 'workers' else 0}")
    if not args.connect_timeout > 0:
        raise InputError("--connect-timeout must be a positive number of seconds")
    workers = args.workers or max(1, available_cores() // 2)
    dashboard = None if args.dashboard.lower() in ("none", "") else args.dashboard
    return EngineOptions(workers, args.scheduler, dashboard, args.retries, args.connect_timeout)


def model_spec(args: argparse.Namespace, change_path: Path | None, options: EngineOptions) -> ModelSpec:
    """The models, loaded once here so a bad checkpoint stops the batch before it starts, with their hashes."""
    checkpoint = load_checkpoint(args.checkpoint)
    if change_path is not None:
        load_change_model(change_path)
    threads = args.threads or (max(1, available_cores() // options.workers) if options.scheduler is None else None)
    resolved = change_path.resolve() if change_path is not None else None
    return ModelSpec(str(checkpoint.path.resolve()), sha256_file(checkpoint.path), str(resolved) if resolved else None,
                     sha256_file(resolved) if resolved else None, args.device, args.tile, args.overlap, args.batch_size,
                     args.backend, args.precision, threads, args.tta, args.working_gsd)


def make_tasks(args: argparse.Namespace, scenes: list[Scene], outdir: Path) -> tuple[list[SceneTask], ModelSpec, EngineOptions]:
    """One task per scene, with the fingerprint of exactly what decides its outputs (a one-date scene ignores the change model)."""
    options = engine_options(args)
    rules, params, bands = flag_rules(args), change_params(args), parse_bands(args.bands)
    pairs = any(s.before is not None for s in scenes)
    spec = model_spec(args, change_checkpoint_path(args, params) if pairs else None, options)
    common = {"rules": rules.as_dict(), "bands": bands, "wgs84": args.wgs84, "tile": args.tile, "overlap": args.overlap,
              "batch_size": args.batch_size, "backend": args.backend, "precision": args.precision, "device": args.device, "tta": args.tta,
              "working_gsd": args.working_gsd}
    tasks = []
    for scene in scenes:
        models, settings = {"segmentation": spec.checkpoint_sha256}, dict(common)
        if scene.before is not None:
            models["change"], settings["params"] = spec.change_sha256, asdict(params)
        tasks.append(SceneTask(scene, str(outdir), fingerprint(scene, models, settings), spec, rules, params,
                               tuple(bands) if bands else None, args.wgs84))
    return tasks, spec, options


class Progress:
    """What a person watches: the cluster, then a bar of scenes with the km² interpreted so far."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar, self.km2 = quiet, None, 0.0

    def start(self, cluster: Cluster | None, todo: int, skipped: int) -> None:
        if cluster is None:
            print(f"every scene is settled already ({skipped} skipped): nothing to run")
            return
        where = "a local cluster" if cluster.local else f"the cluster at {cluster.scheduler}"
        print(f"{todo} scene(s) to run on {where}, {skipped} skipped (settled before)")
        if cluster.dashboard:
            print(f"dashboard: {cluster.dashboard}")
        if not cluster.local and todo and not cluster.client.scheduler_info().get("workers"):
            print("the cluster has no workers yet: scenes wait until some join (Ctrl-C stops; finished scenes are kept)")
        if not self.quiet and todo:
            from tqdm import tqdm

            self.bar = tqdm(total=todo, unit="scene", desc="scenes")

    def result(self, record: dict, finished: int, total: int) -> None:
        self.km2 += record.get("area_km2") or 0.0
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.km2:.2f} km²", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_figures(report: dict) -> None:
    s = report["scenes"]
    print(f"scenes: {s['done']} done, {s['failed']} failed, {s['skipped']} skipped (of {s['total']}); "
          f"{report['area_km2']:.3f} km² in {report['processing_s']:.1f} s: "
          f"{report['scenes_per_min'] or 0:.2f} scenes/min, {report['km2_per_min'] or 0:.3f} km²/min")
    for w in report["workers"]:
        print(f"  {w['worker']}: {w['scenes']} scene(s), {w['km2']:.3f} km², {w['km2_per_min'] or 0:.3f} km²/min while busy")
    for failure in report["failed"]:
        print(f"failed: {failure['id']}: {failure['reason']}")
    r = report["register"]
    print(f"register: {r['path']} ({r['crs']}): {r['flags']} flag(s), {r['duplicates_dropped']} duplicate(s) in overlaps left out")


def execute(args: argparse.Namespace) -> dict:
    """The batch `args` describe, run to the end: the report (as report.json holds it). Bad input raises InputError first."""
    check_common_options(args)
    crs = register_crs(args.crs)
    scenes = read_manifest(args.manifest, permits=args.permits, gsd=args.gsd)
    outdir = args.outdir.resolve()
    tasks, spec, options = make_tasks(args, scenes, outdir)
    about = {"manifest": str(args.manifest.resolve()), "outdir": str(outdir), "model": asdict(spec)}

    def finish(settled: Settled) -> dict:
        register = write_register(outdir, [r for r in current_records(tasks, settled).values() if r.get("status") == "done"], crs)
        return write_reports(outdir, tasks, settled, register, about)

    progress = Progress(args.quiet)
    try:
        return run_batch(tasks, outdir, options, finish, args.retry_failed, progress.start, progress.result)
    finally:
        progress.close()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    report = execute(args)
    print_figures(report)
    print(f"report: {Path(report['outdir']) / 'report.json'}")
    return 0 if report["scenes"]["failed_in_outdir"] == 0 else 1
