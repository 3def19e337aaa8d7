"""Ingestion inputs: JSONL / CSV / Parquet manifests, and remote image URLs (only when enabled).
Split from test_ingest.py, whose in-memory client and tiny encoder these tests share."""

from __future__ import annotations

import json

from opensearch_cir.ingest import ingest, iter_manifest
from test_ingest import INDEX, InMemoryClient, _errors, _png, _sha, encoder  # noqa: F401 (encoder: a fixture)


def test_manifests_jsonl_csv_parquet(encoder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = tmp_path / "img"
    images.mkdir()
    for name, color in (("a.png", "red"), ("b.png", "green")):
        (images / name).write_bytes(_png(color))
    rows = [
        {"image": "img/a.png", "caption": "a red square", "brand": "acme"},
        {"image": "img/a.png", "caption": "crimson block"},  # same image: captions merged
        {"image": "img/b.png", "captions": ["green", "lime square"], "metadata": {"size": "L"}},
        {"caption": "no image here"},
        {"image": "img/missing.png"},
        {"image": "https://example.com/x.png"},  # remote disabled by default
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    (tmp_path / "m.csv").write_text(
        "image,caption,brand\nimg/a.png,a red square,acme\nimg/a.png,crimson block,\nimg/b.png,green,\n"
    )
    pq.write_table(pa.Table.from_pylist([{"image": "img/b.png", "captions": ["green", "lime"]}]), tmp_path / "m.parquet")

    client = InMemoryClient()
    report = ingest(client, "cir-jsonl", encoder, tmp_path / "m.jsonl", errors=tmp_path / "e.jsonl", retry_backoff=0)
    assert (report.input, report.indexed, report.failed) == (6, 2, 4)
    reasons = " ".join(e["reason"] for e in _errors(tmp_path / "e.jsonl"))
    assert "no image" in reasons and "no such file" in reasons and "remote URLs are disabled" in reasons
    assert "not JSON" in reasons
    doc_a = client.indices_store["cir-jsonl"][_sha((images / "a.png").read_bytes())]
    assert doc_a["caption"] == ["a red square", "crimson block"] and doc_a["metadata"] == {"brand": "acme"}

    assert [len(r.captions) for r in iter_manifest(tmp_path / "m.csv")] == [2, 1]
    parquet = ingest(client, "cir-parquet", encoder, tmp_path / "m.parquet", retry_backoff=0)
    assert parquet.indexed == 1
    assert next(iter(client.indices_store["cir-parquet"].values()))["caption"] == ["green", "lime"]


def test_remote_urls_only_when_enabled(encoder, tmp_path):
    """A loopback HTTP server (no network): a served PNG is indexed, a 404 is reported."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    image = _png("olive")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            found = self.path == "/olive.png"
            self.send_response(200 if found else 404)
            self.send_header("content-length", str(len(image) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(image)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    records = [{"url": f"{base}/olive.png", "caption": "olive"}, {"url": f"{base}/missing.png"}, {"caption": "no image"}]
    try:
        refused = ingest(InMemoryClient(), INDEX, encoder, records)
        client = InMemoryClient()
        allowed = ingest(client, INDEX, encoder, records, allow_remote=True, errors=tmp_path / "e.jsonl")
    finally:
        server.shutdown()
    assert (refused.indexed, refused.failed) == (0, 3)
    assert sum("remote URLs are disabled" in f.reason for f in refused.failures) == 2
    assert (allowed.indexed, allowed.failed) == (1, 2)
    assert client.indices_store[INDEX][_sha(image)]["image_uri"] == f"{base}/olive.png"
    reasons = " ".join(e["reason"] for e in _errors(tmp_path / "e.jsonl"))
    assert "HTTP 404" in reasons and "no image" in reasons
