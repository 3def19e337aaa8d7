"""Split one ingestion input over N workers: worker i of N indexes the records at positions
i, i + N, i + 2N, ... of the source (folders are listed sorted, manifests read in order, so every
worker sees the same order). Document ids are content hashes, so shards never collide, and a
worker that is re-run (or two workers that both see a copy of an image) update the same document
instead of adding a second one.

    cir ingest photos/ --url https://cluster:9200 --shard 0/4    # on machine 1 ... --shard 3/4 on machine 4
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, TypeVar

from ..errors import InputError
from .report import IngestReport

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """`"I/N"` → (I, N) with 0 ≤ I < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def shard(records: Iterable[T], index: int, count: int) -> Iterable[T]:
    """The records of worker `index` of `count` (every count-th, starting at `index`)."""
    if not 0 <= index < count:
        raise InputError(f"shard {index} of {count} does not exist")
    return islice(records, index, None, count)


def shard_total(total: int | None, index: int, count: int) -> int | None:
    """How many records worker `index` gets out of `total` (None when unknown)."""
    return None if total is None else len(range(index, total, count))


def ingest_sharded(client: Any, index: str, encoder: Any, source: Any, *, parallel: int = 2,
                   of: tuple[int, int] = (0, 1), errors: str | Path | None = None, **options: Any) -> IngestReport:
    """Ingest shard `of` = (I, N) of `source` as `parallel` workers at once in this process, one
    Ingestor each (own lanes and bulk writer; the encoder is shared, ONNX Runtime sessions are
    thread-safe; without `workers` the cores are shared out, one lane per core in all); returns
    the merged report. Worker j takes shard I + N·j of N·parallel.
    `source` must be re-readable (a folder or a manifest path, or a list). Failures of worker j go
    to `errors` with `.j` before its suffix."""
    from ..encoders.batches import available_cores
    from .ingestor import ingest
    from .sources import open_source

    first, count = of
    if options.get("workers") is None:
        options["workers"] = max(1, available_cores() // parallel)

    def run(worker: int) -> IngestReport:
        records, total = open_source(source)
        part, parts = first + count * worker, count * parallel
        errors_path = None if errors is None else Path(errors).with_suffix(f".{worker}{Path(errors).suffix}")
        return ingest(client, index, encoder, shard(records, part, parts), total=shard_total(total, part, parts),
                      errors=errors_path, **options)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="cir-shard") as pool:
        return merge_reports(list(pool.map(run, range(parallel))))


def merge_reports(reports: list[IngestReport]) -> IngestReport:
    """One report adding up the counts, timings and failures of the shards' reports."""
    merged = IngestReport()
    for report in reports:
        for name in ("input", "indexed", "skipped", "failed", "retried_items"):
            setattr(merged, name, getattr(merged, name) + getattr(report, name))
        merged.failures += report.failures
        merged.skip_reasons.update(report.skip_reasons)
        for stage, seconds in report.timings.items():
            merged.timings[stage] = merged.timings.get(stage, 0.0) + seconds
        merged.seconds = max(merged.seconds, report.seconds)
        merged.interrupted = merged.interrupted or report.interrupted
    return merged


__all__ = ["parse_shard", "shard", "shard_total", "ingest_sharded", "merge_reports"]
