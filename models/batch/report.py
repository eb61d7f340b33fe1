"""The figures of a batch, as files: report.json (what scripts read), scenes.csv (one row per scene) and
province_summary.csv (counts and areas per kind over the register), written atomically.

Throughput counts only the scenes this run interpreted: km² over the processing time (first
submission to last result, without starting the cluster), and per worker over the time it spent
in scenes. A worker process that died and came back has a new address, so it appears twice.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

from landsentry.models.analysis.flags import CSV_COLUMNS
from landsentry.models.batch.engine import Settled
from landsentry.models.batch.register import RegisterResult
from landsentry.models.batch.worker import SceneTask
from landsentry.models.vocabulary.atomic import write_atomic

REPORT = "report.json"
SCENES_CSV = "scenes.csv"
PROVINCE_CSV = "province_summary.csv"
SCENE_COLUMNS = ("id", "status", "this_run", "reason", "after", "before", "permits", "after_date", "before_date", "area_km2",
                 "flags", "flags_in_register", "suspected_illegal", "suspected_in_register", "seconds", "worker", "model_sha256")


def current_records(tasks: list[SceneTask], settled: Settled) -> dict[str, dict]:
    """Each scene's latest record, where it belongs to the scene's present inputs, model and settings."""
    records = settled.ledger.records
    return {t.scene.id: records[t.scene.id] for t in tasks
            if t.scene.id in records and records[t.scene.id].get("fingerprint") == t.fingerprint}


def _per_minute(amount: float, seconds: float) -> float | None:
    return round(amount / seconds * 60, 3) if seconds > 0 else None


def worker_figures(ran: list[dict]) -> list[dict]:
    """Scenes, busy seconds, km² and throughput per worker, from the records of the scenes it finished."""
    by_worker: dict[str, dict] = defaultdict(lambda: {"scenes": 0, "busy_s": 0.0, "km2": 0.0})
    for record in ran:
        if record.get("status") == "done":
            figures = by_worker[record["worker"]]
            figures["scenes"] += 1
            figures["busy_s"] += record.get("seconds") or 0.0
            figures["km2"] += record.get("area_km2") or 0.0
    return [{"worker": name, "scenes": f["scenes"], "busy_s": round(f["busy_s"], 2), "km2": round(f["km2"], 4),
             "scenes_per_min": _per_minute(f["scenes"], f["busy_s"]), "km2_per_min": _per_minute(f["km2"], f["busy_s"])}
            for name, f in sorted(by_worker.items())]


def build_report(tasks: list[SceneTask], settled: Settled, register: RegisterResult, about: dict) -> dict:
    """report.json's content; `about` adds the run's model, settings and paths."""
    current = current_records(tasks, settled)
    done = [r for r in settled.ran if r.get("status") == "done"]
    km2 = sum(r.get("area_km2") or 0.0 for r in done)
    failed = [{"id": i, "reason": r.get("reason", "")} for i, r in current.items() if r.get("status") == "failed"]
    return {
        **about,
        "scenes": {"total": len(tasks), "done": len(done), "failed": len(settled.ran) - len(done), "skipped": len(settled.skipped),
                   "done_in_outdir": sum(r.get("status") == "done" for r in current.values()), "failed_in_outdir": len(failed)},
        "area_km2": round(km2, 4),
        "processing_s": round(settled.processing_s, 2),
        "elapsed_s": round(settled.elapsed_s, 2),
        "scenes_per_min": _per_minute(len(done), settled.processing_s),
        "km2_per_min": _per_minute(km2, settled.processing_s),
        "workers": worker_figures(settled.ran),
        "cluster": settled.cluster,
        "failed": failed,
        "register": {"path": str(register.path), "crs": register.crs, "flags": register.flags,
                     "duplicates_dropped": register.duplicates_dropped,
                     "overlaps": ("flags of one kind from two scenes that overlap by at least half the smaller are copies; "
                                      "of each set of copies the one deepest inside its own scene is kept")},
        "province": register.province,
    }


def _csv_text(columns: tuple[str, ...], rows: list[dict]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return out.getvalue().encode()


def scene_rows(tasks: list[SceneTask], settled: Settled, register: RegisterResult) -> list[dict]:
    current = current_records(tasks, settled)
    ran = {r["id"] for r in settled.ran}
    rows = []
    for task in tasks:
        scene, record = task.scene, current.get(task.scene.id, {})
        rows.append({**record, **register.per_scene.get(scene.id, {}), "id": scene.id, "status": record.get("status", "not run"),
                     "this_run": "ran" if scene.id in ran else "skipped", "after": scene.after, "before": scene.before,
                     "permits": scene.permits, "after_date": scene.after_date, "before_date": scene.before_date})
    return rows


def write_reports(outdir: Path, tasks: list[SceneTask], settled: Settled, register: RegisterResult, about: dict) -> dict:
    """report.json, scenes.csv and province_summary.csv into OUTDIR; returns the report."""
    report = build_report(tasks, settled, register, about)
    write_atomic(outdir / SCENES_CSV, _csv_text(SCENE_COLUMNS, scene_rows(tasks, settled, register)))
    write_atomic(outdir / PROVINCE_CSV, _csv_text(CSV_COLUMNS, register.province))
    write_atomic(outdir / REPORT, (json.dumps(report, indent=1) + "\n").encode())
    return report
