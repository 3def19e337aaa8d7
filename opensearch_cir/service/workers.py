"""Bounded places for the work behind requests, so that the event loop never waits.

Decoding reference images runs in a small thread pool, searches and ingest requests in another
one, each with as many threads as slots, started with the service (the event loop never starts a
thread: under load a new thread waits for the GIL, and so would the loop). Remote images are
fetched asynchronously, on the event loop, by one HTTP client with a bounded number of
connections: a slow server holds a socket, not a thread. Each kind of work has a number of slots,
and a request waits for a slot at most `queue_timeout_s` before it is answered 503 (retry later).
So 8 clients sending 40 MP images, or 45 slow-drip URLs, occupy a few threads, sockets and a
bounded queue, and `/health` (and every other request) keeps the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import httpx

from ..errors import CIRError
from .inputs import fetch_remote
from .settings import Settings


class ServiceBusyError(CIRError):
    """Every slot of one kind of work stayed taken for `queue_timeout_s` (answered 503, retry later)."""


class Workers:
    """The pools and slots of one service instance (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._decode_pool = started_pool(max(1, settings.max_concurrent_decodes), "cir-decode")
        self._search_pool = started_pool(max(1, settings.max_concurrent_searches), "cir-search")
        self._http = self._http_client()  # made here, not on the event loop: it loads the CA certificates (0.1-0.5 s)
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
        """`fn(*args)` in the decode pool (`fn` hands a big image's memory back: `release_heap_after`)."""
        async with self._slot("image decoding"):
            return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    async def fetch(self, url: str) -> bytes:
        """The bytes of an allow-listed remote image (see `inputs.fetch_remote`)."""
        async with self._slot("remote fetching"):
            if self._http.is_closed:  # the app is served again after a shutdown (tests do)
                self._http = self._http_client()
            return await fetch_remote(self._http, url, self.settings)

    def _http_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=max(1, self.settings.max_concurrent_fetches), max_keepalive_connections=0)
        return httpx.AsyncClient(timeout=self.settings.remote_fetch_timeout_s, limits=limits)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A search or an ingest request: `fn(*args)` in the search pool, in a bounded number of slots."""
        async with self._slot("search"):
            return await asyncio.get_running_loop().run_in_executor(self._search_pool, fn, *args)

    async def aclose(self) -> None:
        """Close the HTTP client (at shutdown; the idle pool threads end with the process)."""
        await self._http.aclose()


def started_pool(threads: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose `threads` threads are already running (each waits at a barrier until all exist)."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
    barrier = threading.Barrier(threads)
    for future in [pool.submit(barrier.wait) for _ in range(threads)]:
        future.result()
    return pool


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


LARGE_DECODE_PIXELS = 4_000_000
"""Decoded images from this size on have their freed memory handed back to the system."""


def release_heap_after(pixels: int) -> None:
    """After an image of `pixels` decoded pixels was freed: hand the heap's free pages back when it
    was large (glibc keeps a decoded 40 MP image's ~120 MB otherwise). Not after small ones: there
    the trim only costs, in page faults of the next allocations (~1.5 CPU ms per image search,
    measured with 4 clients)."""
    if pixels >= LARGE_DECODE_PIXELS and _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
