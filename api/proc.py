"""Child processes (worker, training, evaluation): started the same way from a checkout or an installed
wheel, in a folder of their own, and unable to outlive their parent."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for Popen: on Linux the kernel sends SIGKILL when the parent dies (elsewhere: no-op;
    the worker also watches its parent's pid)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def python_module(module: str, *args: str) -> list[str]:
    """`python -P -m MODULE ARGS` with this interpreter: -P keeps the working directory off sys.path, so a
    `landsentry/` folder there cannot shadow the installed package."""
    return [sys.executable, "-P", "-m", module, *args]


def child_env(threads: int) -> dict[str, str]:
    """This environment with one thread count for every library, and without the token (children serve no requests)."""
    env = {k: v for k, v in os.environ.items() if k != "LANDSENTRY_TOKEN"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


def start_child(cmd: list[str], out, threads: int, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `cmd` in `cwd` with output to the open file `out` (and `extra_env` added); it dies with this process."""
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**child_env(threads), **(extra_env or {})}, cwd=cwd,
                            preexec_fn=die_with_parent)


def run_child(cmd: list[str], log: Path, threads: int, stop: threading.Event, cwd: Path,
              on_poll: Callable[[], bool | None] | None = None) -> int:
    """Run a command with output appended to `log`; killed with its parent (Linux), when `stop` is set, or
    when `on_poll` (called twice a second) returns True (a cancelled job)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = start_child(cmd, out, threads, cwd)
        try:
            while proc.poll() is None:
                if stop.wait(0.5) or (on_poll is not None and on_poll()):
                    proc.terminate()
                    proc.wait(10)
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode
