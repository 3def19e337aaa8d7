"""The ingestion pipeline, stage by stage (the reader -> mapper -> writer shape of clip-retrieval):

1. read + hash (`reading`, a thread pool); images seen earlier in the run, or already indexed with
   `resume`, are dropped right after hashing, before any decoding;
2. decode + preprocess and encode, `batch_size` images at a time, in lanes: `workers` threads that
   each take a whole batch, decode it and run the image graph on it on their own thread (one core
   each). A core then never waits on another inside a graph call, nor on a decoding thread that took
   its place: on 2 cores, images only, ingestion went from 0.63–0.64 to 0.70–0.80 of pure encoding
   with the default model, what its stages cost alone (docs/ingest-speed.md, "Lanes");
3. encode captions and write (`documents`, `writer`, one writer thread): the images encoded
   since the writer's last group (at most `write_batch_size`) become one group whose captions are
   encoded in one call and whose documents go in one bulk, while the lanes encode the next
   images. A free writer takes a group as soon as a quarter of `write_batch_size` (at least a
   batch) is ready, so it seldom idles while images wait and a run ends with a small last group;
   while it is busy groups grow up to `write_batch_size`, and the calling thread then waits for it
   (one group in flight).

Each stage's seconds are in `report.timings`. Document ids are the sha256 of the image bytes, so
re-ingesting an image updates its document instead of adding a copy.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Iterable

from ..admin import status_of
from ..dsl.vector_encoding import index_data_types
from ..encoders.batches import available_cores
from ..encoders.preprocess import DEFAULT_MAX_PIXELS
from ..errors import CIRError, IngestInterruptedError, InputError
from .documents import DocumentBuilder, EncodedImage, Refused
from .lanes import Lane
from .reading import MAX_FILE_BYTES, ReadImage, StageError, read_record
from .records import Record, document_id, printable
from .report import ErrorLog, Failure, IngestReport, StageTimer
from .sources import BadRow, SkippedEntry
from .writer import BulkWriter, Document, Retrier

log = logging.getLogger(__name__)


class Ingestor:
    """Index images (with captions and metadata) into `index` using `encoder`.

    Use as a context manager or call `close()`; `add(record)` and `add_many(records)` accept
    `Record`s or dicts (see `Record.from_mapping`). Nothing is lost silently: every input ends up
    indexed, skipped (already indexed with `resume`, or a duplicate within the run) or failed,
    and each failure is written to `errors` (a JSONL path or text stream) with its reason.

    batch_size: images per image-encoder call. write_batch_size: the most documents per bulk
    request, and records whose captions are encoded in one text-encoder call (bulks are this
    large when the writer is the slower stage). workers: threads that read, and lanes that decode
    and encode a batch each (None: one per core this process may use).
    resume: skip images whose content hash is already in the index. allow_remote: fetch http(s)
    images. progress: show a tqdm bar (`total` sets its length). max_file_bytes: files (and remote
    images) larger than this fail without being read. One bad record never fails its batch: a
    batch the encoder or the engine refuses as a whole is retried record by record.
    """

    def __init__(
        self,
        client: Any,
        index: str,
        encoder: Any,
        *,
        batch_size: int = 32,
        write_batch_size: int = 256,
        workers: int | None = None,
        resume: bool = False,
        errors: str | Path | IO[str] | None = None,
        allow_remote: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_file_bytes: int = MAX_FILE_BYTES,
        progress: bool = False,
        total: int | None = None,
        max_retries: int = 5,
        retry_backoff: float = 0.5,
        refresh: bool = True,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.client = client
        self.index = index
        self.encoder = encoder
        self.batch_size = batch_size
        self.write_batch_size = max(batch_size, write_batch_size)
        # a free writer takes a group of this many (a bulk has a fixed cost: ~20 ms of CPU in the
        # embedded engine) rather than idle while the main thread fills a whole write batch
        self._eager_group = max(1, min(batch_size, self.write_batch_size), self.write_batch_size // 4)
        self.resume = resume
        self.allow_remote = allow_remote
        self.max_pixels = max_pixels
        self.max_file_bytes = max_file_bytes
        self.refresh = refresh
        self.report = IngestReport(expected=total)
        self._timer = StageTimer(self.report.timings)
        self._errors = ErrorLog(errors)
        self._retrier = Retrier(max_retries=max_retries, backoff=retry_backoff)
        self._writer = BulkWriter(client, index, self._retrier)
        self._documents = DocumentBuilder(encoder, self._timer, index_data_types(client, index))  # byte / binary fields take encoded vectors
        self._lane = Lane(encoder, max_pixels, self._timer)
        self._lanes = max(1, workers or available_cores())
        self._pool = ThreadPoolExecutor(max_workers=self._lanes, thread_name_prefix="cir-read")
        self._lane_pool = ThreadPoolExecutor(max_workers=self._lanes, thread_name_prefix="cir-lane")
        self._write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cir-write")
        self._unwritten: list[EncodedImage] = []
        self._in_flight: Future | None = None
        # (record, content hash once known, future giving its ReadImage)
        self._reading: deque[tuple[Record, str | None, Future]] = deque()
        self._fresh: list[ReadImage] = []  # hashed, not known: the lanes' next batch
        self._encoding: deque[Future] = deque()  # lane batches in order, each giving (encoded, failures)
        # In-run duplicates follow their first occurrence: skipped once it is indexed, failed if it fails.
        self._seen: dict[str, str] = {}  # content hash -> name of its first occurrence
        self._settled: set[str] = set()  # hashes indexed (or found indexed) in this run
        self._followers: dict[str, list[Record]] = {}
        self._started = time.perf_counter()
        self._closed = False
        self._progress = None
        if progress:
            from tqdm.auto import tqdm

            self._progress = tqdm(total=total, unit="img", desc=f"ingest {index}", dynamic_ncols=True)
        if resume:
            self._refresh_index()

    # -- public API ------------------------------------------------------------------------

    def add(self, record: Record | BadRow | dict) -> None:
        """Queue one record; batches are encoded and written as they fill up."""
        if self._closed:
            raise CIRError("this Ingestor is closed")
        if self.report.interrupted:
            raise IngestInterruptedError(f"ingestion was interrupted: {self.report.interrupted}")
        self.report.input += 1
        if isinstance(record, BadRow):
            self._fail(record.source, "read", "InputError", record.reason)
            return
        if isinstance(record, SkippedEntry):
            self._skip(record.reason)
            return
        try:
            if not isinstance(record, Record):
                record = Record.from_mapping(record)
            record.check()
        except InputError as exc:
            name = record.name if isinstance(record, Record) else f"record {self.report.input}"
            self._fail(name, "read", type(exc).__name__, str(exc))
            return
        self._reading.append((record, None, self._pool.submit(self._read_and_hash, record)))
        if len(self._reading) >= self.batch_size:
            self._triage()
        if len(self._encoding) > self._lanes:  # every lane busy and one batch queued
            self._process_batch()

    def add_many(self, records: Iterable[Record | BadRow | dict]) -> IngestReport:
        for record in records:
            self.add(record)
        return self.report

    def flush(self) -> None:
        """Encode and write everything queued so far."""
        while True:  # a failed write or encode may send a duplicate back to reading
            while self._reading or self._fresh or self._encoding:
                while self._reading:
                    self._triage()
                self._send_to_lanes(everything=True)
                while self._encoding:
                    self._process_batch()
            self._write(wait=True)
            if not (self._reading or self._fresh or self._encoding):
                break

    def close(self) -> IngestReport:
        """Flush, refresh the index, release the threads and return the report."""
        if self._closed:
            return self.report
        try:
            if self.report.interrupted is None:
                self.flush()
                if self.refresh and self.report.indexed:
                    self.client.indices.refresh(index=self.index)
        finally:
            self._shutdown()
        return self.report

    def __enter__(self) -> "Ingestor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.report.interrupted = self.report.interrupted or f"{exc_type.__name__}: {exc}"
            self._shutdown()

    # -- stages ----------------------------------------------------------------------------

    def _read_and_hash(self, record: Record) -> ReadImage:
        """Worker thread: the image bytes and their sha256."""
        try:
            with self._timer("read"):
                data = read_record(record, allow_remote=self.allow_remote, max_file_bytes=self.max_file_bytes)
                return ReadImage(record, document_id(data), data)
        except Exception as exc:
            raise StageError("read", exc) from exc

    def _collect(self, queue: deque, count: int) -> list:
        """Results of the first `count` futures of `queue`; failed ones go to the report."""
        results = []
        with self._timer("wait"):
            for _ in range(min(count, len(queue))):
                record, content_hash, future = queue.popleft()
                try:
                    results.append(future.result())
                except StageError as exc:
                    self._fail(record.name, exc.stage, type(exc.cause).__name__, str(exc.cause), content_hash)
        return results

    def _triage(self) -> None:
        """Hashed records: drop the known ones, send the rest to decoding."""
        try:
            fresh = self._drop_known(self._collect(self._reading, self.batch_size))
        except Exception as exc:
            self.report.interrupted = str(exc)
            raise
        self._fresh.extend(fresh)
        self._send_to_lanes()
        self._update_progress()

    def _send_to_lanes(self, everything: bool = False) -> None:
        """Full batches of the fresh images (and with `everything`, the rest) to the lanes."""
        while len(self._fresh) >= self.batch_size or (everything and self._fresh):
            batch, self._fresh = self._fresh[:self.batch_size], self._fresh[self.batch_size:]
            self._encoding.append(self._lane_pool.submit(self._lane.run, batch))

    def _process_batch(self) -> None:
        """The oldest lane batch: its failures reported, its images on to the writer."""
        with self._timer("wait"):
            try:
                encoded, failures = self._encoding.popleft().result()
            except Exception as exc:
                self.report.interrupted = str(exc)
                raise
        for failure in failures:
            error = failure.error
            self._fail(failure.record.name, failure.stage, type(error).__name__, str(error), failure.content_hash)
        self._unwritten.extend(encoded)
        writer_free = self._in_flight is None or self._in_flight.done()
        if self._unwritten and len(self._unwritten) >= (self._eager_group if writer_free else self.write_batch_size):
            self._write(wait=False)
        self._update_progress()

    def _write_group(self, group: list[EncodedImage]) -> tuple[list[Document], list[tuple[Document, str]], list[Refused]]:
        """Writer thread: the group's captions encoded, its documents written."""
        documents, refused = self._documents.build(group)
        indexed: list[Document] = []
        failed: list[tuple[Document, str]] = []
        if documents:
            with self._timer("write"):
                indexed, failed = self._writer.write(documents)
        return indexed, failed, refused

    def _write(self, *, wait: bool) -> None:
        """Account for the group in flight, then send the unwritten images on (and wait for them)."""
        self._finish_write()
        if self._unwritten:
            group, self._unwritten = self._unwritten, []
            self._in_flight = self._write_pool.submit(self._write_group, group)
        if wait:
            self._finish_write()

    def _finish_write(self) -> None:
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        try:
            with self._timer("wait"):
                indexed, failed, refused = future.result()
        except Exception as exc:
            self.report.interrupted = str(exc)
            self.report.retried_items = self._writer.retried_items
            raise
        self.report.indexed += len(indexed)
        self.report.retried_items = self._writer.retried_items
        for document in indexed:
            self._settle(document.doc_id)
        for refusal in refused:
            error = refusal.error
            self._fail(refusal.item.record.name, "encode", type(error).__name__, str(error), refusal.item.content_hash)
        for document, reason in failed:
            self._fail(document.name, "write", "BulkItemError", reason, document.doc_id)
        self._update_progress()

    def _settle(self, content_hash: str) -> None:
        """The first occurrence of an image is indexed: its in-run duplicates are skipped."""
        self._settled.add(content_hash)
        for _ in self._followers.pop(content_hash, []):
            self._skip("duplicate image in this run")

    def _drop_known(self, items: list[ReadImage]) -> list[ReadImage]:
        """Hold back images seen earlier in this run and, with `resume`, skip those already indexed."""
        fresh: list[ReadImage] = []
        for item in items:
            if item.content_hash in self._settled:
                self._skip("duplicate image in this run")
            elif item.content_hash in self._seen:
                self._followers.setdefault(item.content_hash, []).append(item.record)
            else:
                self._seen[item.content_hash] = item.record.name
                fresh.append(item)
        if not self.resume or not fresh:
            return fresh
        with self._timer("lookup"):
            indexed = self._indexed_hashes([item.content_hash for item in fresh])
        for item in fresh:
            if item.content_hash in indexed:
                self._skip("already indexed")
                self._settle(item.content_hash)
        return [item for item in fresh if item.content_hash not in indexed]

    # -- bookkeeping -----------------------------------------------------------------------

    def _indexed_hashes(self, hashes: list[str]) -> set[str]:
        body = {"size": len(hashes), "query": {"terms": {"content_hash": hashes}}, "_source": ["content_hash"]}
        try:
            response = self._retrier.call(lambda: self.client.search(index=self.index, body=body), "lookup of indexed images")
        except Exception as exc:
            if status_of(exc) == 404:  # no index yet: nothing indexed
                return set()
            raise
        return {hit["_source"]["content_hash"] for hit in response["hits"]["hits"]}

    def _refresh_index(self) -> None:
        if self.client.indices.exists(index=self.index):
            self.client.indices.refresh(index=self.index)

    def _fail(self, source: str, stage: str, error: str, reason: str, content_hash: str | None = None) -> None:
        source, reason = printable(source), printable(reason)
        failure = Failure(source=source, stage=stage, error=error, reason=reason)
        self.report.failed += 1
        self.report.failures.append(failure)
        self._errors.write(failure)
        log.debug("failed %s at %s: %s", source, stage, reason)
        if content_hash is not None:  # its in-run duplicates fail with it when the bytes are at fault,
            self._seen.pop(content_hash, None)  # else (captions, metadata, the engine) they are tried afresh
            for record in self._followers.pop(content_hash, []):
                if stage == "decode":
                    self._fail(record.name, stage, error, f"{reason} (same bytes as {source})")
                else:
                    self._reading.append((record, None, self._pool.submit(self._read_and_hash, record)))

    def _skip(self, reason: str) -> None:
        self.report.skipped += 1
        self.report.skip_reasons[reason.split(" (")[0]] += 1

    def _update_progress(self) -> None:
        if self._progress is not None:
            report = self.report
            self._progress.n = report.indexed + report.skipped + report.failed
            self._progress.set_postfix(indexed=report.indexed, skipped=report.skipped, failed=report.failed)

    def _shutdown(self) -> None:
        for future in (*(future for _, _, future in self._reading), *self._encoding):
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._lane_pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True)
        self.report.seconds = time.perf_counter() - self._started
        self._errors.close()
        if self._progress is not None:
            self._update_progress()
            self._progress.close()
        self._closed = True


def ingest(
    client: Any,
    index: str,
    encoder: Any,
    source: str | Path | Iterable,
    **options: Any,
) -> IngestReport:
    """Ingest a folder, a manifest file or an iterable of records; returns the report."""
    from .sources import open_source

    records, total = open_source(source)
    options.setdefault("total", total)
    ingestor = Ingestor(client, index, encoder, **options)
    try:
        ingestor.add_many(records)
    finally:
        ingestor.close()
    return ingestor.report
