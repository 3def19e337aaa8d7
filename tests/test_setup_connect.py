"""Cluster client configuration and retries with backoff (a loopback HTTP server, no network)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opensearch_cir.engines import opensearch as cluster


@pytest.fixture()
def no_env(monkeypatch):
    for name in ("OPENSEARCH_USER", "OPENSEARCH_PASSWORD", "OPENSEARCH_CA_CERTS", "OPENSEARCH_VERIFY_CERTS"):
        monkeypatch.delenv(name, raising=False)


def _connection(client):
    return client.transport.connection_pool.connections[0]


def test_settings_from_url_and_environment(no_env, monkeypatch):
    client = cluster.connect("https://alice:s%40cret@search.example.com:9243/prefix")
    connection = _connection(client)
    assert connection.host == "https://search.example.com:9243" and connection.url_prefix == "/prefix"
    assert client.transport.retry_on_status == (429, 502, 503, 504) and client.transport.retry_on_timeout
    assert isinstance(client.transport, cluster.BackoffTransport)
    assert connection.headers["authorization"] == "Basic " + base64.b64encode(b"alice:s@cret").decode()

    monkeypatch.setenv("OPENSEARCH_USER", "bob")
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "pw")
    monkeypatch.setenv("OPENSEARCH_VERIFY_CERTS", "false")
    client = cluster.connect("https://localhost:9200", max_retries=7)
    assert client.transport.max_retries == 7
    assert _connection(client).headers["authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
    assert _connection(client).pool.cert_reqs == "CERT_NONE"


def test_tls_verified_by_default(no_env):
    connection = _connection(cluster.connect("https://localhost:9200"))
    assert connection.pool.cert_reqs == "CERT_REQUIRED"
    with pytest.raises(ValueError, match="not an OpenSearch URL"):
        cluster.connect("localhost:9200")


class _Handler(BaseHTTPRequestHandler):
    statuses: list[int] = []
    seen = 0

    def do_GET(self):  # noqa: N802 (http.server API)
        type(self).seen += 1
        status = self.statuses.pop(0) if self.statuses else 200
        body = json.dumps({"version": {"number": "3.3.0"}} if status == 200 else {"error": "busy"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def test_retries_429_and_503_with_growing_backoff(server, no_env, monkeypatch):
    delays = []
    monkeypatch.setattr(cluster.time, "sleep", delays.append)
    _Handler.statuses, _Handler.seen = [429, 503, 502], 0
    client = cluster.connect(f"http://127.0.0.1:{server.server_port}", max_retries=5)
    assert client.info()["version"]["number"] == "3.3.0"
    assert _Handler.seen == 4 and len(delays) == 3
    caps = [cluster.BackoffTransport.backoff_base * 2**i for i in range(3)]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps))


def test_gives_up_after_max_retries(server, no_env, monkeypatch):
    from opensearchpy.exceptions import TransportError

    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)
    _Handler.statuses, _Handler.seen = [429] * 10, 0
    client = cluster.connect(f"http://127.0.0.1:{server.server_port}", max_retries=2)
    with pytest.raises(TransportError) as info:
        client.info()
    assert info.value.status_code == 429 and _Handler.seen == 3


def test_aws_signing_needs_boto3_and_says_so(no_env, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install boto3"):
        cluster.connect("https://search-domain.eu-west-1.es.amazonaws.com", aws_region="eu-west-1")
