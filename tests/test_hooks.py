"""CIReVL hooks: captioner and rewriter as callables and over the documented HTTP contract."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from test_compose import _EmptyIndex, _png, tiny_encoder  # noqa: F401 - fixtures
from opensearch_cir.compose import CompositeQuery, prepare
from opensearch_cir.compose.hooks import Hooks, http_captioner, http_rewriter


def _query(**changes):
    return CompositeQuery(images=[_png((10, 10, 200))], text="in red instead, without a hood", **changes)


def test_callable_hooks_caption_an_unindexed_reference_and_rewrite(tiny_encoder):
    seen = {}

    def captioner(image: bytes) -> str:
        seen["image"] = image
        return "  a blue  jacket with a hood "

    def rewriter(caption: str, modification: str) -> str:
        seen["rewrite"] = (caption, modification)
        return "a red jacket"

    prepared = prepare(_EmptyIndex(), "cir", _query(), tiny_encoder, hooks=Hooks(captioner, rewriter))
    assert seen["image"] == _png((10, 10, 200))
    assert prepared.caption == "a blue jacket with a hood"
    assert seen["rewrite"] == ("a blue jacket with a hood", "in red instead, without a hood")
    assert prepared.rewrite.text == "a red jacket" and prepared.rewrite.rules == ["hook"]
    assert prepared.rewrite.negatives == ["hood"]  # the rule-based rewriter still finds the negative
    assert prepared.render("bm25").sub_queries["caption_bm25"]["match"]["caption"]["query"] == "a red jacket"


def test_a_given_caption_skips_the_captioner_and_failures_fall_back(tiny_encoder):
    def broken(*_):
        raise RuntimeError("model server down")

    prepared = prepare(_EmptyIndex(), "cir", _query(caption="a blue jacket"), tiny_encoder,
                       hooks=Hooks(captioner=broken, rewriter=broken))
    assert prepared.caption == "a blue jacket"
    assert prepared.rewrite.text == "a red jacket" and "hook" not in prepared.rewrite.rules
    empty = prepare(_EmptyIndex(), "cir", _query(), tiny_encoder, hooks=Hooks(captioner=lambda image: "  "))
    assert empty.caption is None


@pytest.fixture()
def hook_server():
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.path, body))
            if self.path == "/caption":
                answer = {"caption": f"an image of {len(base64.b64decode(body['image']))} bytes"}
            elif self.path == "/rewrite":
                answer = {"caption": f"{body['caption']} | {body['modification']}"}
            else:
                self.send_response(500)
                self.end_headers()
                return
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", calls
    server.shutdown()
    thread.join()


def test_http_hooks_follow_the_contract(hook_server, tiny_encoder, monkeypatch):
    url, calls = hook_server
    assert http_captioner(f"{url}/caption")(b"12345") == "an image of 5 bytes"
    assert http_rewriter(f"{url}/rewrite")("a cat", "make it a dog") == "a cat | make it a dog"
    assert calls[1] == ("/rewrite", {"caption": "a cat", "modification": "make it a dog"})
    monkeypatch.setenv("CIR_CAPTIONER_URL", f"{url}/caption")
    monkeypatch.setenv("CIR_REWRITER_URL", f"{url}/fails")
    prepared = prepare(_EmptyIndex(), "cir", _query(), tiny_encoder)  # hooks from the environment
    assert prepared.caption.startswith("an image of ")
    assert prepared.rewrite.rules != ["hook"]  # the failing rewriter endpoint fell back to the rules
