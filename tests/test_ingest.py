"""Ingestion: sources, content-hash ids, failure modes (bad files, 429 per bulk item, a dropped
connection then --resume) and the report's bookkeeping, on the tiny real encoder."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from opensearch_cir import admin
from opensearch_cir.encoders.preprocess import load_image
from opensearch_cir.errors import EngineError, IngestInterruptedError
from opensearch_cir.ingest import Ingestor, Record, ingest, mean_caption_vectors

INDEX = "cir-test"


class _Namespace:
    def __init__(self, **methods):
        self.__dict__.update(methods)


class InMemoryClient:
    """The documented opensearch-py subset over dicts: enough to observe what ingestion writes."""

    def __init__(self):
        self.indices_store: dict[str, dict] = {}
        self.mappings: dict[str, dict] = {}
        self.templates: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.indices = _Namespace(
            create=self._create, exists=lambda index: index in self.indices_store,
            delete=lambda index: self.indices_store.pop(index), refresh=lambda index: {"_shards": {}},
            put_index_template=lambda name, body: self.templates.__setitem__(name, body),
            get_mapping=self._get_mapping, put_mapping=self._put_mapping,
        )
        self.search_pipeline = _Namespace(put=self._put_pipeline, get=self._get_pipeline)

    def _create(self, index, body):
        if index in self.indices_store:
            raise EngineError(f"resource_already_exists_exception: {index}", status=400)
        self.indices_store[index] = {}
        self.mappings[index] = json.loads(json.dumps(body.get("mappings", {})))

    def _get_mapping(self, index):
        if index not in self.mappings:
            raise EngineError(f"no such index [{index}]", status=404)
        return {index: {"mappings": self.mappings[index]}}

    def _put_mapping(self, index, body):
        mapping = self.mappings[index]
        mapping.setdefault("properties", {}).update(body.get("properties", {}))
        if "_meta" in body:
            mapping["_meta"] = body["_meta"]

    def _put_pipeline(self, id, body):
        self.pipelines[id] = body

    def _get_pipeline(self, id):
        if id not in self.pipelines:
            raise EngineError(f"pipeline {id} not found", status=404)
        return {id: self.pipelines[id]}

    def bulk(self, body, index=None, refresh=None):
        items = []
        for action, source in zip(body[::2], body[1::2]):
            meta = action["index"]
            docs = self.indices_store.setdefault(meta["_index"], {})
            result = "updated" if meta["_id"] in docs else "created"
            docs[meta["_id"]] = source
            items.append({"index": {"_index": meta["_index"], "_id": meta["_id"], "status": 201, "result": result}})
        return {"took": 1, "errors": False, "items": items}

    def search(self, index, body, params=None):
        if index not in self.indices_store:
            raise EngineError(f"no such index [{index}]", status=404)
        wanted = set(body["query"]["terms"]["content_hash"])
        hits = [
            {"_id": doc_id, "_score": 1.0, "_source": {"content_hash": doc["content_hash"]}}
            for doc_id, doc in self.indices_store[index].items() if doc["content_hash"] in wanted
        ]
        return {"hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits[: body["size"]]}}

    def get(self, index, id):
        if id not in self.indices_store.get(index, {}):
            raise EngineError(f"document {id} not found", status=404)
        return {"_index": index, "_id": id, "found": True, "_source": self.indices_store[index][id]}

    def count(self, index, body=None):
        return {"count": len(self.indices_store.get(index, {}))}


class Flaky:
    """Wraps a client (in-memory or the embedded engine): rejects chosen bulk items with a per-item
    status a number of times, or drops the connection after some bulk calls; counts writes per id."""

    def __init__(self, inner, reject=None, times=1, drop_after_calls=None):
        self.inner = inner
        self.reject = reject or {}  # id -> (status, error type)
        self.times = Counter({doc_id: times for doc_id in self.reject})
        self.drop_after_calls = drop_after_calls
        self.calls = 0
        self.writes: Counter = Counter()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def bulk(self, body, **kwargs):
        self.calls += 1
        if self.drop_after_calls is not None and self.calls > self.drop_after_calls:
            raise ConnectionResetError("connection reset by peer")
        accepted, items = [], []
        for action, source in zip(body[::2], body[1::2]):
            doc_id = action["index"]["_id"]
            if doc_id in self.reject and self.times[doc_id] > 0:
                self.times[doc_id] -= 1
                status, kind = self.reject[doc_id]
                items.append({"index": {"_id": doc_id, "status": status, "error": {"type": kind, "reason": "rejected"}}})
            else:
                accepted += [action, source]
                items.append(None)
        written = iter(self.inner.bulk(body=accepted, **kwargs)["items"]) if accepted else iter(())
        items = [item if item is not None else next(written) for item in items]
        for item in items:
            result = item["index"]
            if 200 <= result["status"] < 300:
                self.writes[result["_id"]] += 1
        return {"took": 1, "errors": any("error" in i["index"] for i in items), "items": items}


@pytest.fixture(params=["memory", "embedded"])
def backend(request, tmp_path):
    """A fresh client: the in-memory fake, or B's embedded engine in a temporary folder."""
    if request.param == "memory":
        yield InMemoryClient()
        return
    from opensearch_cir.engines.embedded import EmbeddedClient

    client = EmbeddedClient(tmp_path / "engine")
    yield client
    client.close()


