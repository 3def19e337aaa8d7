"""`cir ingest` as a Ray Data job: encoding spread over a Ray cluster's workers, writing from the driver.

    from opensearch_cir.ingest.distributed import ingest_with_ray
    report = ingest_with_ray(client, "cir-images", "photos/", model=None, workers=8)

Why Ray Data rather than Spark: the work is Python from end to end (Pillow decode, ONNX Runtime,
tokenizers), which Ray runs in long-lived Python actors that load the model once and keep their
ONNX Runtime sessions, and schedule on GPUs (`num_gpus`) next to CPU decoding, with no JVM and no
Arrow round trip per Python UDF call. `pip install 'opensearch-cir[distributed]'` adds it; CI does
not install it (its tests skip without it), the in-process multi-worker path (`ingest.shards`) is
tested everywhere.

Each actor runs the project's own `Ingestor` (read, hash, in-shard de-duplication, decode,
encode, captions, failures with reasons) against a stand-in client that keeps the documents
instead of writing them; the documents come back as rows and the driver writes them with
`BulkWriter` (retries, per-item failures) to the real engine, so one writer serves the embedded
engine as well as a cluster. Ids are content hashes: a re-run, or the same image in two workers'
blocks, updates one document.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import resources
from .ingestor import Ingestor
from .records import Record
from .report import Failure, IngestReport
from .sources import BadRow, open_source
from .writer import BulkWriter, Document, Retrier


class _KeepingClient:
    """The engine as seen from a worker: every bulk item is kept and acknowledged."""

    def __init__(self):
        self.documents: list[tuple[str, dict]] = []

    def bulk(self, body: list[dict], **_: Any) -> dict:
        items = []
        for action, source in zip(body[::2], body[1::2]):
            self.documents.append((action["index"]["_id"], source))
            items.append({"index": {"_id": action["index"]["_id"], "status": 201}})
        return {"errors": False, "items": items}


class EncodeBlock:
    """A Ray actor: loads the model once, turns a block of record rows into document / failure rows."""

    def __init__(self, model: str, index: str, batch_size: int = 32):
        from ..encoders import load_encoder

        self.encoder = load_encoder(model, batch_size=batch_size)
        self.index = index
        self.batch_size = batch_size

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keeper = _KeepingClient()
        ingestor = Ingestor(keeper, self.index, self.encoder, batch_size=self.batch_size, workers=1, refresh=False)
        with ingestor:
            for row in block["record"]:
                ingestor.add(Record(**json.loads(row)) if not row.startswith("!") else BadRow(*json.loads(row[1:])))
        out = [("document", json.dumps({"id": doc_id, "source": source})) for doc_id, source in keeper.documents]
        out += [("failure", json.dumps(dataclasses.asdict(failure))) for failure in ingestor.report.failures]
        out += [("skip", reason) for reason, count in ingestor.report.skip_reasons.items() for _ in range(count)]
        return {"kind": np.array([kind for kind, _ in out], dtype=object),
                "payload": np.array([payload for _, payload in out], dtype=object)}


def _row(record: Record | BadRow | dict) -> str:
    if isinstance(record, BadRow):
        return "!" + json.dumps([record.source, record.reason])
    if isinstance(record, dict):
        record = Record.from_mapping(record)
    if isinstance(record.image, bytes):
        raise ValueError("ingest_with_ray reads images by path or URL; write in-memory images to files first")
    return json.dumps(dataclasses.asdict(record))


def ingest_with_ray(client: Any, index: str, source: str | Path, *, model: str | None = None, workers: int = 2,
                    batch_size: int = 32, block_rows: int = 256, write_batch_size: int = 256) -> IngestReport:
    """Ingest `source` (a folder or manifest readable by every worker) with `workers` Ray actors.

    Starts a local Ray instance unless `ray.init` was called (connect to a cluster with
    `ray.init(address=...)` first). Returns the run's report (counts, failures with reasons).
    """
    import time

    import ray

    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    records, _ = open_source(source)
    rows = [{"record": _row(record)} for record in records]
    report = IngestReport(input=len(rows))
    if not rows:
        return report
    blocks = max(1, -(-len(rows) // block_rows))
    encoded = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        EncodeBlock, fn_constructor_kwargs={"model": str(resources.resolve_model_dir(model)), "index": index,
                                            "batch_size": batch_size},
        batch_size=block_rows, concurrency=workers, batch_format="numpy")
    writer = BulkWriter(client, index, Retrier())
    pending: list[Document] = []

    def write() -> None:
        indexed, failed = writer.write(pending)
        report.indexed += len(indexed)
        for document, reason in failed:
            report.failed += 1
            report.failures.append(Failure(document.name, "write", "BulkItemError", reason))
        pending.clear()

    for batch in encoded.iter_batches(batch_size=write_batch_size, batch_format="numpy"):
        for kind, payload in zip(batch["kind"], batch["payload"]):
            if kind == "document":
                document = json.loads(payload)
                pending.append(Document(document["id"], document["source"], document["source"].get("image_uri", "")))
            elif kind == "failure":
                report.failed += 1
                report.failures.append(Failure(**json.loads(payload)))
            else:
                report.skipped += 1
                report.skip_reasons[payload] += 1
        if len(pending) >= write_batch_size:
            write()
    if pending:
        write()
    client.indices.refresh(index=index)
    report.seconds = time.perf_counter() - started
    return report
