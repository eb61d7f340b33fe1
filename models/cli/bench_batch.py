"""`landsentry bench-batch MANIFEST -o WORKDIR`: what the Dask engine gives and costs on this machine.

The same scenes, model and options run several ways, each into a fresh folder of WORKDIR: a plain
loop in this process (the model loaded once, one scene after another, no Dask), then `landsentry
batch` on a LocalCluster of each of `--worker-counts` worker processes. For each it prints scenes/min
and km²/min over the processing time (first scene started to last one finished) and the whole
command's time (manifest, model check, cluster start, register and reports included), the time
(and CPU time) spent inside scenes and the share of the workers' time outside them (scheduling, and waiting for the
last scene), then the engine's overhead against the loop and the speed-up of more workers, with the
machine's load average (other processes share its cores). WORKDIR/bench.json holds the same figures. A benchmark, not a test: the figures vary with the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from landsentry.models.batch.cores import usable_cores
from landsentry.models.batch.ledger import LEDGER
from landsentry.models.batch.manifest import read_manifest
from landsentry.models.batch.worker import SCENES, run_scene
from landsentry.models.cli import batch
from landsentry.models.cli.options import check_common_options
from landsentry.models.vocabulary.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = batch.build_parser()
    p.prog, p.description = "landsentry bench-batch", __doc__
    p.add_argument("--worker-counts", default="1,2", help="local clusters to measure, by worker processes (default 1,2)")
    return p


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise InputError(f"--worker-counts takes numbers of worker processes like 1,2, not {text!r}")
    return counts


def _per_minute(amount: float, seconds: float) -> float | None:
    return round(amount / seconds * 60, 3) if seconds > 0 else None


def figures(name: str, workers: int | None, records: list[dict], processing_s: float, whole_s: float, threads: int | None) -> dict:
    """One run's figures from its scene records: throughput over the processing time, and the share of the
    workers' time not spent inside scenes (the engine's scheduling, plus workers waiting at the end)."""
    done = [r for r in records if r.get("status") == "done"]
    km2, busy = sum(r.get("area_km2") or 0.0 for r in done), sum(r.get("seconds") or 0.0 for r in records)
    cpu = sum(r.get("cpu_s") or 0.0 for r in records)
    return {"run": name, "workers": workers, "threads_per_worker": threads, "scenes_done": len(done), "km2": round(km2, 4),
            "processing_s": round(processing_s, 2), "whole_s": round(whole_s, 2), "in_scenes_s": round(busy, 2), "cpu_in_scenes_s": round(cpu, 2),
            "idle_pct": round(100 * (1 - busy / (processing_s * (workers or 1))), 1) if processing_s > 0 else None,
            "scenes_per_min": _per_minute(len(done), processing_s), "km2_per_min": _per_minute(km2, processing_s)}


def plain_loop(args: argparse.Namespace, outdir: Path) -> dict:
    """Every scene in this process, one after another, with the models loaded once: what a script without an engine does."""
    started = time.perf_counter()
    scenes = read_manifest(args.manifest, permits=args.permits, gsd=args.gsd)
    tasks, spec, _ = batch.make_tasks(argparse.Namespace(**{**vars(args), "workers": 1}), scenes, outdir)
    (outdir / SCENES).mkdir(parents=True)
    begin = time.perf_counter()
    records = [run_scene(task) for task in tasks]
    end = time.perf_counter()
    return figures("plain loop", None, records, end - begin, end - started, spec.threads)


def dask_run(args: argparse.Namespace, workers: int, outdir: Path) -> dict:
    """`landsentry batch` on a LocalCluster of `workers` processes, as a user runs it (without the progress bar)."""
    started = time.perf_counter()
    report = batch.execute(argparse.Namespace(**{**vars(args), "workers": workers, "outdir": outdir, "quiet": True, "dashboard": "none"}))
    whole = time.perf_counter() - started
    ledger = [json.loads(line) for line in (outdir / LEDGER).read_text().splitlines()]
    result = figures("dask LocalCluster", workers, ledger, report["processing_s"], whole, report["model"]["threads"])
    result["per_worker"] = [{k: w[k] for k in ("worker", "scenes", "km2", "km2_per_min")} for w in report["workers"]]
    return result


def print_table(rows: list[dict]) -> None:
    print(f"{'run':<18} {'workers':>7} {'threads':>7} {'scenes':>6} {'km²':>8} {'processing s':>12} {'in scenes s':>11} {'CPU s':>6} "
          f"{'idle %':>6} {'whole s':>7} {'scenes/min':>10} {'km²/min':>8}")
    for r in rows:
        print(f"{r['run']:<18} {r['workers'] or '-':>7} {r['threads_per_worker'] or '-':>7} {r['scenes_done']:>6} {r['km2']:>8.3f} "
              f"{r['processing_s']:>12.1f} {r['in_scenes_s']:>11.1f} {r['cpu_in_scenes_s']:>6.1f} {r['idle_pct'] or 0:>6.1f} {r['whole_s']:>7.1f} "
              f"{r['scenes_per_min'] or 0:>10.2f} {r['km2_per_min'] or 0:>8.2f}")
        for w in r.get("per_worker", []):
            print(f"{'':<20}{w['worker']}: {w['scenes']} scene(s), {w['km2_per_min'] or 0:.3f} km²/min while busy")


def comparisons(loop: dict, runs: list[dict]) -> dict:
    """The engine's cost against the loop (its 1-worker run, else its smallest) and each run's speed-up over that run."""
    base = min(runs, key=lambda r: r["workers"])
    out = {"against": f"{base['workers']} worker(s)",
           "overhead_processing_pct": round((base["processing_s"] / loop["processing_s"] - 1) * 100, 1),
           "overhead_whole_s": round(base["whole_s"] - loop["whole_s"], 2),
           "speedup": {str(r["workers"]): round(base["processing_s"] / r["processing_s"], 2) for r in runs}}
    return out


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_common_options(args)
    if args.workers is not None or args.scheduler is not None:
        raise InputError("bench-batch starts its own local clusters: give --worker-counts, not --workers or --scheduler")
    counts = worker_counts(args.worker_counts)
    workdir = args.outdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise InputError(f"{workdir} is not empty: a benchmark runs every scene, so -o must be a new or empty folder")
    batch.register_crs(args.crs)
    read_manifest(args.manifest, permits=args.permits, gsd=args.gsd)  # bad input stops here, before anything is written
    load_before = os.getloadavg()
    loop = plain_loop(args, workdir / "loop")
    runs = [dask_run(args, n, workdir / f"dask-{n}") for n in counts]
    load = {"cores": usable_cores(), "load_average_1min_before": round(load_before[0], 2), "load_average_1min_after": round(os.getloadavg()[0], 2)}
    print(f"machine: {load['cores']} usable cores, load average {load['load_average_1min_before']} before, "
          f"{load['load_average_1min_after']} after (other processes compete for the same cores)")
    print_table([loop, *runs])
    compared = comparisons(loop, runs)
    print(f"engine overhead against the plain loop ({compared['against']}): {compared['overhead_processing_pct']:+.1f} % "
          f"processing time, {compared['overhead_whole_s']:+.1f} s on the whole command")
    print("speed-up over it: " + ", ".join(f"{n} worker(s) {s:.2f}x" for n, s in compared["speedup"].items()))
    (workdir / "bench.json").write_text(json.dumps({"machine": load, "runs": [loop, *runs], "compared": compared}, indent=1) + "\n")
    print(f"figures: {workdir / 'bench.json'}")
    return 0
