"""What an ingestion run did: counts that add up, per-stage timings, and every failure with its reason."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Iterator

from ..errors import InputError

STAGES = ("read", "decode", "wait", "lookup", "encode_images", "encode_texts", "write")


@dataclass
class Failure:
    """One input that was not indexed. stage: read | decode | encode | write."""

    source: str
    stage: str
    error: str
    reason: str


@dataclass
class IngestReport:
    """Counts (indexed + skipped + failed + not_processed == input), timings and failures.

    timings: seconds per stage; `read` and `decode` run in worker threads and are summed over
    them, `encode_texts` and `write` run in the writer thread, the others in the calling thread
    (`wait`: the calling thread waiting for the workers or the writer). `not_processed` is non-zero only for an interrupted run;
    it includes the inputs not read yet when the source's size was known (`expected`).
    """

    input: int = 0
    expected: int | None = None
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    retried_items: int = 0
    seconds: float = 0.0
    interrupted: str | None = None
    skip_reasons: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    failures: list[Failure] = field(default_factory=list)

    @property
    def not_processed(self) -> int:
        return self.total - self.indexed - self.skipped - self.failed

    @property
    def total(self) -> int:
        """The inputs of the run: those read, or all of them when an interrupted run knew how many."""
        return max(self.input, self.expected or 0) if self.interrupted else self.input

    @property
    def items_per_second(self) -> float:
        return (self.indexed + self.skipped + self.failed) / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        line = (
            f"input {self.total}: indexed {self.indexed}, skipped {self.skipped}, failed {self.failed}"
            f" in {self.seconds:.1f} s ({self.items_per_second:.1f} items/s)"
        )
        if self.skip_reasons:
            line += "; skipped: " + ", ".join(f"{n} {why}" for why, n in self.skip_reasons.items())
        if self.retried_items:
            line += f"; {self.retried_items} bulk item retries"
        if self.interrupted:
            line += f"\nINTERRUPTED, {self.not_processed} not processed: {self.interrupted}. Re-run with --resume."
        return line

    def timing_summary(self) -> str:
        return ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in self.timings.items() if seconds)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["skip_reasons"] = dict(self.skip_reasons)
        data["not_processed"] = self.not_processed
        data["items_per_second"] = self.items_per_second
        return data


class StageTimer:
    """Thread-safe accumulation of seconds per stage into a report's `timings`."""

    def __init__(self, timings: dict[str, float]):
        self._timings = timings
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._timings[stage] = self._timings.get(stage, 0.0) + elapsed


class ErrorLog:
    """Appends each failure as one JSON line, flushed at once so a crash loses nothing.

    The report is per run: a path's previous content is removed at the start, and the file is
    created on the first failure only, so a clean run leaves no file behind.
    """

    def __init__(self, target: str | Path | IO[str] | None):
        self._path = Path(target) if isinstance(target, (str, Path)) else None
        self._handle: IO[str] | None = None if self._path else target
        if self._path is not None:
            try:  # checked now, not at the first failure of a long run
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._path.unlink(missing_ok=True)
            except OSError as exc:
                raise InputError(f"error report {self._path}: cannot be written ({exc.strerror})") from None

    def write(self, failure: Failure) -> None:
        if self._handle is None and self._path is not None:
            self._handle = open(self._path, "w", encoding="utf-8")
        if self._handle is not None:
            self._handle.write(json.dumps(asdict(failure), ensure_ascii=False) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._path is not None and self._handle is not None:
            self._handle.close()
        self._handle = None
