"""What runs on a worker: one scene interpreted exactly as `predict` does it, into OUTDIR/scenes/ID, atomically.

The models are loaded once per worker process (`cached_models`) and reused for every scene it
runs; the file loaded is hashed and must match the hash the driver recorded, so a checkpoint
replaced mid-run can never mix two models in one register. Problems the scene itself causes (a
corrupt file, a pair that does not overlap, bad permits: every `LandsentryError`) come back as a
failed record and are not retried; anything else raises, so the engine retries it elsewhere.
Nothing here imports Dask: the benchmark's plain loop calls `run_scene` directly.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import shapely
import torch
from rasterio.crs import CRS

from landsentry.models.analysis.change import ChangeParams
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.analysis.interpret import interpret, open_inputs
from landsentry.models.analysis.polygons import area_m2
from landsentry.models.batch.cores import usable_cores
from landsentry.models.batch.manifest import Scene
from landsentry.models.inference.runner import ChangeRunner, Predictor
from landsentry.models.io.geojson import reproject
from landsentry.models.io.raster import RasterInfo
from landsentry.models.nn.change_net import load_change_model
from landsentry.models.nn.checkpoint import load_checkpoint, sha256_file
from landsentry.models.vocabulary.errors import CheckpointError, LandsentryError

WGS84 = CRS.from_epsg(4326)
SCENES = "scenes"
SCENE_RECORD = "scene.json"


@dataclass(frozen=True)
class ModelSpec:
    """Which models a worker runs and how: the checkpoints (with their hashes) and the window runner's settings."""

    checkpoint: str
    checkpoint_sha256: str
    change_checkpoint: str | None = None
    change_sha256: str | None = None
    device: str = "auto"
    tile: int = 512
    overlap: int | None = None
    batch_size: int | None = None
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    """Model threads; None: this worker's cores shared among the scenes it runs at once."""
    tta: bool = False
    working_gsd: float | None = None
    """As predict's --working-gsd: None, the checkpoint's working resolution; 0, never resample."""


@dataclass(frozen=True)
class SceneTask:
    """Everything a worker needs for one scene; plain data, so it travels to any worker."""

    scene: Scene
    outdir: str
    fingerprint: str
    model: ModelSpec
    rules: FlagRules = field(default_factory=FlagRules)
    params: ChangeParams = field(default_factory=ChangeParams)
    bands: tuple[int, ...] | None = None
    wgs84: bool = False


@dataclass
class LoadedModels:
    predictor: Predictor
    change_runner: ChangeRunner | None


_CACHE: dict[ModelSpec, LoadedModels] = {}
_CACHE_LOCK = threading.Lock()


def _verified(path: str, expected: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(f"{path} changed since the batch started (sha256 {actual[:12]}, expected {expected[:12]})")
    return path


def cached_models(spec: ModelSpec) -> tuple[LoadedModels, bool]:
    """This process's models for `spec` (loaded on first use, one set per process) and whether this call loaded them."""
    with _CACHE_LOCK:
        if spec in _CACHE:
            return _CACHE[spec], False
        _CACHE.clear()
        threads = spec.threads or _worker_threads()
        torch.set_num_threads(threads)
        checkpoint = load_checkpoint(_verified(spec.checkpoint, spec.checkpoint_sha256))
        predictor = Predictor(checkpoint, device=spec.device, tile=spec.tile, overlap=spec.overlap, batch_size=spec.batch_size,
                              backend=spec.backend, precision=spec.precision, threads=threads, tta=spec.tta,
                              working_gsd=spec.working_gsd)
        runner = None
        if spec.change_checkpoint is not None:
            model, ckpt = load_change_model(_verified(spec.change_checkpoint, spec.change_sha256 or ""))
            runner = ChangeRunner(model, ckpt, device=spec.device, tile=spec.tile, overlap=spec.overlap, batch_size=spec.batch_size)
        _CACHE[spec] = LoadedModels(predictor, runner)
        return _CACHE[spec], True


def footprint(info: RasterInfo) -> shapely.Polygon:
    """The analysis grid's outline in its own coordinates, with points along each edge so it bends true when reprojected."""
    t = info.transform
    corners = [t @ (0, 0), t @ (info.width, 0), t @ (info.width, info.height), t @ (0, info.height)]
    outline = shapely.Polygon(corners)
    return shapely.segmentize(outline, max(outline.length / 4 / 16, 1e-9))


def _worker_threads() -> int:
    """This process's cores divided by the scenes its Dask worker runs at once (1 outside Dask)."""
    cores = usable_cores()
    try:
        from distributed import get_worker

        return max(1, cores // max(1, get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return max(1, cores)


def _worker_name() -> str:
    """The Dask worker's address when running under one, else host:pid (the plain loop)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _publish(work: Path, target: Path) -> None:
    """Put the finished folder at `target`, replacing an earlier one with two renames (never a half folder)."""
    old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(work, target)
    shutil.rmtree(old, ignore_errors=True)


def run_scene(task: SceneTask) -> dict:
    """Interpret one scene into OUTDIR/scenes/ID; returns its ledger record (status 'done' or 'failed')."""
    started, cpu = time.time(), time.process_time()  # CPU seconds of this process: the scene's cost without other load
    scene = task.scene
    record = {"id": scene.id, "fingerprint": task.fingerprint, "worker": _worker_name(), "pid": os.getpid(),
              "model_sha256": task.model.checkpoint_sha256, "change_model_sha256": task.model.change_sha256,
              "after_date": scene.after_date, "before_date": scene.before_date}
    models, loaded = cached_models(task.model)
    record["loaded_model"] = loaded
    scenes = Path(task.outdir) / SCENES
    work = scenes / f".work-{scene.id}-{uuid.uuid4().hex[:8]}"
    try:
        predictor = models.predictor
        with open_inputs(scene.after, scene.before, scene.permits, channels=predictor.checkpoint.in_channels,
                         bands=list(task.bands) if task.bands else None, gsd=scene.gsd) as inputs:
            metric = inputs.metric
            result = interpret(inputs, work, predictor, models.change_runner if scene.before else None,
                               rules=task.rules, params=task.params, wgs84=task.wgs84)
        outline, crs = footprint(result.info), result.info.crs
        area = area_m2(outline, crs, metric)
        record.update(status="done", reason="", area_km2=None if area is None else round(area / 1e6, 6),
                      width=result.info.width, height=result.info.height, crs=crs.to_string() if crs else None,
                      footprint_wgs84=shapely.to_wkt(reproject([outline], crs, WGS84)[0], rounding_precision=9) if crs else None,
                      flags=len(result.flags), suspected_illegal=sum(f.suspected_illegal for f in result.flags))
        record.update(seconds=round(time.time() - started, 3), cpu_s=round(time.process_time() - cpu, 3))
        (work / SCENE_RECORD).write_text(json.dumps({**record, "scene": _plain(asdict(scene)), "model": asdict(task.model),
                                                     "rules": task.rules.as_dict(), "params": asdict(task.params)}, indent=1))
        _publish(work, scenes / scene.id)
    except LandsentryError as exc:
        record.update(status="failed", reason=str(exc), permanent=True, seconds=round(time.time() - started, 3),
                      cpu_s=round(time.process_time() - cpu, 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record


def _plain(data: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
