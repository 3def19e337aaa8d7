"""Crash safety: a writer killed with SIGKILL mid-bulk, mid-refresh or between bulks loses at most the
unacknowledged batch, and keeps every acknowledged one exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from opensearch_cir.engines.embedded import EmbeddedClient

BATCH = 150
DIM = 32

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from opensearch_cir.engines.embedded import EmbeddedClient, vectors, writes

    root, first, crash = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    DIM, BATCH = %d, %d

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    if crash == "before_ack":  # vector rows being written, the log batch not fsynced
        vectors.VectorField.append = die
    elif crash == "before_refresh":  # acknowledged bulks, none refreshed: any refresh kills the writer
        writes.Writes._publish = die
    elif crash == "mid_refresh":  # each bulk refreshes; killed after tantivy's commit, before the manifest
        original = writes.atomic_write_json
        def write_json(path, obj):
            if path.name == "manifest.json":
                die()
            original(path, obj)
        writes.atomic_write_json = write_json

    client = EmbeddedClient(root)
    if not client.indices.exists(index="crash"):
        client.indices.create(index="crash", body={"mappings": {"properties": {
            "caption": {"type": "text", "analyzer": "a"},
            "v": {"type": "knn_vector", "dimension": DIM, "space_type": "l2"}}},
            "settings": {"analysis": {"tokenizer": {"t": {"type": "pattern", "pattern": "[^\\\\p{L}\\\\p{N}]+"}},
                                      "analyzer": {"a": {"type": "custom", "tokenizer": "t", "filter": ["lowercase"]}}}}})
    if crash == "async":  # acknowledged without fsync (index.translog.durability: async): the page cache keeps it
        client.indices.put_settings(index="crash", body={"index": {"translog": {"durability": "async"}}})
        os.fsync = die  # nothing fsyncs on the bulk path (a refresh would: that kills the writer too)
    batch = first
    while True:
        body = []
        for i in range(BATCH):
            rng = np.random.default_rng(batch * 100_000 + i)
            body += [{"index": {"_index": "crash", "_id": f"b{batch}-{i}"}},
                     {"caption": f"batch{batch} item{i} " + "filler " * (i %% 7), "n": i, "v": rng.normal(size=DIM).tolist()}]
        response = client.bulk(body=body, refresh=crash == "mid_refresh")
        assert not response["errors"]
        print(f"ACK {batch}", flush=True)
        batch += 1
    """
) % (DIM, BATCH)


def run_writer(root, first_batch: int, crash: str, kill_after_acks: int | None = None) -> list[int]:
    """Start a writer; SIGKILL it after `kill_after_acks` acknowledgements (+ a random delay), or let
    it kill itself at the `crash` point. Returns the acknowledged batch numbers."""
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(first_batch), crash], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    acked = []
    try:
        for line in proc.stdout:
            acked.append(int(line.split()[1]))
            if kill_after_acks is not None and len(acked) >= kill_after_acks:
                time.sleep(np.random.default_rng(len(acked)).uniform(0.0, 0.05))
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    return acked


def check_index(root, acked: set[int]) -> set[int]:
    """Every acknowledged batch is complete and searchable; every batch present is complete."""
    client = EmbeddedClient(root)
    total = client.count(index="crash")["count"]
    ids = set()  # collected one item number at a time: a single search returns at most 10,000 hits
    for i in range(BATCH):
        response = client.search(index="crash", body={"size": 10_000, "_source": False, "query": {"term": {"n": i}}})
        ids |= {h["_id"] for h in response["hits"]["hits"]}
    assert len(ids) == total
    present = {int(doc_id[1:].split("-")[0]) for doc_id in ids}
    assert acked <= present
    for batch in present:
        batch_ids = {f"b{batch}-{i}" for i in range(BATCH)}
        assert batch_ids <= ids, f"batch {batch} is half-written"
        text = client.search(index="crash", body={"query": {"match": {"caption": f"batch{batch}"}}, "_source": False, "size": 1})
        assert text["hits"]["total"]["value"] == BATCH
        for i in (0, BATCH - 1):
            doc = client.get(index="crash", id=f"b{batch}-{i}")["_source"]
            expected = np.random.default_rng(batch * 100_000 + i).normal(size=DIM).astype(np.float32)
            np.testing.assert_array_equal(np.asarray(doc["v"], dtype=np.float32), expected)
            assert doc["n"] == i and doc["caption"].startswith(f"batch{batch} item{i}")
    top = client.search(index="crash", body={"query": {"knn": {"v": {"vector": [0.0] * DIM, "k": 3}}}})
    assert len(top["hits"]["hits"]) == 3
    client.close()
    return present


def test_sigkill_mid_bulk_never_loses_acknowledged_batches(tmp_path):
    root = tmp_path / "db"
    acked: set[int] = set()
    acked |= set(run_writer(root, 0, "none", kill_after_acks=3))
    present = check_index(root, acked)
    acked |= set(run_writer(root, max(present) + 1, "before_ack"))
    present_after = check_index(root, acked)
    assert present_after == present  # the batch killed before its acknowledgement is gone entirely
    acked |= set(run_writer(root, max(present_after) + 1, "mid_refresh"))
    present_final = check_index(root, acked)  # tantivy ahead of the manifest: indexed again, once
    assert present_final == present_after | acked | {max(present_after) + 1}  # durable though not acknowledged
    acked |= set(run_writer(root, max(present_final) + 1, "none", kill_after_acks=2))
    check_index(root, acked)


def test_sigkill_after_acknowledged_bulks_before_any_refresh(tmp_path):
    """Deferred refresh: the acknowledged batches exist only in the log and vector files when the
    writer dies; reopening refreshes them into the text index, each document exactly once."""
    root = tmp_path / "db"
    present = check_index(root, set(run_writer(root, 0, "none", kill_after_acks=1)))
    acked = set(run_writer(root, max(present) + 1, "before_refresh", kill_after_acks=3))
    assert len(acked) >= 1
    manifest = json.loads((root / "crash" / "manifest.json").read_text())
    assert manifest["log_bytes"] < (root / "crash" / "docs.log").stat().st_size  # not refreshed when killed
    present_after = check_index(root, acked)  # every acknowledged batch whole and searchable, once
    assert acked <= present_after and present <= present_after
    assert present_after - present - acked <= {max(acked) + 1}  # at most the batch being written


def test_readers_see_whole_batches_while_a_writer_writes(tmp_path):
    root = tmp_path / "db"
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), "0", "none"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        writer.stdout.readline()  # the index exists and holds one batch
        reader = EmbeddedClient(root)
        seen = set()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            before = reader.count(index="crash")["count"]
            firsts = reader.search(index="crash", body={"query": {"match": {"caption": "item0"}}, "size": 0})["hits"]["total"]["value"]
            after = reader.count(index="crash")["count"]
            assert before % BATCH == 0 and after % BATCH == 0  # batches appear whole
            assert before <= firsts * BATCH <= after  # the text view follows the same commits
            seen.add(after)
        assert len(seen) >= 2  # the reader followed the writer
        reader.close()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    check_index(root, set())


def test_sigkill_with_async_durability_keeps_acknowledged_batches(tmp_path):
    root = tmp_path / "db"
    present = check_index(root, set(run_writer(root, 0, "none", kill_after_acks=1)))
    acked = set(run_writer(root, max(present) + 1, "async", kill_after_acks=3))
    present_after = check_index(root, acked)
    assert acked <= present_after and present_after - present - acked <= {max(acked, default=max(present)) + 1}
