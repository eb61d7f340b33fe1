"""Store records as the API shows them: links instead of paths, the page's file names, the active flag.

The routers return these dicts and FastAPI checks them against api/schemas.py; a train job's
result is stored in this shape too, so it reads the same after a restart.
"""
from __future__ import annotations

import json
from pathlib import Path

from landsentry.api.store import Store

CONTRACT_FILES = {  # the page's names for the files it uses -> file name in JOB/out (single, pair)
    "overlay": ("overlay.png", "overlay.png"),
    "after": ("after.png", "after.png"),
    "before": (None, "before.png"),
    "classes_png": ("classes.png", "classes.png"),
    "classes_tif": ("classes.tif", "after_classes.tif"),
    "flags": ("flags.geojson", "flags.geojson"),
    "flags_wgs84": ("flags.wgs84.geojson", "flags.wgs84.geojson"),
    "summary_csv": ("summary.csv", "summary.csv"),
}


def public_model(model: dict, active_id: str | None) -> dict:
    """A model version record (schemas.ModelVersion)."""
    return {"id": model["id"], "name": model["name"], "parent": model["parent"], "created": model["created"],
            "active": model["id"] == active_id, "job": model["job"], "data": model["data"], "metrics": model["metrics"]}


def public_sample(sample: dict) -> dict:
    """A sample record (schemas.Sample): its files stay private."""
    return {k: sample[k] for k in ("id", "width", "height", "class_pixels", "source", "created")}


def public_result(job_id: str, result: dict | None, job_dir: Path, kind: str | None, with_flags: bool) -> dict | None:
    """An interpretation's result (schemas.InterpretResult): links under /v1/jobs/ID/files/ and (optionally) the flags."""
    if result is None or "file_names" not in result:
        return result
    names = set(result["file_names"])
    column = 1 if kind == "pair" else 0
    base = f"/v1/jobs/{job_id}/files/"
    files = {key: base + pair[column] for key, pair in CONTRACT_FILES.items() if pair[column] in names}
    files["all"] = {name: base + name for name in sorted(names)}
    flags = None
    if with_flags and "flags.geojson" in names:
        flags = json.loads((job_dir / "out" / "flags.geojson").read_text())
    return {"flags": flags, "summary": result["summary"], "grid": result["grid"], "files": files, "model": result.get("model")}


def public_job(store: Store, job: dict, with_flags: bool = True) -> dict:
    """A job record (schemas.InterpretJob or schemas.TrainJob)."""
    result = job["result"]
    if job["type"] == "interpret":
        result = public_result(job["id"], result, store.job_dir(job["id"]), job["kind"], with_flags)
    elif result and result.get("model"):  # a train job: the version as it is now (active or not)
        model = store.get_model(result["model"]["id"])
        result = {**result, "model": public_model(model, store.active_model_id()) if model else result["model"]}
    return {"id": job["id"], "type": job["type"], "kind": job["kind"], "status": job["status"], "progress": job["progress"],
            "message": job["message"], "error": job["error"], "created": job["created"], "updated": job["updated"], "result": result}
