"""Bulk writes: the embedded engine's `bulk` against LanceDB's `table.add`, the same batches, interleaved.

    python benchmarks/bulk.py [--docs 12800] [--batch 32] [--batch 256] [--durability request] [--lists]
    python benchmarks/bulk.py --only-ingest-cpu

Each document: a caption, two 256-d float vectors (image, caption), a content hash and a model id
(what `cir ingest` writes). Batch i goes to the embedded engine, then the same batch to LanceDB
(order swapped every other batch), so both see the same load. Reports documents/s and per-batch
p50 per engine and batch size, the ratio of total times (everything the embedded engine does on
its write path, periodic refreshes and garbage collection included) and the median of the
per-batch ratios (each pair ran back to back, so a load spike of the shared machine hits both). Needs `pip install lancedb` (not a
project dependency).

What each call guarantees on return: with `index.translog.durability: request` (OpenSearch's
default) the embedded `bulk` fsyncs its vector rows and log batch, so an acknowledged batch
survives a crash of the machine; with `async` it is written to the page cache and fsynced within
`index.translog.sync_interval` (5s) or at the next refresh, so it survives a crash of the process
(like LanceDB's `add`, which writes a data file and a manifest version without any fsync: strace
shows none). Documents become searchable at the next refresh, timed separately: the first read after the last
batch refreshes, indexing what is left for BM25 (the index's default `refresh_interval` of 1s also
refreshes during a run longer than that, inside the timed bulks); LanceDB's `add` builds
no full-text or vector index either (`create_fts_index` / `create_index` are separate calls).
Vectors are given to `bulk` as numpy arrays, as opensearch-py's serializer also accepts them;
`--lists` sends Python lists (a JSON client's body) and times their construction too.

Last, the CPU time per document of the embedded bulk alone (this process, all threads, 256 per
bulk, request durability) for the documents `cir ingest` writes, built by its `DocumentBuilder`
(vectors as lists of floats; images only: image_vector, content_hash, model_id, image_uri; with
captions: 5 captions and a caption_vector too), into an index set up as `cir ingest` does
(`setup_index`); and the CPU time of the refresh that indexes them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def documents(n: int, dim: int, rng: np.random.Generator) -> list[dict]:
    vectors = rng.normal(size=(n, 2, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    words = ["dog", "grass", "red", "dress", "man", "bicycle", "street", "blue", "jacket", "beach"]
    return [{"id": f"doc-{i}", "caption": " ".join(rng.choice(words, 8)), "image_vector": vectors[i, 0],
             "caption_vector": vectors[i, 1], "content_hash": f"doc-{i}", "model_id": "bench"} for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=12800)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--durability", choices=["request", "async"], action="append",
                        help="index.translog.durability of the embedded index (default: both)")
    parser.add_argument("--lists", action="store_true", help="vectors as Python lists in the bulk body")
    parser.add_argument("--only-ingest-cpu", action="store_true", help="only the CPU per document of cir ingest's documents")
    args = parser.parse_args()
    if args.only_ingest_cpu:
        return ingest_documents_cpu(args.dim)
    import lancedb
    import pyarrow as pa

    from opensearch_cir.admin import setup_index
    from opensearch_cir.encoders.manifest import Manifest
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.resources import resolve_model_dir

    docs = documents(args.docs, args.dim, np.random.default_rng(0))
    schema = pa.schema([("id", pa.string()), ("caption", pa.string()),
                        ("image_vector", pa.list_(pa.float32(), args.dim)),
                        ("caption_vector", pa.list_(pa.float32(), args.dim)),
                        ("content_hash", pa.string()), ("model_id", pa.string())])
    vector = (lambda v: v.tolist()) if args.lists else (lambda v: v)
    print(f"{args.docs} documents of dim {args.dim}, vectors as {'lists' if args.lists else 'numpy arrays'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| durability | batch | embedded docs/s | LanceDB docs/s | embedded / LanceDB time | median per-batch ratio "
          "| embedded p50 ms | LanceDB p50 ms | embedded final refresh ms | (embedded + final refresh) / LanceDB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for durability, batch in [(d, b) for d in args.durability or ["request", "async"] for b in args.batch or [32, 256]]:
        work = Path(tempfile.mkdtemp(prefix="cir-bulk-"))
        try:
            client = EmbeddedClient(work / "embedded")
            setup_index(client, "cir-bulk", Manifest.load(resolve_model_dir(None)))
            client.indices.put_settings(index="cir-bulk", body={"index": {"translog": {"durability": durability}}})
            table = lancedb.connect(str(work / "lance")).create_table("bulk", schema=schema)
            times: dict[str, list[float]] = {"embedded": [], "lancedb": []}
            for number, start in enumerate(range(0, len(docs), batch)):
                chunk = docs[start:start + batch]

                def embedded() -> None:
                    body = []
                    for d in chunk:
                        body.append({"index": {"_index": "cir-bulk", "_id": d["id"]}})
                        body.append({"caption": d["caption"], "image_vector": vector(d["image_vector"]),
                                     "caption_vector": vector(d["caption_vector"]),
                                     "content_hash": d["content_hash"], "model_id": d["model_id"]})
                    assert not client.bulk(body=body)["errors"]

                def lance() -> None:
                    table.add(pa.Table.from_pylist(chunk, schema=schema))

                for name, write in ((("embedded", embedded), ("lancedb", lance))[::1 if number % 2 == 0 else -1]):
                    started = time.perf_counter()
                    write()
                    times[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            assert client.count(index="cir-bulk")["count"] == len(docs)  # a read refreshes first
            refresh_s = time.perf_counter() - started
            assert table.count_rows() == len(docs)
            total = {name: sum(t) for name, t in times.items()}
            paired = np.median(np.asarray(times["embedded"]) / np.asarray(times["lancedb"]))
            print(f"| {durability} | {batch} | {len(docs) / total['embedded']:.0f} | {len(docs) / total['lancedb']:.0f} | "
                  f"{total['embedded'] / total['lancedb']:.2f}x | {paired:.2f}x | {np.median(times['embedded']) * 1000:.1f} | "
                  f"{np.median(times['lancedb']) * 1000:.1f} | {refresh_s * 1000:.0f} | "
                  f"{(total['embedded'] + refresh_s) / total['lancedb']:.2f}x |", flush=True)
            client.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    ingest_documents_cpu(args.dim)


def ingest_documents_cpu(dim: int, n: int = 5120, batch: int = 256) -> None:
    """CPU ms per document of the embedded bulk (and of the refresh after it) for cir ingest's documents."""
    from contextlib import nullcontext

    from opensearch_cir.admin import setup_index
    from opensearch_cir.encoders.manifest import Manifest
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.ingest.documents import DocumentBuilder, EncodedImage
    from opensearch_cir.ingest.records import Record, document_id
    from opensearch_cir.resources import resolve_model_dir

    class Encoder:
        model_id = "bench"

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = ["dog", "grass", "red", "dress", "man", "bicycle", "street", "blue", "jacket", "beach"]
    builder = DocumentBuilder(Encoder(), lambda stage: nullcontext())
    print(f"\nCPU per document of the embedded bulk ({batch} per bulk, request durability), cir ingest's documents; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| documents | bulk CPU ms/doc | refresh CPU ms/doc |")
    print("| --- | --- | --- |")
    for captions in (False, True):
        work = Path(tempfile.mkdtemp(prefix="cir-bulk-ingest-"))
        try:
            client = EmbeddedClient(work)
            setup_index(client, "cir-ingest", Manifest.load(resolve_model_dir(None)))
            bodies = []
            for start in range(0, n, batch):
                body = []
                for i in range(start, min(start + batch, n)):
                    texts = [" ".join(rng.choice(words, 10)) for _ in range(5)] if captions else []
                    item = EncodedImage(Record(b"", captions=texts, uri=f"images/{i}.jpg"), document_id(str(i).encode()), vectors[i])
                    body += [{"index": {"_index": "cir-ingest", "_id": item.content_hash}},
                             builder.source(item, vectors[i] if captions else None)]
                bodies.append(body)
            assert not client.bulk(body=bodies[0])["errors"]  # the first bulk of a process warms up
            started = time.process_time()
            for body in bodies[1:]:
                assert not client.bulk(body=body)["errors"]
            bulk_cpu = (time.process_time() - started) * len(bodies) / (len(bodies) - 1)
            started = time.process_time()
            client.indices.refresh(index="cir-ingest")
            refresh_cpu = time.process_time() - started
            client.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"| {'5 captions + caption_vector' if captions else 'images only'} | {1000 * bulk_cpu / n:.3f} | "
              f"{1000 * refresh_cpu / n:.3f} |", flush=True)


if __name__ == "__main__":
    main()
