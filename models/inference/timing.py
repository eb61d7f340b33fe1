"""Stage timing hooks: the interpretation path reports how long each of its stages takes to a Timer.

The pipeline and the window runner call `timer.stage(name)` around their steps; the default timer
keeps nothing. `landsentry bench` passes one that adds the seconds up (`models.bench`), so it
measures the real path without wrapping or patching any production function.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator, TypeVar

T = TypeVar("T")


class Timer:
    """Receives (stage, seconds) pairs; this base class drops them."""

    def add(self, stage: str, seconds: float) -> None:
        """Record `seconds` spent in `stage` (called once per timed step)."""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def timed_iter(self, name: str, items: Iterator[T]) -> Iterator[T]:
        """The items of `items`, with the time spent producing each one (not consuming it) added to `name`."""
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                self.add(name, time.perf_counter() - start)
                return
            self.add(name, time.perf_counter() - start)
            yield item


NO_TIMER = Timer()
