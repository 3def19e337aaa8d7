"""The embedded engine shared by `cir serve` and `cir ingest` (issue 13, item 3).

The rule: one writer at a time, `write.lock` held only while a bulk writes, readers never blocked.
Before the fix a client kept the lock from its first bulk until it was closed, so a later
`cir ingest` into a folder `cir serve` had written to failed after 10 s, and a bulk waiting for
the lock held the client's mutex, freezing every search of that process meanwhile."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.engines.embedded import store as store_module
from opensearch_cir.errors import EngineError

INDEX = "cir-lock"


def make_index(root) -> EmbeddedClient:
    client = EmbeddedClient(root)
    client.indices.create(index=INDEX, body={
        "settings": {"analysis": {"analyzer": {"plain": {"type": "custom", "tokenizer": "words", "filter": ["lowercase"]}},
                                  "tokenizer": {"words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}}}},
        "mappings": {"properties": {"caption": {"type": "text", "analyzer": "plain"}}}})
    return client


def index_one(client: EmbeddedClient, doc_id: str) -> None:
    client.index(index=INDEX, id=doc_id, body={"caption": f"document {doc_id}"})


def test_a_live_writer_process_does_not_keep_the_lock_between_bulks(tmp_path, monkeypatch):
    make_index(tmp_path).close()
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from opensearch_cir.engines.embedded import EmbeddedClient
        client = EmbeddedClient({str(tmp_path)!r})
        client.index(index={INDEX!r}, id="from-serve", body={{"caption": "written by a long-lived process"}})
        print("written", flush=True)
        time.sleep(60)  # stays alive with its client open, like `cir serve` after one /ingest
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert writer.stdout.readline().strip() == "written"
        monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT_S", 2.0)
        other = EmbeddedClient(tmp_path)  # like `cir ingest` into the same folder
        started = time.monotonic()
        index_one(other, "from-ingest")
        assert time.monotonic() - started < 1.5
        assert other.count(index=INDEX)["count"] == 2
        other.close()
    finally:
        writer.kill()
        writer.wait()


def test_searches_go_on_while_a_bulk_waits_for_the_lock(tmp_path, monkeypatch):
    client = make_index(tmp_path)
    index_one(client, "a")
    holder = EmbeddedClient(tmp_path)  # another writer, in the middle of its bulk
    holder._store(INDEX)._acquire_writer()
    monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT_S", 5.0)
    outcome = {}

    def waiting_bulk():
        index_one(client, "b")
        outcome["written_at"] = time.monotonic()

    thread = threading.Thread(target=waiting_bulk)
    thread.start()
    time.sleep(0.3)  # the bulk is now waiting for the lock
    started = time.monotonic()
    hits = client.search(index=INDEX, body={"query": {"match": {"caption": "document"}}})["hits"]["hits"]
    search_seconds = time.monotonic() - started
    released_at = time.monotonic()
    holder._store(INDEX).release_writer()
    thread.join(10)
    assert [hit["_id"] for hit in hits] == ["a"] and search_seconds < 1.0
    assert outcome["written_at"] >= released_at  # the writer waited for the other one, then wrote
    assert client.count(index=INDEX)["count"] == 2
    holder.close()
    client.close()


def test_one_writer_at_a_time_a_stuck_writer_gives_409_after_the_wait(tmp_path, monkeypatch):
    client = make_index(tmp_path)
    holder = EmbeddedClient(tmp_path)
    holder._store(INDEX)._acquire_writer()
    monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT_S", 0.3)
    with pytest.raises(EngineError) as refused:
        index_one(client, "x")
    assert refused.value.status == 409 and "retry later" in str(refused.value)
    holder.close()
    index_one(client, "x")
    client.close()


def test_cir_serve_does_not_hold_the_lock_after_an_ingest_request(tmp_path, monkeypatch):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.service import Settings, create_app

    encoder = load_encoder(build_tiny_model(tmp_path / "model"), threads=1, device="cpu")
    settings = Settings(engine_url=f"embedded://{tmp_path / 'engine'}", index=INDEX, upload_dir=str(tmp_path / "uploads"))
    service = TestClient(create_app(settings, encoder=encoder))
    image = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(image, format="PNG")
    answer = service.post("/ingest", files=[("files", ("red.png", image.getvalue(), "image/png"))])
    assert answer.status_code == 200 and answer.json()["indexed"] == 1, answer.text
    monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT_S", 0.5)
    cli = EmbeddedClient(tmp_path / "engine")  # `cir ingest` while the service is up
    cli.index(index=INDEX, id="from-cli", body={"content_hash": "from-cli"})
    assert service.get("/health").json()["documents"] == 2
    cli.close()


def test_ingestion_retries_while_another_process_writes(tmp_path, monkeypatch):
    from opensearch_cir.ingest.writer import is_transient

    client = make_index(tmp_path)
    holder = EmbeddedClient(tmp_path)
    holder._store(INDEX)._acquire_writer()
    monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT_S", 0.1)
    with pytest.raises(EngineError) as busy:
        index_one(client, "x")
    assert is_transient(busy.value)  # the Ingestor backs off and retries instead of interrupting the run
    holder.close()
    client.close()
