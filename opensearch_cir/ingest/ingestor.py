"""The ingestion pipeline: read + hash → skip known → decode/preprocess → encode → bulk write.

Reading, hashing, decoding and preprocessing run in a thread pool while the previous batch is
being encoded, so decoding overlaps encoding; encoded documents are written in bulks of
`write_batch_size` by a writer thread while the next images are encoded (one bulk in flight). Known images (seen earlier in the run,
or already indexed with `resume`) are dropped right after hashing, before any decoding. Document
ids are the sha256 of the image bytes, so re-ingesting an image updates its document instead of
adding a copy.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from ..admin import status_of
from ..dsl.vector_encoding import encode_list, index_data_types
from ..encoders.preprocess import DEFAULT_MAX_PIXELS, ImagePreprocessor, load_image, read_image_bytes
from ..errors import CIRError, ImageDecodeError, ImageTooLargeError, IngestInterruptedError, InputError
from .records import Record, document_id, is_remote, printable
from .report import ErrorLog, Failure, IngestReport, StageTimer
from .sources import BadRow, SkippedEntry
from .writer import BulkWriter, Document, Retrier

log = logging.getLogger(__name__)

MAX_REMOTE_BYTES = 50 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Default cap on the bytes read from one local file, checked before reading (a 40 MP JPEG is ~20 MB)."""


