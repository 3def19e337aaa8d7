"""`/health` that answers at once under load: the engine and model state measured at most
`max_age_s` earlier, re-measured in the background, so a probe never queues behind searches
holding the engine or behind a busy thread pool (only the very first answer waits for it)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Generic, TypeVar

from .workers import started_pool

T = TypeVar("T")


class CachedProbe(Generic[T]):
    """The last result of a blocking `probe()`, refreshed in its own (already running) thread once
    older than `max_age_s`; the event loop only hands the refresh over, it never starts a thread."""

    def __init__(self, probe: Callable[[], T], max_age_s: float = 1.0):
        self._probe = probe
        self.max_age_s = max_age_s
        self._value: T | None = None
        self._measured_at = 0.0
        self._refreshing = False
        self._lock = threading.Lock()
        self._thread = started_pool(1, "cir-health")

    async def get(self) -> T:
        if self._value is None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._refresh)
        if time.monotonic() - self._measured_at > self.max_age_s:
            with self._lock:
                start, self._refreshing = not self._refreshing, True
            if start:
                self._thread.submit(self._refresh)
        return self._value

    def _refresh(self) -> T:
        try:
            value = self._probe()
            self._value, self._measured_at = value, time.monotonic()
            return value
        finally:
            with self._lock:
                self._refreshing = False
