"""Child processes that cannot outlive their parent: a killed server takes its worker and training with it."""
from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for Popen: on Linux the kernel sends SIGKILL when the parent dies (elsewhere: no-op;
    the worker also watches its parent's pid)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
