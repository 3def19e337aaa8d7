"""The write side of an `IndexStore`: the write lock, acknowledged appends, recovery and refresh.

A bulk is acknowledged once its vector rows and then its log batch are fsynced; it becomes
searchable at the next refresh, which indexes the log past the manifest into tantivy, commits
it and replaces the manifest. When documents become visible (OpenSearch's refresh semantics):

- a bulk with `refresh=true` or `refresh=wait_for` refreshes before it returns;
- `indices.refresh` refreshes (waiting for a writer in another process to finish its bulk);
- every read of the embedded client (search, count, get, ...) in any process refreshes first
  when no bulk is being written at that moment (a search-idle shard refreshes on search too);
- a writer refreshes at the end of a bulk once its oldest unrefreshed write is older than
  `index.refresh_interval` (1s; -1 turns it off). Without an explicit `refresh_interval`, a
  search-idle index skips these scheduled refreshes as OpenSearch does (`IndexShard.scheduledRefresh`):
  they run only if this process read the index within `index.search.idle.after` (30s), or a
  reader in another process found the lock busy and left `refresh.wanted`. So a reader in another
  process sees a busy writer's documents within about the interval, and at its next read once the
  writer pauses, while a load nobody searches is refreshed once, by the first read.

A write lock that is free means no bulk is half-written: whoever takes it first truncates a torn
batch (a writer killed before its acknowledgement) and refreshes batches that other processes
acknowledged, so that the in-memory `pending` map of a writer only ever holds its own writes.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

import numpy as np

from ...errors import EngineError
from . import data_types
from .documents import flatten_source
from .persist import atomic_write_json, frame_batch, read_json, read_records, scan_batches

_POOLS: dict[int, ThreadPoolExecutor] = {}


def _sync_pool() -> ThreadPoolExecutor:
    """Threads for fsyncs side by side (they release the GIL); one pool per process, as a forked
    child inherits the parent's pool without its threads."""
    pool = _POOLS.get(os.getpid())
    if pool is None:
        pool = _POOLS[os.getpid()] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cir-fsync")
    return pool


_TIME_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def time_setting_s(settings: dict, name: str, default: str) -> float | None:
    """A time-valued index setting ("500ms", "1s", "5m") in seconds; None for -1."""
    value = str(settings.get(name, default)).strip()
    if value == "-1":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)", value)
    if match is None:
        raise EngineError(f"failed to parse setting [{name}] with value [{value}] as a time value", 400, "illegal_argument_exception")
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def refresh_interval_s(settings: dict) -> float | None:
    """`index.refresh_interval` in seconds (None: -1, no periodic refresh)."""
    return time_setting_s(settings, "index.refresh_interval", "1s")


def search_idle_after_s(settings: dict) -> float:
    """`index.search.idle.after` in seconds."""
    return time_setting_s(settings, "index.search.idle.after", "30s") or 0.0


def fsync_per_bulk(settings: dict) -> bool:
    """`index.translog.durability`: `request` (default) fsyncs every bulk before acknowledging it;
    `async` leaves that to `index.translog.sync_interval` (5s) and to refreshes, as OpenSearch does:
    a crash of the process loses nothing, a crash of the machine up to that interval."""
    durability = str(settings.get("index.translog.durability", "request")).lower()
    if durability not in ("request", "async"):
        raise EngineError(f"unknown value for [index.translog.durability] must be one of [REQUEST, ASYNC] but was: {durability}",
                          400, "illegal_argument_exception")
    return durability == "request"


