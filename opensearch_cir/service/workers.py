"""Bounded places for the blocking work behind requests, so that the event loop never waits.

Decoding reference images and fetching remote ones run in their own small thread pools, searches
and ingest requests in the shared thread pool; each kind has a number of slots, and a request
waits for a slot at most `queue_timeout_s` before it is answered 503 (retry later). So 8 clients
sending 40 MP images, or 45 slow-drip URLs, occupy a few threads and a bounded queue, and
`/health` (and every other request) keeps its own threads and the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from ..errors import CIRError
from .settings import Settings


class ServiceBusyError(CIRError):
    """Every slot of one kind of work stayed taken for `queue_timeout_s` (answered 503, retry later)."""


class Workers:
    """The pools and slots of one service instance (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._decode_pool = ThreadPoolExecutor(max(1, settings.max_concurrent_decodes), thread_name_prefix="cir-decode")
        self._fetch_pool = ThreadPoolExecutor(max(1, settings.max_concurrent_fetches), thread_name_prefix="cir-fetch")
        self._slots = {
            "image decoding": asyncio.Semaphore(max(1, settings.max_concurrent_decodes)),
            "remote fetching": asyncio.Semaphore(max(1, settings.max_concurrent_fetches)),
            "search": asyncio.Semaphore(max(1, settings.max_concurrent_searches)),
        }

    @asynccontextmanager
    async def _slot(self, kind: str) -> AsyncIterator[None]:
        slots = self._slots[kind]
        try:
            await asyncio.wait_for(slots.acquire(), self.settings.queue_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceBusyError(f"the service is busy ({kind}): no slot freed up within "
                                   f"{self.settings.queue_timeout_s:g} s (CIR_QUEUE_TIMEOUT_S); retry later") from None
        try:
            yield
        finally:
            slots.release()

    async def decode(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in the decode pool; the memory of big images goes back to the system afterwards."""
        async with self._slot("image decoding"):
            return await asyncio.get_running_loop().run_in_executor(self._decode_pool, _then_trim, fn, args)

    async def fetch(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in the fetch pool."""
        async with self._slot("remote fetching"):
            return await asyncio.get_running_loop().run_in_executor(self._fetch_pool, fn, *args)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A search or an ingest request: `fn(*args)` in the shared thread pool, in a bounded number of slots."""
        async with self._slot("search"):
            return await run_in_threadpool(fn, *args)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _then_trim(fn: Callable[..., Any], args: tuple) -> Any:
    """Run `fn`, then hand freed heap pages back (glibc keeps a decoded 40 MP image's ~120 MB otherwise)."""
    try:
        return fn(*args)
    finally:
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)
