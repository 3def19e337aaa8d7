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
    """A dropped connection, a timeout, or a 429 / 502-504 answer to the whole request."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
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


class BulkWriter:
    """Sends documents with `client.bulk`; `write()` returns (indexed documents, [(document, reason)])."""

    def __init__(
        self,
        client: Any,
        index: str,
        *,
        max_retries: int = 5,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
        validate_first: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.index = index
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.retried_items = 0
        self._validate_next = validate_first
        self._sleep = sleep

    def _pause(self, attempt: int) -> None:
        if self.backoff > 0:
            self._sleep(min(self.backoff_cap, self.backoff * 2**attempt) * random.uniform(0.5, 1.0))

    def lines(self, documents: list[Document]) -> list[dict]:
        body: list[dict] = []
        for document in documents:
            body.append({"index": {"_index": self.index, "_id": document.doc_id}})
            body.append(document.source)
        return body

    def write(self, documents: list[Document]) -> tuple[list[Document], list[tuple[Document, str]]]:
        indexed: list[Document] = []
        failed: list[tuple[Document, str]] = []
        pending = documents
        attempt = 0
        while pending:
            body = self.lines(pending)
            if self._validate_next:  # the first body of a run is checked against the spec
                validate_request("bulk", body)
                self._validate_next = False
            try:
                response = self.client.bulk(body=body)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt >= self.max_retries:
                    raise IngestInterruptedError(
                        f"bulk request failed {attempt + 1} times, last with {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning("bulk request failed (%s), retrying", exc)
                self._pause(attempt)
                attempt += 1
                continue
            retry: list[Document] = []
            for document, item in zip(pending, response.get("items", [])):
                result = next(iter(item.values()))
                status = int(result.get("status", 500))
                if 200 <= status < 300:
                    indexed.append(document)
                elif status in RETRY_STATUSES and attempt < self.max_retries:
                    retry.append(document)
                else:
                    failed.append((document, f"status {status}: {_item_error(result)}"))
            if len(response.get("items", [])) != len(pending):
                missing = pending[len(response.get("items", [])):]
                failed.extend((document, "no result for this item in the bulk response") for document in missing)
            if retry:
                self.retried_items += len(retry)
                self._pause(attempt)
                attempt += 1
            pending = retry
        return indexed, failed
