"""Bulk writes: the embedded engine's `bulk` against LanceDB's `table.add`, the same batches, interleaved.

    python benchmarks/bulk.py [--docs 12800] [--batch 32] [--batch 256] [--durability request] [--lists]

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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