class Writes:
    """Mixin of `IndexStore` (see the module docstring)."""

    def _init_writer(self) -> None:
        self._lock_fd: int | None = None
        self._text_writer = None
        self.log_end = -1  # acknowledged log bytes as this writer knows them; -1: scan at the next lock
        self.log_n_ords = 0
        self.pending: dict[str, tuple[int | None, int]] = {}  # id -> (ordinal or None, version), unrefreshed
        self.pending_since: float | None = None
        self.unsynced_since: float | None = None  # async durability: bytes written, not fsynced yet
        self.mapping_may_grow = False  # dynamic mapping ran since the meta was written
        self.last_read: float | None = None  # when this process last read the index (search idle otherwise)

    def doc_state(self, doc_id: str) -> tuple[int | None, int]:
        """(live ordinal or None, version) of `doc_id` after every acknowledged write (lock held)."""
        state = self.pending.get(doc_id)
        if state is not None:
            return state
        return self.id_to_ord.get(doc_id), self.id_version.get(doc_id, 0)

    # --- the lock ----------------------------------------------------------------------------------
    def _acquire_writer(self, timeout: float | None = None) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.folder / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + (self.lock_timeout_s() if timeout is None else timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EngineError(
                        f"index [{self.name}] is being written by another process", 409, "lock_obtain_failed_exception"
                    ) from None
                time.sleep(0.02)
        self._lock_fd = fd
        try:
            self.refresh()
            self._recover()
        except BaseException:
            self.release_writer()
            raise

    def release_writer(self) -> None:
        """Give up the writer role: the tantivy writer (which holds tantivy's own lock) and `write.lock`."""
        self._close_text_writer()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """Make this writer's view of the log true (lock held): unchanged since its last bulk, or
        else the complete batches past the manifest, a torn tail and its vector rows cut off, and
        other processes' batches refreshed."""
        size = os.stat(self.log_path).st_size
        if size == self.log_end and self.log_end >= self.log_pos:
            if self.log_end == self.log_pos:
                self.pending.clear()
                self.pending_since = None
            return
        end, n_ords = scan_batches(self.log_path, self.manifest["log_bytes"], self.manifest["n_ords"], self._rows_crc)
        if size > end:
            with open(self.log_path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        for field in self.vector_fields.values():
            field.truncate(n_ords)
        self.log_end, self.log_n_ords = end, n_ords
        self.pending.clear()
        self.pending_since = None
        if end > self.log_pos:
            if read_json(self.folder / "meta.json")["version"] != self.meta_version:
                self._load_meta()  # another writer mapped new fields before logging them
            self._publish()

    # --- acknowledged writes -----------------------------------------------------------------------
    def append_batch(self, body: bytes, rows: dict[str, np.ndarray], added: int, states: dict) -> None:
        """Durably append one bulk (lock held): the mapping if it grew, then the vector rows and the
        log batch (`body`: its records, JSON lines), written and fsynced side by side (the batch header
        holds the rows' CRC, so a log batch whose rows did not reach the disk is torn); returns once
        it is acknowledged. `states` are the ids' new (ordinal, version)."""
        fields = sorted(self.vector_fields.items()) if added else []
        blocks = [data_types.to_storage(rows[path], field.data_type) for path, field in fields]  # the bytes written
        crc = 0
        for block in blocks:
            crc = zlib.crc32(block, crc)
        framed = frame_batch(body, added, crc)
        sync = fsync_per_bulk(self.settings)
        try:
            if self.mapping_may_grow and self.mapping.raw != self.written_mappings:
                self.write_meta()
            self.mapping_may_grow = False
            for (_, field), block in zip(fields, blocks):
                field.append(block, sync=False)
            with open(self.log_path, "ab") as f:
                f.write(framed)
                f.flush()
                if sync:  # every file written first, then fsynced at once: one journal commit for all
                    syncs = [_sync_pool().submit(_fsync_path, field.path) for _, field in fields]
                    try:
                        os.fsync(f.fileno())
                    finally:
                        for done in futures_wait(syncs).done:
                            done.result()  # <- acknowledged once all are done
        except BaseException:
            self.log_end = -1  # the next writer truncates whatever this left
            raise
        self.log_end += len(framed)
        self.log_n_ords += added
        self.pending.update(states)
        now = time.monotonic()
        if self.pending_since is None:
            self.pending_since = now
        if not sync and self.unsynced_since is None:
            self.unsynced_since = now

    def sync(self) -> None:
        """fsync the log and vector files written without it (`index.translog.durability: async`)."""
        if self.unsynced_since is None:
            return
        paths = [self.log_path] + [field.path for field in self.vector_fields.values()]
        for done in [_sync_pool().submit(_fsync_path, path) for path in paths]:
            done.result()
        self.unsynced_since = None

    def _rows_crc(self, first: int, count: int) -> int:
        """CRC-32 of the vector rows [first, first + count) of every field, as `append_batch` computes it."""
        crc = 0
        if count == 0:
            return crc
        for _, field in sorted(self.vector_fields.items()):
            size = count * field.row_bytes
            try:
                with open(field.path, "rb") as f:
                    f.seek(first * field.row_bytes)
                    data = f.read(size)
            except FileNotFoundError:
                return -1
            if len(data) != size:
                return -1
            crc = zlib.crc32(data, crc)
        return crc

    def after_bulk(self, refresh: bool) -> None:
        """Refresh at the end of a bulk when asked to, or when the refresh interval has passed;
        fsync when the translog sync interval has (async durability)."""
        now = time.monotonic()
        interval = refresh_interval_s(self.settings)
        due = self.pending_since is not None and interval is not None and now - self.pending_since >= interval
        if due and "index.refresh_interval" not in self.settings:  # a search-idle index waits for its next read
            due = (self.last_read is not None and now - self.last_read < search_idle_after_s(self.settings)) or self.wanted_path.exists()
        if refresh or due:
            self._publish()
        sync_s = time_setting_s(self.settings, "index.translog.sync_interval", "5s")
        if self.unsynced_since is not None and (sync_s is None or now - self.unsynced_since >= sync_s):
            self.sync()

    # --- refresh -----------------------------------------------------------------------------------
    def _publish(self, *, force: bool = False) -> None:
        """Make every acknowledged write searchable (lock held): index the log past the refresh
        point into tantivy, commit it, then replace the manifest (`force`: even with nothing new)."""
        if self.log_end <= self.log_pos and not force:
            return
        self.sync()  # the manifest never points past what is on disk
        records = read_records(self.log_path, self.log_pos, self.log_end)
        flats = [flatten_source(record["source"]) if record["op"] == "index" else None for record, _, _ in records]
        if records:
            self._commit_text([record for record, _, _ in records], flats, self.n_ords)
        generation = self.manifest["generation"] + 1
        self.manifest = {"generation": generation, "log_bytes": self.log_end, "n_ords": self.log_n_ords, "meta_version": self.meta_version}
        atomic_write_json(self.folder / "manifest.json", self.manifest)
        self._apply_all(records, self.log_end, flats)
        self._moved_to(generation)
        self.pending.clear()
        self.pending_since = None
        try:
            self.wanted_path.unlink()
        except FileNotFoundError:
            pass
        if self.log_pos - self._snapshot_log_pos >= max(self.snapshot_min_bytes(), self._snapshot_log_pos // 4):
            self._save_snapshot()

    def _publish_if_free(self) -> bool:
        """Refresh unless another process is writing (then the view stays as it is). True when done."""
        try:
            self._acquire_writer(timeout=0.0)
        except EngineError as exc:
            if exc.error_type == "lock_obtain_failed_exception":
                self.wanted_path.touch()  # the writer refreshes at its refresh interval
                return False
            raise
        try:
            self._publish()
        finally:
            self.release_writer()
        return True

    def publish(self, *, wait_s: float | None = None) -> None:
        """`indices.refresh`: make every acknowledged write searchable, waiting for the lock."""
        held = self._lock_fd is not None
        self._acquire_writer(timeout=wait_s)
        try:
            self._publish()
        finally:
            if not held:
                self.release_writer()


def _fsync_path(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # the index was deleted meanwhile
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