def read_file_capped(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing one over `max_bytes` before reading it; a FIFO, device
    or folder is refused without blocking (opened non-blocking, checked with fstat)."""
    name = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageDecodeError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(f"{name}: not a regular file")
        if info.st_size > max_bytes:
            raise ImageTooLargeError(f"{name}: {info.st_size} bytes is more than the limit of {max_bytes} bytes per file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while being read
        raise ImageTooLargeError(f"{name}: more than the limit of {max_bytes} bytes per file")
    if not data:
        raise ImageDecodeError(f"{name}: empty (0 bytes)")
    return data


@dataclass
class _Read:
    record: Record
    content_hash: str
    data: bytes


@dataclass
class _Prepared:
    record: Record
    content_hash: str
    pixels: np.ndarray


class _StageError(Exception):
    def __init__(self, stage: str, cause: BaseException):
        super().__init__(str(cause))
        self.stage = stage
        self.cause = cause


def fetch_remote(url: str, timeout: float = 20.0, max_bytes: int = MAX_REMOTE_BYTES) -> bytes:
    """GET an image over http(s), refusing bodies over `max_bytes`."""
    import httpx

    chunks, size = [], 0
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        if response.status_code != 200:
            raise InputError(f"{url}: HTTP {response.status_code}")
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise InputError(f"{url}: more than {max_bytes} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def mean_caption_vectors(vectors: np.ndarray, counts: list[int]) -> list[np.ndarray | None]:
    """Per record, the re-normalised mean of its caption vectors (None without captions)."""
    out: list[np.ndarray | None] = []
    start = 0
    for count in counts:
        if count == 0:
            out.append(None)
            continue
        mean = vectors[start:start + count].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        out.append(mean / norm if norm > 0 else None)
        start += count
    return out


class Ingestor:
    """Index images (with captions and metadata) into `index` using `encoder`.

    Use as a context manager or call `close()`; `add(record)` and `add_many(records)` accept
    `Record`s or dicts (see `Record.from_mapping`). Nothing is lost silently: every input ends up
    indexed, skipped (already indexed with `resume`, or a duplicate within the run) or failed,
    and each failure is written to `errors` (a JSONL path or text stream) with its reason.

    batch_size: images per encoder call. write_batch_size: documents per bulk request (a bulk's
    fixed cost, e.g. the embedded engine's commit, is paid once per this many). workers: decode threads.
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
        workers: int = 2,
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
        self._vector_types = index_data_types(client, index)  # byte / binary fields take encoded vectors
        self._preprocess = ImagePreprocessor(encoder.manifest.image)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cir-decode")
        self._write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cir-write")
        self._unwritten: list[Document] = []
        self._in_flight: Future | None = None
        # (record, content hash once known, future); read futures give _Read, decode ones _Prepared
        self._reading: deque[tuple[Record, str | None, Future]] = deque()
        self._decoding: deque[tuple[Record, str | None, Future]] = deque()
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
        if len(self._decoding) >= 2 * self.batch_size:
            self._process_batch()

    def add_many(self, records: Iterable[Record | BadRow | dict]) -> IngestReport:
        for record in records:
            self.add(record)
        return self.report

    def flush(self) -> None:
        """Encode and write everything queued so far."""
        while True:  # a failed write or encode may send a duplicate back to reading
            while self._reading or self._decoding:
                while self._reading:
                    self._triage()
                while self._decoding:
                    self._process_batch()
            self._write(wait=True)
            if not (self._reading or self._decoding):
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

    def _read(self, record: Record) -> bytes:
        image = record.image
        if is_remote(image):
            if not self.allow_remote:
                raise InputError(f"{image}: remote URLs are disabled (enable with --allow-remote / allow_remote=True)")
            return fetch_remote(image, max_bytes=min(MAX_REMOTE_BYTES, self.max_file_bytes))
        if isinstance(image, (bytes, bytearray, memoryview)):
            if len(image) > self.max_file_bytes:
                raise ImageTooLargeError(f"{len(image)} bytes is more than the limit of {self.max_file_bytes} bytes per image")
            return read_image_bytes(image)
        return read_file_capped(image, self.max_file_bytes)

    def _read_and_hash(self, record: Record) -> _Read:
        """Worker thread: the image bytes and their sha256."""
        try:
            with self._timer("read"):
                data = self._read(record)
                return _Read(record, document_id(data), data)
        except Exception as exc:
            raise _StageError("read", exc) from exc

    def _decode(self, item: _Read) -> _Prepared:
        """Worker thread: decode and preprocess into the image graph's input."""
        try:
            with self._timer("decode"):
                pixels = self._preprocess(load_image(item.data, max_pixels=self.max_pixels, min_side=self._preprocess.decode_side))
        except Exception as exc:
            raise _StageError("decode", exc) from exc
        return _Prepared(item.record, item.content_hash, pixels)

    def _collect(self, queue: deque, count: int) -> list:
        """Results of the first `count` futures of `queue`; failed ones go to the report."""
        results = []
        with self._timer("wait"):
            for _ in range(min(count, len(queue))):
                record, content_hash, future = queue.popleft()
                try:
                    results.append(future.result())
                except _StageError as exc:
                    self._fail(record.name, exc.stage, type(exc.cause).__name__, str(exc.cause), content_hash)
        return results

    def _triage(self) -> None:
        """Hashed records: drop the known ones, send the rest to decoding."""
        try:
            fresh = self._drop_known(self._collect(self._reading, self.batch_size))
        except Exception as exc:
            self.report.interrupted = str(exc)
            raise
        for item in fresh:
            self._decoding.append((item.record, item.content_hash, self._pool.submit(self._decode, item)))
        self._update_progress()

    def _process_batch(self) -> None:
        batch: list[_Prepared] = self._collect(self._decoding, self.batch_size)
        if not batch:
            self._update_progress()
            return
        documents = self._encode_each_if_needed(batch)
        if not documents:
            self._update_progress()
            return
        self._unwritten.extend(documents)
        if len(self._unwritten) >= self.write_batch_size:
            self._write(wait=False)
        self._update_progress()

    def _timed_write(self, documents: list[Document]):
        with self._timer("write"):
            return self._writer.write(documents)

    def _write(self, *, wait: bool) -> None:
        """Account for the bulk in flight, then send the unwritten documents (and wait for them)."""
        self._finish_write()
        if self._unwritten:
            documents, self._unwritten = self._unwritten, []
            self._in_flight = self._write_pool.submit(self._timed_write, documents)
        if wait:
            self._finish_write()

    def _finish_write(self) -> None:
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        try:
            with self._timer("wait"):
                indexed, failed = future.result()
        except Exception as exc:
            self.report.interrupted = str(exc)
            self.report.retried_items = self._writer.retried_items
            raise
        self.report.indexed += len(indexed)
        self.report.retried_items = self._writer.retried_items
        for document in indexed:
            self._settle(document.doc_id)
        for document, reason in failed:
            self._fail(document.name, "write", "BulkItemError", reason, document.doc_id)
        self._update_progress()

    def _settle(self, content_hash: str) -> None:
        """The first occurrence of an image is indexed: its in-run duplicates are skipped."""
        self._settled.add(content_hash)
        for _ in self._followers.pop(content_hash, []):
            self._skip("duplicate image in this run")

    def _drop_known(self, items: list[_Read]) -> list[_Read]:
        """Hold back images seen earlier in this run and, with `resume`, skip those already indexed."""
        fresh: list[_Read] = []
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

    def _encode_each_if_needed(self, batch: list[_Prepared]) -> list[Document]:
        """The batch's documents; when the encoder refuses the batch, each record is encoded alone
        so that only the records it refuses fail, each with its own reason."""
        try:
            return self._encode(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0].record.name, "encode", type(exc).__name__, str(exc), batch[0].content_hash)
                return []
        documents: list[Document] = []
        for item in batch:
            documents += self._encode_each_if_needed([item])
        return documents

    def _encode(self, batch: list[_Prepared]) -> list[Document]:
        with self._timer("encode_images"):
            image_vectors = self.encoder.encode_pixels(np.stack([item.pixels for item in batch]))
        captions = [caption for item in batch for caption in item.record.captions]
        caption_vectors: list[np.ndarray | None] = [None] * len(batch)
        if captions:
            with self._timer("encode_texts"):
                caption_vectors = mean_caption_vectors(
                    self.encoder.encode_texts(captions), [len(item.record.captions) for item in batch]
                )
        return [
            Document(item.content_hash, self._source(item, image_vector, caption_vector), item.record.name)
            for item, image_vector, caption_vector in zip(batch, image_vectors, caption_vectors)
        ]

    def _source(self, item: _Prepared, image_vector: np.ndarray, caption_vector: np.ndarray | None) -> dict:
        record = item.record
        source: dict[str, Any] = {
            "image_vector": encode_list(image_vector, self._vector_types.get("image_vector", "float")),
            "content_hash": item.content_hash,
            "model_id": self.encoder.model_id,
        }
        if record.uri:
            source["image_uri"] = record.uri
        if record.captions:
            source["caption"] = record.captions[0] if len(record.captions) == 1 else list(record.captions)
        if caption_vector is not None:
            source["caption_vector"] = encode_list(caption_vector, self._vector_types.get("caption_vector", "float"))
        if record.metadata:
            source["metadata"] = {key: _keyword_value(value) for key, value in record.metadata.items()}
        return source

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
        for _, _, future in (*self._reading, *self._decoding):
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True)
        self.report.seconds = time.perf_counter() - self._started
        self._errors.close()
        if self._progress is not None:
            self._update_progress()
            self._progress.close()
        self._closed = True


def _keyword_value(value: Any) -> Any:
    """Metadata values as OpenSearch keyword-friendly scalars (lists kept, nested objects as JSON)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_keyword_value(v) for v in value]
    return json.dumps(value, ensure_ascii=False, default=str)


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
