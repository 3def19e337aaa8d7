"""The embedded engine's write path: durable on return, searchable at refresh (OpenSearch's
`refresh` parameter and `index.refresh_interval`), and one validation pass per bulk."""

from __future__ import annotations

import fcntl
import json
import os
import time

import numpy as np
import pytest

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.engines.embedded.requests import refresh_param
from opensearch_cir.engines.embedded.writes import fsync_per_bulk, refresh_interval_s
from opensearch_cir.errors import EngineError

INDEX = "cir-refresh"
DIM = 4


def make_index(root, settings: dict | None = None) -> EmbeddedClient:
    client = EmbeddedClient(root)
    client.indices.create(index=INDEX, body={"settings": settings or {}, "mappings": {"properties": {
        "caption": {"type": "text"}, "tag": {"type": "keyword"},
        "v": {"type": "knn_vector", "dimension": DIM, "space_type": "l2"}}}})
    return client


def index_docs(client, ids, **kwargs) -> dict:
    body = []
    for doc_id in ids:
        body += [{"index": {"_index": INDEX, "_id": doc_id}}, {"caption": f"document {doc_id}", "tag": "t", "v": [1.0, 0.0, 0.0, 0.0]}]
    response = client.bulk(body=body, **kwargs)
    assert not response["errors"], response
    return response


def refreshed(root) -> bool:
    """Everything acknowledged in the log is behind the manifest (readers can see it)."""
    folder = root / INDEX
    return json.loads((folder / "manifest.json").read_text())["log_bytes"] == (folder / "docs.log").stat().st_size