def _source(client, doc_id):
    return client.get(index=INDEX, id=doc_id)["_source"]


def _count(client):
    client.indices.refresh(index=INDEX)
    return client.count(index=INDEX)["count"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny")), threads=1, device="cpu")


def _png(color, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def folder(tmp_path):
    """12 distinct good images (some captioned by sidecars) mixed with 4 bad files and a non-image."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    good = {}
    for i in range(12):
        path = root / ("sub" if i % 3 == 0 else ".") / f"img{i:02d}.png"
        data = _png((i * 20, 255 - i * 20, (i * 37) % 256))
        path.write_bytes(data)
        good[path.relative_to(root).as_posix()] = _sha(data)
    (root / "img00.txt").write_text("unused: no image of that name at this level\n")
    (root / "img01.txt").write_text("a green square\na bright square\n")
    (root / "img02.json").write_text(json.dumps({"caption": "a red dress", "metadata": {"colour": "red"}}))
    (root / "broken.jpg").write_bytes(b"this is not a jpeg at all")
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.png").write_bytes(_png("blue")[:60])
    (root / "sub" / "text.webp").write_bytes(b"RIFF....WEBPgarbage")
    (root / "notes.md").write_text("not an image, ignored by extension")
    bad = {"broken.jpg", "empty.png", "truncated.png", "sub/text.webp"}
    return root, good, bad


def _errors(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ready(client, encoder):
    admin.setup_index(client, INDEX, encoder.manifest, pipelines={})
    return client


def test_folder_with_bad_files(backend, folder, encoder, tmp_path):
    root, good, bad = folder
    client = _ready(backend, encoder)
    report = ingest(client, INDEX, encoder, root, errors=tmp_path / "errors.jsonl", batch_size=5, retry_backoff=0)
    assert (report.input, report.indexed, report.failed, report.skipped) == (16, 12, 4, 0)
    assert report.indexed + report.skipped + report.failed == report.input
    assert _count(client) == 12
    for doc_id in good.values():  # ids are the sha256 of the image bytes
        assert _source(client, doc_id)["content_hash"] == doc_id
    errors = _errors(tmp_path / "errors.jsonl")
    assert {e["source"] for e in errors} == bad
    assert all(e["stage"] in ("read", "decode") and e["reason"] for e in errors)
    captioned = _source(client, good["img01.png"])
    assert captioned["caption"] == ["a green square", "a bright square"]
    assert _source(client, good["img02.png"])["metadata"] == {"colour": "red"}
    assert np.isclose(np.linalg.norm(captioned["caption_vector"]), 1.0, atol=1e-5)
    plain = _source(client, good["img04.png"])
    assert "caption" not in plain and plain["model_id"] == encoder.model_id
    assert _source(client, good["sub/img03.png"])["image_uri"] == str((root / "sub" / "img03.png").resolve())
    expected = encoder.encode_images([root / "img04.png"])[0]
    assert np.allclose(np.array(plain["image_vector"], dtype=np.float32), expected, atol=1e-5)
    assert report.timings["encode_images"] > 0 and report.timings["decode"] > 0


def test_reingest_updates_instead_of_duplicating(backend, folder, encoder, monkeypatch):
    from opensearch_cir.encoders import preprocess as preprocess_module

    root, good, _ = folder
    client = _ready(backend, encoder)
    ingest(client, INDEX, encoder, root, retry_backoff=0)
    again = ingest(client, INDEX, encoder, root, retry_backoff=0)
    assert again.indexed == 12 and _count(client) == 12
    decoded = []
    monkeypatch.setattr(preprocess_module, "load_image", lambda data, *args, **kw: decoded.append(1) or load_image(data, *args, **kw))
    resumed = ingest(client, INDEX, encoder, root, resume=True, retry_backoff=0)
    assert (resumed.indexed, resumed.skipped, resumed.failed) == (0, 12, 4)
    assert resumed.skip_reasons == {"already indexed": 12}
    assert len(decoded) == 3  # only the 3 non-empty bad files: known images are skipped before decoding


def test_identical_bad_files_are_each_reported(encoder, tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"same corrupt bytes")
    report = ingest(InMemoryClient(), INDEX, encoder, tmp_path, errors=tmp_path / "e.jsonl")
    assert (report.failed, report.skipped) == (2, 0)
    assert [e["source"] for e in _errors(tmp_path / "e.jsonl")] == ["a.jpg", "b.jpg"]


def test_bulk_items_rejected_with_429_are_retried(backend, folder, encoder, tmp_path):
    root, good, _ = folder
    ids = sorted(good.values())
    rejected = {ids[0]: (429, "es_rejected_execution_exception"), ids[5]: (429, "es_rejected_execution_exception"),
                ids[7]: (400, "mapper_parsing_exception")}
    client = Flaky(_ready(backend, encoder), reject=rejected, times=2)
    report = ingest(client, INDEX, encoder, root, errors=tmp_path / "e.jsonl", batch_size=4, retry_backoff=0)
    assert report.indexed == 11 and report.failed == 5
    assert report.retried_items == 4  # two 429 items, two retries each
    assert client.writes[ids[0]] == 1 and client.writes[ids[5]] == 1 and ids[7] not in client.writes
    assert set(client.writes.values()) == {1} and _count(client) == 11
    write_errors = [e for e in _errors(tmp_path / "e.jsonl") if e["stage"] == "write"]
    assert len(write_errors) == 1 and "mapper_parsing_exception" in write_errors[0]["reason"]


def test_persistent_429_ends_as_failure_not_loss(encoder, tmp_path):
    data = _png("purple")
    client = Flaky(InMemoryClient(), reject={_sha(data): (429, "es_rejected_execution_exception")}, times=100)
    with Ingestor(client, INDEX, encoder, max_retries=3, retry_backoff=0, errors=tmp_path / "e.jsonl") as ingestor:
        ingestor.add(Record(data, captions="purple square", uri="mem://purple"))
    assert (ingestor.report.indexed, ingestor.report.failed) == (0, 1)
    assert "429" in _errors(tmp_path / "e.jsonl")[0]["reason"]


def test_connection_drop_then_resume(backend, folder, encoder, tmp_path):
    root, good, bad = folder
    flaky = Flaky(_ready(backend, encoder), drop_after_calls=1)
    with pytest.raises(IngestInterruptedError):
        ingest(flaky, INDEX, encoder, root, batch_size=3, write_batch_size=3, max_retries=2, retry_backoff=0)
    first = sum(flaky.writes.values())
    assert 0 < first < len(good) and _count(flaky) == first

    healthy = Flaky(backend)  # the same engine, the connection back
    report = ingest(healthy, INDEX, encoder, root, resume=True, batch_size=3, errors=tmp_path / "e.jsonl", retry_backoff=0)
    assert report.skipped == first and report.indexed == len(good) - first
    assert report.indexed + report.skipped + report.failed == report.input == len(good) + len(bad)
    assert _count(healthy) == len(good)
    assert flaky.writes + healthy.writes == Counter(dict.fromkeys(good.values(), 1))  # each good input once
    assert {e["source"] for e in _errors(tmp_path / "e.jsonl")} == bad


def test_hook_api_and_duplicates_within_a_run(encoder):
    client = InMemoryClient()
    data = _png("orange")
    with Ingestor(client, INDEX, encoder, batch_size=2) as ingestor:
        ingestor.add({"image": data, "caption": "an orange square", "uri": "s3://bucket/o.png"})
        ingestor.add(Record(data, captions=["copy"]))
        ingestor.add_many([Record(_png("black")), Record(_png("white"))])
    report = ingestor.report
    assert (report.input, report.indexed, report.skipped) == (4, 3, 1)
    assert client.indices_store[INDEX][_sha(data)]["image_uri"] == "s3://bucket/o.png"


def test_mean_caption_vectors_renormalises():
    vectors = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    means = mean_caption_vectors(vectors, [2, 0, 1])
    assert np.allclose(means[0], [2**-0.5, 2**-0.5]) and means[1] is None and np.allclose(means[2], [0.6, 0.8])


def test_what_counts_as_a_dropped_connection():
    from opensearchpy.exceptions import ConnectionError as ClientConnectionError, ConnectionTimeout, TransportError

    from opensearch_cir.ingest.writer import is_transient

    assert is_transient(ClientConnectionError("N/A", "refused", None))
    assert is_transient(ConnectionTimeout("TIMEOUT", "read timed out", None))
    assert is_transient(TransportError(503, "unavailable")) and is_transient(EngineError("busy", status=429))
    assert not is_transient(TransportError(400, "mapper_parsing_exception"))
    assert not is_transient(EngineError("bad", status=400))


def test_connection_drop_during_resume_lookup(folder, encoder):
    root, _, _ = folder

    class NoSearch(InMemoryClient):
        def search(self, index, body, params=None):
            raise ConnectionResetError("connection reset by peer")

    client = NoSearch()
    client.indices.create(index=INDEX, body={})
    ingestor = Ingestor(client, INDEX, encoder, resume=True, batch_size=4, max_retries=1, retry_backoff=0)
    with pytest.raises(IngestInterruptedError, match="lookup of indexed images failed 2 times"):
        ingestor.add_many(Record(p) for p in sorted(root.rglob("*.png")))
    report = ingestor.close()
    assert report.interrupted and report.indexed == 0 and report.not_processed > 0
    assert "Re-run with --resume" in report.summary()
