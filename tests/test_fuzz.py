"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis): never a 5xx.

Runs in-process against the ASGI app on the tiny scene catalog; a small, derandomised number of
examples per operation keeps it fast and reproducible.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from test_service_support import catalog, tiny_encoder  # noqa: F401  (fixtures)

from opensearch_cir.compose import STRATEGIES, Weights
from opensearch_cir.service import create_app

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(catalog):
    app = create_app(catalog.settings, client=catalog.client, encoder=catalog.encoder)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


OPERATIONS = ["GET /health", "POST /embed", "POST /search", "POST /ingest", "GET /images/{doc_id}"]


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_never_answers_5xx(api_schema, label):
    # schemathesis' own pytest integration (from_fixture) needs pytest internals that pytest 9 removed,
    # so each operation's case strategy is driven by hypothesis directly.
    operation = api_schema.find_operation_by_label(label)

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(checks=[not_a_server_error])

    check()


# Schemathesis fills the multipart file parts with strings, so it rarely gets past validation.
# This property drives the deep paths instead: well-formed requests with hostile values.
_WORDS = st.sampled_from(["red", "blue", "circle", "square", "without", "a", "large", "instead", "make it",
                          "add", "remove", "the", "replace", "with", "to", "no", "", "  ", "ß", "🙂", "\x00"])
_TEXT = st.one_of(st.lists(_WORDS, max_size=8).map(" ".join), st.text(max_size=40))
_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12))
_WEIGHTS = st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(Weights)] + ["bogus"]),
                           st.one_of(_NUMBER, st.sampled_from(STRATEGIES + ("min_max", "rrf", "l2", "x")), st.none()),
                           max_size=4)
_FILTER_VALUE = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(),
                          st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
                          st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_FILTERS = st.dictionaries(st.sampled_from(["metadata.colours", "metadata.objects", "caption", "image_vector",
                                            "_id", "", "x" * 300]), _FILTER_VALUE, max_size=3)


@pytest.fixture(scope="module")
def client(catalog):
    from fastapi.testclient import TestClient

    app = create_app(catalog.settings, client=catalog.client, encoder=catalog.encoder)
    return TestClient(app, raise_server_exceptions=False)


def test_search_with_hostile_values_never_answers_5xx(client, catalog):
    ids = [_some_id(client), "nope", ""]
    images = [catalog.reference_png(0), b"", b"\x89PNG\r\n\x1a\n broken", b"GIF89a"]

    @given(text=st.one_of(st.none(), _TEXT), negative=st.one_of(st.none(), _TEXT),
           strategy=st.one_of(st.none(), st.sampled_from(STRATEGIES + ("", "nope"))),
           weights=st.one_of(st.none(), _WEIGHTS), filters=st.one_of(st.none(), _FILTERS),
           k=st.sampled_from([1, 3, 10, 10, 50, 200, 0, 201, "x"]),
           image=st.one_of(st.none(), st.sampled_from(images)), reference=st.one_of(st.none(), st.sampled_from(ids)),
           explain=st.booleans())
    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(text, negative, strategy, weights, filters, k, image, reference, explain):
        data = {"k": str(k), "explain": str(explain).lower()}
        for name, value in (("text", text), ("negative_text", negative), ("strategy", strategy),
                            ("reference_id", reference)):
            if value is not None:
                data[name] = value
        if weights is not None:
            data["weights"] = json.dumps(weights)
        if filters is not None:
            data["filters"] = json.dumps(filters)
        files = {"images": ("ref.png", image, "image/png")} if image is not None else None
        response = client.post("/search", data=data, files=files)
        assert response.status_code < 500, (data, response.text)
        if response.status_code >= 400:
            assert response.json()["detail"], "every refusal says why"

    check()


def _some_id(client) -> str:
    return client.post("/search", data={"text": "circle", "k": "1"}).json()["results"][0]["id"]


_JSON_ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6)),
                         lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                 st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                         max_leaves=6)


def test_ingest_with_hostile_values_never_answers_5xx(client, catalog):
    images = [catalog.reference_png(0), catalog.reference_png(1), b"", b"\x89PNG\r\n\x1a\n broken"]

    @given(files=st.lists(st.sampled_from(images), min_size=1, max_size=3),
           captions=st.one_of(st.none(), _JSON_ANY), metadata=st.one_of(st.none(), _JSON_ANY),
           raw=st.sampled_from(["", "[", "null", "{}"]))
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(files, captions, metadata, raw):
        data = {"captions": json.dumps(captions) if captions is not None else raw,
                "metadata": json.dumps(metadata) if metadata is not None else raw}
        parts = [("files", (f"f{i}.png", blob, "image/png")) for i, blob in enumerate(files)]
        response = client.post("/ingest", data=data, files=parts)
        assert response.status_code < 500, (data, response.text)
        if response.status_code == 200:
            items = response.json()["items"]
            assert len(items) == len(files) and all(item["status"] != "failed" or item["error"] for item in items)

    check()
