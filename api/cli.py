"""`landsentry serve`: the web service and page on one port, with the data directory of your choice."""
from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry serve", description=__doc__,
                                epilog="Other settings come from LANDSENTRY_* environment variables (see README: Service).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, default=None, help="where jobs, samples, models and the database live "
                   "(default: $LANDSENTRY_DATA_DIR or ./landsentry-data)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--insecure", action="store_true", help="serve an open API (no LANDSENTRY_TOKEN) on an address other "
                   "machines can reach; without it, a non-loopback --host needs a token")
    return p


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse an open API on a reachable address: anyone who reaches it could start jobs and training."""
    from landsentry.models.vocabulary.errors import InputError

    if token is None and not insecure and not is_loopback(host):
        raise InputError(f"--host {host} would let anyone who can reach this machine upload images and start training, "
                         "and LANDSENTRY_TOKEN is not set: set it (clients then send Authorization: Bearer TOKEN), "
                         "serve on 127.0.0.1, or pass --insecure to serve an open API anyway")


def preflight(settings) -> None:
    """Refuse clearly (exit 2, one line) what would otherwise fail inside the server's startup."""
    from landsentry.api.app import hold_data_dir
    from landsentry.api.store import Store
    from landsentry.models.nn.checkpoint import load_checkpoint
    from landsentry.models.vocabulary.errors import InputError

    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise InputError(f"--data-dir {settings.data_dir} is a file, not a folder")
    store = Store(settings.data_dir, settings.database_url)  # an unreachable database or a newer schema: one line
    lock = hold_data_dir(settings.data_dir, store.shared)
    if lock is not None:
        lock.close()
    store.close()
    if not any((settings.data_dir / "models").glob("*.pt")):
        load_checkpoint(settings.model)  # the first version must load


def main(argv: list[str]) -> int:
    import uvicorn

    from landsentry.api.app import create_app
    from landsentry.api.settings import Settings

    args = build_parser().parse_args(argv)
    overrides = {"data_dir": args.data_dir} if args.data_dir is not None else {}
    settings = Settings.from_env(**overrides)  # a bad LANDSENTRY_* value: one line, exit 2
    check_exposure(args.host, settings.token, args.insecure)
    preflight(settings)
    print(f"landsentry: serving http://{args.host}:{args.port}/ (API docs at /docs), data in {settings.data_dir}", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0