class HeldLock:
    """`write.lock` held as another process's bulk holds it (without refreshing anything)."""

    def __init__(self, root):
        self.fd = os.open(root / INDEX / "write.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def test_bulk_is_durable_on_return_and_searchable_after_a_read_refreshes(tmp_path):
    client = make_index(tmp_path)
    index_docs(client, ["a", "b"])
    assert not refreshed(tmp_path)  # acknowledged (in the fsynced log), not refreshed yet
    reader = EmbeddedClient(tmp_path)  # another client, as another process would
    assert reader.count(index=INDEX)["count"] == 2  # its read refreshed: no bulk was running
    assert refreshed(tmp_path)
    hits = client.search(index=INDEX, body={"query": {"match": {"caption": "document"}}})["hits"]
    assert hits["total"]["value"] == 2
    reader.close()
    client.close()


@pytest.mark.parametrize("refresh", [True, "true", "", "wait_for"])
def test_refresh_parameter_refreshes_before_returning(tmp_path, refresh):
    client = make_index(tmp_path)
    index_docs(client, ["a"], refresh=refresh)
    assert refreshed(tmp_path)
    client.index(index=INDEX, id="b", body={"caption": "one more"}, refresh="false")
    assert not refreshed(tmp_path)
    client.delete(index=INDEX, id="b", params={"refresh": "true"})
    assert refreshed(tmp_path)
    with pytest.raises(EngineError) as bad:
        index_docs(client, ["c"], refresh="sometimes")
    assert bad.value.status == 400 and "Unknown value for refresh" in str(bad.value)
    client.close()


def test_a_reader_does_not_refresh_while_another_process_writes(tmp_path):
    writer = make_index(tmp_path)
    index_docs(writer, ["a"], refresh=True)
    index_docs(writer, ["b", "c"])
    reader = EmbeddedClient(tmp_path)
    held = HeldLock(tmp_path)  # a bulk of a third process is being written
    try:
        started = time.monotonic()
        assert reader.count(index=INDEX)["count"] == 1  # the last refresh; the read does not wait
        assert time.monotonic() - started < 1.0
    finally:
        held.release()
    assert reader.count(index=INDEX)["count"] == 3  # the writer is done: the next read refreshes
    hits = reader.search(index=INDEX, body={"query": {"match": {"caption": "c"}}})["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == ["c"]
    reader.close()
    writer.close()


def test_refresh_interval_bounds_how_long_a_busy_writer_keeps_writes_invisible(tmp_path):
    client = make_index(tmp_path, {"index": {"refresh_interval": "50ms"}})
    index_docs(client, ["a"])
    assert not refreshed(tmp_path)
    time.sleep(0.06)
    index_docs(client, ["b"])  # the oldest unrefreshed write is older than the interval
    assert refreshed(tmp_path)
    client.indices.put_settings(index=INDEX, body={"index": {"refresh_interval": "-1"}})
    index_docs(client, ["c"])
    time.sleep(0.06)
    index_docs(client, ["d"])
    assert not refreshed(tmp_path)  # -1: only an explicit refresh or a read
    client.indices.refresh(index=INDEX)
    assert refreshed(tmp_path)
    client.close()


def test_a_search_idle_index_skips_scheduled_refreshes_until_someone_reads(tmp_path):
    """Without an explicit refresh_interval, as upstream's IndexShard.scheduledRefresh: the writer's
    1s refreshes run only for an index read recently here, or wanted by a reader elsewhere."""
    writer = make_index(tmp_path)
    index_docs(writer, ["a"])
    time.sleep(1.05)
    index_docs(writer, ["b"])
    assert not refreshed(tmp_path)  # nobody reads: the load is refreshed once, by the first read
    assert writer.count(index=INDEX)["count"] == 2
    index_docs(writer, ["c"])
    time.sleep(1.05)
    index_docs(writer, ["d"])
    assert refreshed(tmp_path)  # read a moment ago: the scheduled refresh runs
    other = make_index(tmp_path / "other")  # a writer that never reads ...
    index_docs(other, ["e"])
    reader = EmbeddedClient(tmp_path / "other")  # ... and a reader elsewhere, while a bulk holds the lock
    held = HeldLock(tmp_path / "other")
    try:
        assert reader.count(index=INDEX)["count"] == 0
    finally:
        held.release()
    assert (tmp_path / "other" / INDEX / "refresh.wanted").exists()
    time.sleep(1.05)
    index_docs(other, ["f"])
    assert refreshed(tmp_path / "other") and not (tmp_path / "other" / INDEX / "refresh.wanted").exists()
    for client in (reader, other, writer):
        client.close()


def test_time_values():
    assert refresh_interval_s({}) == 1.0
    assert refresh_interval_s({"index.refresh_interval": "30s"}) == 30.0
    assert refresh_interval_s({"index.refresh_interval": "500ms"}) == 0.5
    assert refresh_interval_s({"index.refresh_interval": "-1"}) is None
    with pytest.raises(EngineError):
        refresh_interval_s({"index.refresh_interval": "soon"})
    assert refresh_param(None) is False and refresh_param("wait_for") is True
    assert fsync_per_bulk({}) and not fsync_per_bulk({"index.translog.durability": "ASYNC"})
    with pytest.raises(EngineError):
        fsync_per_bulk({"index.translog.durability": "sometimes"})


def test_async_durability_fsyncs_at_refresh_and_close_not_per_bulk(tmp_path, monkeypatch):
    from opensearch_cir.engines.embedded import writes

    client = make_index(tmp_path, {"index": {"translog": {"durability": "async"}, "refresh_interval": "-1"}})
    fsyncs, synced_files = [], []
    real_fsync_path = writes._fsync_path
    monkeypatch.setattr(writes.os, "fsync", lambda fd: fsyncs.append(fd))
    monkeypatch.setattr(writes, "_fsync_path", lambda path: (synced_files.append(path.name), real_fsync_path(path)))
    index_docs(client, ["a", "b"])
    index_docs(client, ["c"])
    assert fsyncs == [] and synced_files == []  # acknowledged from the page cache
    client.indices.refresh(index=INDEX)
    assert sorted(synced_files) == ["docs.log", "v.f32"]  # before the manifest points at them
    assert client.count(index=INDEX)["count"] == 3


def test_request_durability_fsyncs_every_file_once_after_all_are_written(tmp_path, monkeypatch):
    """The rows and the log batch are written first and fsynced together (one journal commit
    serves them): when any fsync starts, every file already holds the whole batch."""
    from opensearch_cir.engines.embedded import writes

    client = make_index(tmp_path)
    index_docs(client, ["first"])
    folder = tmp_path / INDEX
    files = [folder / "docs.log", folder / "vectors" / "v.f32"]
    seen = []
    real_fsync = os.fsync
    monkeypatch.setattr(writes.os, "fsync", lambda fd: (seen.append([path.stat().st_size for path in files]), real_fsync(fd)))
    index_docs(client, ["a", "b", "c"])
    final = [path.stat().st_size for path in files]
    assert len(seen) == 2 and all(sizes == final for sizes in seen)  # the log (here) and the rows (pool), each once
    assert final[1] == 4 * DIM * 4
    client.close()


def test_one_validation_pass_keeps_ordinals_and_vectors_aligned(tmp_path):
    client = make_index(tmp_path)
    good = {
        "np": np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32),  # numpy arrays, as opensearch-py serialises them
        "list": [0.0, 0.0, 1.0, 0.0],
        "ints": [0, 0, 0, 2],
    }
    bad = {
        "short": [1.0, 2.0],
        "nan": [float("nan"), 0.0, 0.0, 0.0],
        "text": ["a", "b", "c", "d"],
        "np-short": np.zeros(3, dtype=np.float32),
        "nested": [[1.0, 0.0, 0.0, 0.0]],
        "scalar": 1.0,
    }
    body = []
    for doc_id, vector in [("np", good["np"]), ("short", bad["short"]), ("list", good["list"]), ("nan", bad["nan"]),
                           ("text", bad["text"]), ("np-short", bad["np-short"]), ("ints", good["ints"]),
                           ("nested", bad["nested"]), ("scalar", bad["scalar"])]:
        body += [{"index": {"_index": INDEX, "_id": doc_id}}, {"caption": doc_id, "v": vector}]
    body += [{"index": {"_index": INDEX, "_id": "none"}}, {"caption": "no vector", "extra": {"n": 3}},
             {"index": {"_index": INDEX, "_id": "surrogate"}}, {"caption": "half a pair \ud800", "v": [0.0, 0.0, 0.0, 3.0]}]
    items = [next(iter(item.values())) for item in client.bulk(body=body)["items"]]
    status = {item["_id"]: item["status"] for item in items}
    assert {doc_id for doc_id, code in status.items() if code == 201} == set(good) | {"none"}
    assert status["surrogate"] == 400 and "UTF-8" in items[-1]["error"]["reason"]
    for doc_id in bad:
        error = next(item["error"] for item in items if item["_id"] == doc_id)
        assert status[doc_id] == 400 and error["type"] == "mapper_parsing_exception"  # k-NN's message for each (data_types.parse)
        assert any(word in error["reason"] for word in ("dimension", "NaN", "array of numbers")), error
    for doc_id, vector in good.items():
        stored = client.get(index=INDEX, id=doc_id)["_source"]
        assert stored["caption"] == doc_id and stored["v"] == pytest.approx(np.asarray(vector, dtype=float).tolist())
        hits = client.search(index=INDEX, body={"query": {"knn": {"v": {"vector": np.asarray(vector, dtype=float).tolist(), "k": 1}}}})
        assert hits["hits"]["hits"][0]["_id"] == doc_id
    assert client.get(index=INDEX, id="none")["_source"] == {"caption": "no vector", "extra": {"n": 3}}
    client.close()


def test_dynamic_fields_are_durable_with_the_bulk_that_maps_them(tmp_path):
    client = make_index(tmp_path)
    client.bulk(body=[{"index": {"_index": INDEX, "_id": "a"}}, {"caption": 7, "tag": ["x", "y"], "extra": {"brand": "acme", "n": 3}},
                      {"index": {"_index": INDEX, "_id": "b"}}, {"extra": {"n": "many"}}])
    # no refresh and no close: a later process reads the folder as the writer left it
    other = EmbeddedClient(tmp_path)
    assert other.count(index=INDEX, body={"query": {"term": {"extra.brand": "acme"}}})["count"] == 1
    assert other.count(index=INDEX, body={"query": {"range": {"extra.n": {"gte": 3}}}})["count"] == 1
    assert other.count(index=INDEX, body={"query": {"match": {"caption": "7"}}})["count"] == 1
    assert other.get(index=INDEX, id="a")["_source"]["tag"] == ["x", "y"]
    with pytest.raises(EngineError):
        other.get(index=INDEX, id="b")  # "many" is not a long: refused, not stored
    other.close()
    client.close()


@pytest.mark.parametrize("data_type, vectors", [("byte", [[1, -2, 3, 127], [-128, 0, 5, 9]]), ("binary", [[5], [-3]])])
def test_byte_and_binary_rows_are_checked_and_recovered_by_their_stored_bytes(tmp_path, data_type, vectors):
    dim = 8 if data_type == "binary" else DIM
    space = "hamming" if data_type == "binary" else "l2"
    client = EmbeddedClient(tmp_path)
    client.indices.create(index=INDEX, body={"mappings": {"properties": {
        "v": {"type": "knn_vector", "dimension": dim, "data_type": data_type, "space_type": space}}}})
    body = []
    for i, vector in enumerate(vectors):
        body += [{"index": {"_index": INDEX, "_id": str(i)}}, {"v": vector}]
    assert not client.bulk(body=body)["errors"]
    assert not refreshed(tmp_path)  # acknowledged through the log batch, whose header holds the rows' CRC
    client.close()
    reader = EmbeddedClient(tmp_path)  # its refresh checks the batch against the rows on disk
    assert [reader.get(index=INDEX, id=str(i))["_source"]["v"] for i in range(len(vectors))] == vectors
    reader.close()
