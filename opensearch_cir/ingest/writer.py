"""Bulk writes with per-item retry: items rejected with 429 / 5xx are re-sent with backoff, other
rejections become failures, and a connection that stays down interrupts the run."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..admin import status_of
from ..dsl import validate_request
from ..errors import IngestInterruptedError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class Document:
    """One bulk `index` action: the document id (content hash), its source, and the input's name."""

    doc_id: str
    source: dict
    name: str


def is_transient(exc: BaseException) -> bool:
    """A dropped connection, a timeout, a 429 / 502-504 answer to the whole request, or the embedded
    engine's write lock still held by another process's bulk (`cir serve` writing an /ingest)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if getattr(exc, "error_type", None) == "lock_obtain_failed_exception":
        return True
    try:
        from opensearchpy.exceptions import ConnectionError as ClientConnectionError
    except ImportError:  # pragma: no cover - opensearch-py is a dependency
        ClientConnectionError = ()  # type: ignore[assignment]
    return isinstance(exc, ClientConnectionError) or status_of(exc) in RETRY_STATUSES


def _item_error(result: dict) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    return str(error or f"status {result.get('status')}")


def _refused_request(exc: BaseException) -> bool:
    """The request itself was refused (a 4xx, or a body the client cannot serialise), as opposed to
    the engine being down or broken."""
    return status_of(exc) in (400, 413) or isinstance(exc, (ValueError, TypeError))


class Retrier:
    """Exponential backoff with jitter: `call(fn)` retries transient failures, then interrupts the run."""

    def __init__(self, max_retries: int = 5, backoff: float = 0.5, backoff_cap: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._sleep = sleep

    def pause(self, attempt: int) -> None:
        if self.backoff > 0:
            self._sleep(min(self.backoff_cap, self.backoff * 2**attempt) * random.uniform(0.5, 1.0))

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        """`fn()`, retried on a dropped connection, a timeout, 429 or 502-504; IngestInterruptedError after that."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt >= self.max_retries:
                    raise IngestInterruptedError(
                        f"{what} failed {attempt + 1} times, last with {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning("%s failed (%s), retrying", what, exc)
                self.pause(attempt)
                attempt += 1


class BulkWriter:
    """Sends documents with `client.bulk`; `write()` returns (indexed documents, [(document, reason)])."""

    def __init__(self, client: Any, index: str, retrier: Retrier | None = None, *, validate_first: bool = True):
        self.client = client
        self.index = index
        self.retrier = retrier or Retrier()
        self.retried_items = 0
        self._validate_next = validate_first

    def lines(self, documents: list[Document]) -> list[dict]:
        body: list[dict] = []
        for document in documents:
            body.append({"index": {"_index": self.index, "_id": document.doc_id}})
            body.append(document.source)
        return body

    def write(self, documents: list[Document]) -> tuple[list[Document], list[tuple[Document, str]]]:
        """Write `documents`; a request refused as a whole (a 4xx, a body that cannot be serialised)
        is split until the documents it refuses are found, so one bad document fails alone."""
        try:
            return self._write(documents)
        except IngestInterruptedError:
            raise
        except Exception as exc:
            if is_transient(exc) or not _refused_request(exc):
                raise
            if len(documents) == 1:
                return [], [(documents[0], f"{type(exc).__name__}: {exc}")]
        middle = len(documents) // 2
        first, second = self.write(documents[:middle]), self.write(documents[middle:])
        return first[0] + second[0], first[1] + second[1]

    def _write(self, documents: list[Document]) -> tuple[list[Document], list[tuple[Document, str]]]:
        indexed: list[Document] = []
        failed: list[tuple[Document, str]] = []
        pending = documents
        attempt = 0  # rounds of per-item retries
        while pending:
            body = self.lines(pending)
            if self._validate_next:  # the run's first document is checked against the spec: the
                validate_request("bulk", body[:2])  # others are built alike (a whole bulk took ~0.6 s)
                self._validate_next = False
            response = self.retrier.call(lambda: self.client.bulk(body=body), "bulk request")
            items = response.get("items", [])
            retry: list[Document] = []
            for document, item in zip(pending, items):
                result = next(iter(item.values()))
                status = int(result.get("status", 500))
                if 200 <= status < 300:
                    indexed.append(document)
                elif status in RETRY_STATUSES and attempt < self.retrier.max_retries:
                    retry.append(document)
                else:
                    failed.append((document, f"status {status}: {_item_error(result)}"))
            failed.extend((document, "no result for this item in the bulk response") for document in pending[len(items):])
            if retry:
                self.retried_items += len(retry)
                self.retrier.pause(attempt)
                attempt += 1
            pending = retry
        return indexed, failed
