"""The service under hostile input and shared use (issue 13, items 4-7 and 9); each test failed on
the code before the fix. Remote images come from a slow HTTP server on 127.0.0.1 started here."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_service_support import catalog, tiny_encoder  # noqa: F401  (fixtures)

from opensearch_cir.errors import EngineError
from opensearch_cir.service import create_app


def make_app(catalog, **changes):
    return create_app(catalog.settings.replace(**changes), client=catalog.client, encoder=catalog.encoder)


def detail(response) -> str:
    return response.json()["detail"]


@contextmanager
def image_server(png: bytes, drip_seconds: float = 0.0):
    """127.0.0.1 HTTP server: `/ok/*` and `/x.jpg` answer `png`; `/slow/*` sends it a byte at a time
    over `drip_seconds`. Yields (base URL, list of paths requested)."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            try:
                if self.path.startswith("/slow/"):
                    pause = drip_seconds / len(png)
                    for i in range(len(png)):
                        self.wfile.write(png[i:i + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                else:
                    self.wfile.write(png)
            except OSError:
                pass  # the service gave up on us

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def live_service(app):
    """The app under a real uvicorn on a free 127.0.0.1 port (keep-alive behaviour is the server's)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


# -- item 4: 4xx for bad input; an unexpected error is a JSON 500 that keeps the connection -------------------

@pytest.mark.parametrize("data, message", [
    ({"text": "dog", "weights": '{"combination": "bogus"}'}, "weights.combination"),
    ({"text": "dog", "weights": '{"beta": 5}'}, "weights.beta: must be between 0 and 1"),
    ({"text": "dog", "weights": '{"lam": -1}'}, "weights.lam: must be between 0 and 1"),
])
def test_bad_search_input_is_422(catalog, data, message):
    response = TestClient(make_app(catalog), raise_server_exceptions=False).post("/search", data=data)
    assert response.status_code == 422, response.text
    assert message in detail(response)


def test_embed_with_a_lone_surrogate_is_422(catalog):
    client = TestClient(make_app(catalog), raise_server_exceptions=False)
    response = client.post("/embed", content=b'{"inputText": "x \\ud800 y"}', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "inputText: not valid Unicode" in detail(response)


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_open(catalog, monkeypatch):
    from opensearch_cir.service import app as app_module

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(app_module, "run_search", broken)
    with live_service(make_app(catalog)) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/search", body="text=dog", headers={"Content-Type": "application/x-www-form-urlencoded"})
        first = connection.getresponse()
        body = json.loads(first.read())
        assert first.status == 500 and "internal error (KeyError)" in body["detail"]
        connection.request("GET", "/health")  # the same keep-alive connection
        second = connection.getresponse()
        assert second.status == 200 and json.loads(second.read())["status"] == "ok"
        connection.close()


# -- item 5: misnamed fields are refused, naming the right one --------------------------------------

def test_a_misnamed_form_field_is_refused_with_the_right_name(catalog):
    client = TestClient(make_app(catalog), raise_server_exceptions=False)
    response = client.post("/search", files={"image": ("r.png", catalog.reference_png(0), "image/png")}, data={"text": "red"})
    assert response.status_code == 422 and "'image' (did you mean 'images'?)" in detail(response)
    ingest = client.post("/ingest", files={"files": ("r.png", catalog.reference_png(0), "image/png")}, data={"caption": "[]"})
    assert ingest.status_code == 422 and "(did you mean 'captions'?)" in detail(ingest)


# -- item 6: the allow-list compares parsed scheme, host, port and normalised path ----------------------

@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:18091/ok/a.jpg", True),
    ("http://127.0.0.1:18091/ok/sub/../a.jpg", True),
    ("http://127.0.0.1:18091/ok/../x.jpg", False),
    ("http://127.0.0.1:18091/ok/%2e%2e/x.jpg", False),
    ("http://127.0.0.1:18091/okay/x.jpg", False),
    ("http://127.0.0.1:18092/ok/a.jpg", False),
    ("https://127.0.0.1:18091/ok/a.jpg", False),
    ("http://127.0.0.1:18091@127.0.0.1:18092/ok/a.jpg", False),
])
def test_allow_list_is_parsed_not_a_prefix(url, allowed):
    from opensearch_cir.service.settings import allowed_remote_url

    for entry in ("http://127.0.0.1:18091/ok/", "http://127.0.0.1:18091/ok"):
        try:
            result = allowed_remote_url(url, (entry,))
        except Exception:
            result = None
        assert (result is not None) == allowed, (url, entry)


def test_allow_listed_folder_cannot_be_left_and_credentials_cannot_change_the_host(catalog):
    with image_server(catalog.reference_png(0)) as (base, requested):
        client = TestClient(make_app(catalog, remote_url_allowlist=(f"{base}/ok/",)), raise_server_exceptions=False)
        ok = client.post("/search", data={"image_url": f"{base}/ok/a.png", "text": "red", "k": "2"})
        escaped = client.post("/search", data={"image_url": f"{base}/ok/../x.jpg"})
        bare = TestClient(make_app(catalog, remote_url_allowlist=(base,)), raise_server_exceptions=False)
        other_host = bare.post("/search", data={"image_url": f"{base}@127.0.0.2:1/"})
    assert ok.status_code == 200, ok.text
    assert escaped.status_code == 422 and "CIR_REMOTE_URL_ALLOWLIST" in detail(escaped)
    assert other_host.status_code == 422 and "credentials" in detail(other_host)
    assert requested == ["/ok/a.png"]


# -- item 7: decoding and fetching off the event loop, in bounded pools, with timeouts --------------------------

async def _health_latencies(app, slow_requests, count=10) -> tuple[list[float], list[httpx.Response]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service", timeout=60) as client:
        slow = [asyncio.create_task(request(client)) for request in slow_requests]
        await asyncio.sleep(0.2)
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            assert (await client.get("/health")).status_code == 200
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
        return latencies, await asyncio.gather(*slow)


def test_reference_images_are_decoded_off_the_event_loop(catalog, monkeypatch):
    from opensearch_cir.service import app as app_module

    real = app_module.decode_image

    def slow_decode(*args):  # a 40 MP image takes seconds to decode
        time.sleep(3.0)
        return real(*args)

    monkeypatch.setattr(app_module, "decode_image", slow_decode)
    image = catalog.reference_png(0)

    def search(client):
        return client.post("/search", files={"images": ("big.png", image, "image/png")}, data={"k": "2"})

    latencies, answers = asyncio.run(_health_latencies(make_app(catalog, max_concurrent_decodes=2), [search] * 4))
    assert max(latencies) < 1.5, latencies  # on the event loop, a decode would hold /health for 3 s
    assert [answer.status_code for answer in answers] == [200] * 4


def test_a_full_decode_queue_answers_503_with_retry_after(catalog, monkeypatch):
    from opensearch_cir.service import app as app_module

    real = app_module.decode_image
    monkeypatch.setattr(app_module, "decode_image", lambda *args: time.sleep(1.0) or real(*args))
    image = catalog.reference_png(0)

    async def two_at_once():
        transport = httpx.ASGITransport(app=make_app(catalog, max_concurrent_decodes=1, queue_timeout_s=0.2))
        async with httpx.AsyncClient(transport=transport, base_url="http://service", timeout=30) as client:
            return await asyncio.gather(*(client.post("/search", files={"images": ("a.png", image, "image/png")})
                                          for _ in range(2)))

    answers = asyncio.run(two_at_once())
    busy = [answer for answer in answers if answer.status_code == 503]
    assert len(busy) == 1 and busy[0].headers["retry-after"] == "1" and "CIR_QUEUE_TIMEOUT_S" in detail(busy[0])


def test_slow_drip_urls_time_out_and_do_not_starve_health(catalog):
    with image_server(catalog.reference_png(0), drip_seconds=30) as (base, _):
        app = make_app(catalog, remote_url_allowlist=(f"{base}/slow/",), remote_fetch_timeout_s=0.5,
                       max_concurrent_fetches=8, queue_timeout_s=30)

        def fetch(client, i=[0]):
            i[0] += 1
            return client.post("/search", data={"image_url": f"{base}/slow/{i[0]}.png"})

        started = time.monotonic()
        latencies, answers = asyncio.run(_health_latencies(app, [fetch] * 45))
        elapsed = time.monotonic() - started
    assert max(latencies) < 3.0, latencies  # with the shared pool exhausted, /health would wait for a 30 s drip
    assert {answer.status_code for answer in answers} == {422}, {answer.text for answer in answers}
    assert "CIR_REMOTE_FETCH_TIMEOUT_S" in detail(answers[0])
    assert elapsed < 45 / 8 * 1.0 + 10  # 8 at a time, 0.5-1 s each: the drip's 30 s never waited out


def test_requests_start_no_thread_on_the_event_loop(catalog, monkeypatch):
    """Under load a thread the event loop starts waits for the GIL, and the loop with it: the pools
    run from the start, remote fetches are asynchronous, and the API-key check is a coroutine."""
    app = make_app(catalog, api_key="k")
    image = catalog.reference_png(0)

    async def requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service", headers={"X-API-Key": "k"}) as client:
            answers = [await client.get("/health")]
            await asyncio.sleep(1.1)  # the cached health answer is now stale: the next one refreshes it
            answers.append(await client.get("/health"))
            answers.append(await client.post("/search", data={"text": "a dog", "k": "2"}))
            answers.append(await client.post("/search", files={"images": ("r.png", image, "image/png")}, data={"k": "2"}))
            answers.append(await client.post("/embed", json={"inputText": "a dog"}))
            return answers

    started = []
    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: (started.append(thread.name), real_start(thread))[1])
    answers = asyncio.run(requests())
    assert [answer.status_code for answer in answers] == [200] * 5, [answer.text for answer in answers]
    assert started == []


def test_the_heap_is_trimmed_after_large_decoded_images_only(catalog, monkeypatch):
    import io

    from PIL import Image

    from opensearch_cir.service import workers

    trims = []
    monkeypatch.setattr(workers, "_MALLOC_TRIM", trims.append)
    client = TestClient(make_app(catalog))
    small = catalog.reference_png(0)
    buffer = io.BytesIO()
    Image.new("RGB", (2500, 1700), (20, 120, 220)).save(buffer, format="PNG")  # 4.25 MP decoded at full size
    for data in (small, buffer.getvalue()):
        answer = client.post("/search", files={"images": ("r.png", data, "image/png")}, data={"k": "2"})
        assert answer.status_code == 200, answer.text
    assert trims == [0]  # once, after the large image (a trim after small ones only costs page faults)


def test_a_slow_sender_wakes_the_event_loop_a_few_times_a_second_not_per_byte(catalog, monkeypatch):
    from opensearch_cir.service import inputs
    from opensearch_cir.service.workers import Workers

    png = catalog.reference_png(0)
    reads = []
    real_aiter = httpx.Response.aiter_bytes

    async def counted(response, *args, **kwargs):
        async for chunk in real_aiter(response, *args, **kwargs):
            reads.append(len(chunk))
            yield chunk

    monkeypatch.setattr(httpx.Response, "aiter_bytes", counted)
    with image_server(png, drip_seconds=1.5) as (base, _):
        settings = catalog.settings.replace(remote_url_allowlist=(f"{base}/slow/",), remote_fetch_timeout_s=10)

        async def fetch():
            workers = Workers(settings)
            try:
                return await workers.fetch(f"{base}/slow/r.png")
            finally:
                await workers.aclose()

        assert asyncio.run(fetch()) == png
    assert sum(reads) == len(png)
    assert len(reads) <= 1.5 / inputs._SLOW_PAUSE_S + 10, len(reads)  # unpaced: about one read per byte


def test_health_answers_at_once_while_the_engine_is_busy(catalog, monkeypatch):
    client = TestClient(make_app(catalog))
    assert client.get("/health").json()["status"] == "ok"  # the first answer is measured
    real_count = catalog.client.count
    monkeypatch.setattr(catalog.client, "count", lambda **kw: time.sleep(2.0) or real_count(**kw))
    time.sleep(1.1)  # the measurement is now stale: the next answers re-measure in the background
    latencies = []
    for _ in range(5):
        started = time.perf_counter()
        assert client.get("/health").json()["status"] == "ok"
        latencies.append(time.perf_counter() - started)
    assert max(latencies) < 1.0, latencies  # waiting for the engine would take 2 s each


# -- item 9: the smaller cases -------------------------------------------------------------------

def test_text_over_a_megabyte_is_422_like_every_text_limit(catalog):
    response = TestClient(make_app(catalog), raise_server_exceptions=False).post("/search", data={"text": "x" * 1_100_000})
    assert response.status_code == 422 and "CIR_MAX_TEXT_CHARS" in detail(response)


def test_docs_state_the_codes_the_service_answers(catalog):
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "service.md").read_text()
    client = TestClient(make_app(catalog), raise_server_exceptions=False)
    unknown_reference = client.post("/search", data={"reference_id": "no-such-doc", "text": "red"})
    unknown_image = client.get("/images/no-such-doc")
    assert (unknown_reference.status_code, unknown_image.status_code) == (422, 404)
    assert "422 (unknown reference id" in docs and "404 (unknown document on `GET /images" in docs


def test_embedded_search_parameters_and_vectors_are_checked(catalog):
    client = catalog.client
    with pytest.raises(EngineError) as size:
        client.search(index="cir-test", body={"size": "abc"})
    dim = catalog.encoder.dim
    with pytest.raises(EngineError) as nan:
        client.search(index="cir-test", body={"query": {"knn": {"image_vector": {"vector": [float("nan")] * dim, "k": 3}}}})
    assert (size.value.status, nan.value.status) == (400, 400) and "NaN" in str(nan.value)
    assert len(client.search(index="cir-test", body={"size": "2"})["hits"]["hits"]) == 2


@pytest.mark.parametrize("doc_id, message", [("", "must not be empty"), ("x" * 100_000, "no longer than 512 bytes")])
def test_embedded_refuses_empty_and_huge_ids(catalog, doc_id, message):
    item = catalog.client.bulk(body=[{"index": {"_index": "cir-test", "_id": doc_id}}, {"content_hash": "x"}])["items"][0]["index"]
    assert item["status"] == 400 and message in item["error"]["reason"]
    assert np.isfinite(catalog.client.count(index="cir-test")["count"])


def test_log_records_are_written_by_a_listener_thread_not_the_event_loop():
    import io
    import logging

    from opensearch_cir.service.logs import log_through_queues

    written, threads = io.StringIO(), []

    class Recording(logging.StreamHandler):
        def emit(self, record):
            threads.append(threading.current_thread().name)
            super().emit(record)

    handler = Recording(written)
    handler.setFormatter(logging.Formatter("%(message)s|%(args)s"))
    logger = logging.getLogger("cir-test-queue")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    listeners = log_through_queues(("cir-test-queue", "cir-test-no-handlers"))
    try:
        logger.info('%s "%s %s"', "127.0.0.1:1", "GET", "/health")
    finally:
        for listener in listeners:
            listener.stop()
        logger.handlers.clear()
    assert len(listeners) == 1
    assert written.getvalue() == "127.0.0.1:1 \"GET /health\"|('127.0.0.1:1', 'GET', '/health')\n"  # args kept for uvicorn's formatter
    assert threads and threading.main_thread().name not in threads
