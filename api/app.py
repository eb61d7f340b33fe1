"""The FastAPI app: `create_app(settings)` wires settings, store, model, worker, routers and the page.

The lifespan opens the store, marks jobs a killed server left running (resume or retry), removes
the temporary folders a killed process left behind, registers the starting checkpoint on first
start, loads the active model once and starts the worker process. With SQLite one server owns the
data directory (a lock file) and every job left running at start was a dead process's; with
PostgreSQL (replicas) no lock is taken, and only jobs whose leases ran out are taken over.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from landsentry.models.vocabulary.errors import LandsentryError

from landsentry.api import errors, openapi
from landsentry.api.limits import BodyLimit
from landsentry.api.heartbeat import Heartbeat, process_owner
from landsentry.api.routers import examples, flags, health, interpret, jobs, models, samples, train
from landsentry.api.settings import Settings
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder, register_initial

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("uvicorn.error")


def hold_data_dir(data_dir: Path, shared: bool = False):
    """One server per data directory (SQLite): recovery at start assumes every running job belongs to a dead
    process. Replicas on PostgreSQL (`shared`) share the data directory: no lock, None."""
    if shared:
        return None
    handle = (data_dir / "server.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise LandsentryError(f"another landsentry server is using {data_dir}; stop it or pass another --data-dir") from None
    return handle


async def supervise(app: FastAPI, settings: Settings, every_s: float = 2.0) -> None:
    """Restart the worker if it dies (killed for memory, a crash): its running jobs are queued again first."""
    from landsentry.api.worker import spawn

    while True:
        await asyncio.sleep(every_s)
        worker = app.state.worker
        if worker.poll() is not None:
            await asyncio.to_thread(app.state.store.recover, f"worker:{socket.gethostname()}:{worker.pid}")
            app.state.worker = spawn(settings)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threads_before = torch.get_num_threads()
        torch.set_num_threads(settings.threads)
        store = Store(settings.data_dir, settings.database_url)
        app.state.lock = hold_data_dir(settings.data_dir, store.shared)
        for job in store.recover(expired=store.shared):
            log.warning("job %s (%s) was interrupted: %s", job["id"], job["type"], job["error"] or job["message"])
        for path in store.clean_leftovers():
            log.warning("removed %s, left behind by a killed process", path.relative_to(settings.data_dir))
        register_initial(store, settings.model)
        holder = ModelHolder(store, settings.device, settings.version_check_s)
        holder.ensure()
        app.state.store, app.state.holder = store, holder
        app.state.heartbeat = Heartbeat(store, process_owner("server"), settings.lease_s).start()
        app.state.inference_slots = anyio.CapacityLimiter(settings.concurrency)
        app.state.worker = None
        supervisor = None
        if settings.worker:
            from landsentry.api.worker import spawn

            app.state.worker = spawn(settings)
            supervisor = asyncio.create_task(supervise(app, settings))
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.cancel()
            torch.set_num_threads(threads_before)  # an app inside a larger process (tests) gives them back
            worker = app.state.worker
            if worker is not None and worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(20)
                except Exception:
                    worker.kill()
            app.state.heartbeat.stop()
            if app.state.lock is not None:
                app.state.lock.close()
            store.close()

    app = FastAPI(title="landsentry", version="1", lifespan=lifespan,
                  description="Roads, earthworks and buildings in satellite and aerial imagery; new ones between two dates; retraining on your samples.")
    app.state.settings = settings
    errors.install(app)
    openapi.install(app, {"epochs": settings.max_train_epochs, "steps_per_epoch": settings.max_train_steps})
    for module in (health, interpret, jobs, flags, samples, train, models, examples):
        app.include_router(module.router)
    STATIC.mkdir(exist_ok=True)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    def page() -> FileResponse | JSONResponse:
        index = STATIC / "index.html"
        if not index.is_file():
            return JSONResponse({"detail": "the web page is not installed (api/static/index.html); the API is at /docs"}, status_code=404)
        return FileResponse(index, media_type="text/html")

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    return app
