"""The REST service through FastAPI's TestClient: every endpoint, good and bad input.

Runs on the tiny test model and a tiny synthetic scene catalog in the embedded engine.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_service_support import catalog, png_bytes, tiny_encoder  # noqa: F401  (fixtures)

from opensearch_cir.compose import STRATEGIES, Weights
from opensearch_cir.service import Settings, create_app


def make_client(catalog, **changes) -> TestClient:
    settings = catalog.settings.replace(**changes) if changes else catalog.settings
    app = create_app(settings, client=catalog.client, encoder=catalog.encoder)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture()
def client(catalog) -> TestClient:
    return make_client(catalog)


def detail(response) -> str:
    return response.json()["detail"]


# -- /health, the page, the OpenAPI document ---------------------------------------------------

def test_health_reports_index_model_and_strategies(client, catalog):
    body = client.get("/health").json()
    assert body["status"] == "ok", body
    assert body["index_exists"] is True
    assert body["documents"] == len(catalog.records)
    assert body["model_id"] == catalog.encoder.model_id
    assert body["dimension"] == catalog.encoder.dim
    assert body["strategies"] == list(STRATEGIES)


def test_health_is_degraded_without_the_index(catalog):
    body = make_client(catalog, index="cir-missing").get("/health").json()
    assert body["status"] == "degraded" and body["index_exists"] is False


def test_page_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text
    assert "runCurrentTurn" in client.get("/static/app.js").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/embed", "/ingest", "/health", "/images/{doc_id}"} <= set(paths)
    assert client.get("/docs").status_code == 200


# -- /search --------------------------------------------------------------------------------------

def test_search_with_reference_image_and_text(client, catalog):
    query = catalog.scenes.queries[0]
    response = client.post("/search", files={"images": ("ref.png", catalog.reference_png(0), "image/png")},
                           data={"text": query.text, "k": "5", "explain": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["strategy"] == "hybrid" and body["total"] == len(body["results"]) == 5
    reference_id = catalog.scenes.by_key[query.reference.key].scene_id
    first = body["results"][0]
    assert first["caption"] and first["image_url"].endswith(f"/images/{first['id']}")
    assert all(r["metadata"]["scene_id"] != reference_id for r in body["results"]), "the reference is excluded"
    assert set(first["scores"]) == set(body["query"]["sub_queries"]) and len(first["scores"]) >= 2
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_an_uploaded_reference_is_decoded_once_and_ranks_as_its_bytes_do(client, catalog, monkeypatch):
    """The service decodes an upload once (its bounded decode pool) and the search reuses the pixels:
    same results as the bytes encoded by the search itself."""
    from opensearch_cir.compose import CompositeQuery, search
    from opensearch_cir.encoders import preprocess

    decodes = []
    real_decode = preprocess._decode
    monkeypatch.setattr(preprocess, "_decode", lambda *args: decodes.append(1) or real_decode(*args))
    png, text = catalog.reference_png(0), catalog.scenes.queries[0].text
    response = client.post("/search", files={"images": ("ref.png", png, "image/png")}, data={"text": text, "k": "5"})
    assert response.status_code == 200, response.text
    assert len(decodes) == 1
    direct = search(catalog.client, catalog.settings.index, CompositeQuery(images=[png], text=text, k=5), catalog.encoder)
    assert [r["id"] for r in response.json()["results"]] == [r.id for r in direct.results]


def test_search_text_only_with_filters_and_strategy(client):
    response = client.post("/search", data={"text": "a red circle", "strategy": "text_only", "k": "50",
                                            "filters": json.dumps({"metadata.colours": "red"})})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results and all("red" in r["metadata"]["colours"] for r in results)
    assert all(r["scores"] is None for r in results), "sub-query scores only with explain"


def test_search_refines_from_a_result_id(client):
    first = client.post("/search", data={"text": "a blue square", "k": "3"}).json()["results"][0]
    response = client.post("/search", data={"reference_id": first["id"], "text": "make it green", "k": "3"})
    assert response.status_code == 200, response.text
    assert first["id"] not in [r["id"] for r in response.json()["results"]]


def test_search_refines_with_a_modification_no_rewrite_rule_knows(client):
    first = client.post("/search", data={"text": "a blue square", "k": "1"}).json()["results"][0]
    response = client.post("/search", data={"reference_id": first["id"], "text": "sparkly", "k": "3"})
    assert response.status_code == 200, response.text
    assert response.json()["query"]["rewritten_caption"].endswith("sparkly")


def test_search_with_the_same_text_as_modification_and_negative(client):  # was a KeyError in compose.prepare
    first = client.post("/search", data={"text": "a blue square", "k": "1"}).json()["results"][0]
    response = client.post("/search", data={"reference_id": first["id"], "text": "red", "negative_text": "red"})
    assert response.status_code < 500


def test_search_weights_change_the_query(client):
    response = client.post("/search", data={"text": "a red circle", "strategy": "hybrid",
                                            "weights": json.dumps({"bm25": 1.0, "image": 0.0, "caption": 0.0})})
    assert response.status_code == 200, response.text
    assert list(response.json()["query"]["sub_queries"]) == ["caption_bm25"]


@pytest.mark.parametrize("data, files, status, message", [
    ({}, None, 422, "empty query"),
    ({"text": "   "}, None, 422, "empty query"),
    ({"text": "red", "strategy": "telepathy"}, None, 422, "unknown strategy 'telepathy'"),
    ({"text": "red", "k": "0"}, None, 422, "k"),
    ({"text": "red", "k": "100000"}, None, 422, "limit"),
    ({"text": "red", "k": "ten"}, None, 422, "k"),
    ({"text": "x" * 2000}, None, 422, "limit of 1000"),
    ({"text": "red", "filters": "{not json"}, None, 422, "filters: not valid JSON"),
    ({"text": "red", "filters": "[1]"}, None, 422, "expected a JSON dict"),
    ({"text": "red", "filters": '{"metadata.colours": {"a": 1}}'}, None, 422, "filters.metadata.colours"),
    ({"text": "red", "weights": '{"normalization": "magic"}'}, None, 422, "normalization"),
    ({"text": "red", "weights": '{"gamma": 1}'}, None, 422, "unknown name"),
    ({"text": "red", "weights": '{"candidates": 100000}'}, None, 422, "CIR_MAX_CANDIDATES"),
    ({"text": "red", "weights": '{"alpha": "high"}'}, None, 422, "weights.alpha"),
    ({"reference_id": "no-such-doc", "text": "red"}, None, 422, "no-such-doc"),
    ({"text": "red"}, {"images": ("bad.jpg", b"\xff\xd8\xff\xe0 corrupt jpeg", "image/jpeg")}, 422, "bad.jpg"),
    ({"text": "red"}, {"images": ("empty.png", b"", "image/png")}, 422, "empty"),
    ({"image_url": "https://example.com/a.jpg"}, None, 422, "CIR_REMOTE_URL_ALLOWLIST"),
    ({"image_url": "file:///etc/passwd"}, None, 422, "only http(s)"),
])
def test_search_bad_input_is_4xx_with_a_clear_message(client, data, files, status, message):
    response = client.post("/search", data=data, files=files)
    assert response.status_code == status, response.text
    assert message in detail(response)


def test_search_fetches_only_allow_listed_urls_without_following_redirects(catalog, monkeypatch):
    import httpx

    from opensearch_cir.service import workers

    answers = {"https://img.example/ref.png": lambda: httpx.Response(200, content=catalog.reference_png(0)),
               "https://img.example/moved.png": lambda: httpx.Response(302, headers={"location": "http://10.0.0.1/"})}
    fetched = []

    def answer(request: httpx.Request) -> httpx.Response:  # an unknown URL (a followed redirect) raises KeyError
        fetched.append(str(request.url))
        return answers[str(request.url)]()

    real_client = httpx.AsyncClient
    monkeypatch.setattr(workers.httpx, "AsyncClient", lambda **options: real_client(transport=httpx.MockTransport(answer), **options))
    client = make_client(catalog, remote_url_allowlist=("https://img.example/",))
    ok = client.post("/search", data={"image_url": "https://img.example/ref.png", "text": "make it red", "k": "3"})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 3
    moved = client.post("/search", data={"image_url": "https://img.example/moved.png"})
    assert moved.status_code == 422 and "answered 302" in detail(moved)
    refused = client.post("/search", data={"image_url": "https://other.example/ref.png"})
    assert refused.status_code == 422 and "CIR_REMOTE_URL_ALLOWLIST" in detail(refused)
    assert fetched == ["https://img.example/ref.png", "https://img.example/moved.png"]


def test_search_image_over_the_pixel_cap_is_413(catalog):
    client = make_client(catalog, max_pixels=1000)
    image = png_bytes(Image.new("RGB", (100, 100), "white"))
    response = client.post("/search", files={"images": ("big.png", image, "image/png")})
    assert response.status_code == 413
    assert "big.png" in detail(response) and "pixels" in detail(response)


def test_oversized_upload_is_413(catalog):
    client = make_client(catalog, max_upload_bytes=1000)
    response = client.post("/search", files={"images": ("big.png", b"\x89PNG" + b"0" * 5000, "image/png")})
    assert response.status_code == 413 and "upload limit" in detail(response)


def test_oversized_request_body_is_413(catalog):
    client = make_client(catalog, max_request_bytes=2000)
    response = client.post("/search", files={"images": ("big.png", b"0" * 10_000, "image/png")})
    assert response.status_code == 413 and "CIR_MAX_REQUEST_BYTES" in detail(response)


def test_too_many_reference_images_is_422(catalog):
    client = make_client(catalog, max_images_per_query=1)
    image = catalog.reference_png(0)
    files = [("images", ("a.png", image, "image/png")), ("images", ("b.png", image, "image/png"))]
    response = client.post("/search", files=files)
    assert response.status_code == 422 and "at most 1" in detail(response)


def test_slow_request_times_out_with_504(catalog, monkeypatch):
    import time

    from opensearch_cir.service import app as app_module

    def slow(*args, **kwargs):
        time.sleep(1.0)

    monkeypatch.setattr(app_module, "run_search", slow)
    client = make_client(catalog, request_timeout_s=0.2)
    response = client.post("/search", data={"text": "red"})
    assert response.status_code == 504 and "CIR_REQUEST_TIMEOUT_S" in detail(response)


# -- /embed: the ml-commons remote-connector contract ---------------------------------------------

def test_embed_text_matches_the_encoder(client, catalog):
    response = client.post("/embed", json={"inputText": "a red circle", "inputImage": None})
    assert response.status_code == 200
    vector = np.array(response.json()["embedding"], np.float32)
    np.testing.assert_allclose(vector, catalog.encoder.encode_texts(["a red circle"])[0], atol=1e-6)


def test_embed_image_and_composed(client, catalog):
    image = Image.new("RGB", (40, 30), (200, 20, 20))
    encoded = base64.b64encode(png_bytes(image)).decode()
    image_vector = np.array(client.post("/embed", json={"inputImage": encoded}).json()["embedding"])
    np.testing.assert_allclose(image_vector, catalog.encoder.encode_images([image])[0], atol=1e-5)

    data_url = "data:image/png;base64," + encoded
    both = np.array(client.post("/embed", json={"inputText": "blue", "inputImage": data_url}).json()["embedding"])
    alpha = Weights().alpha
    expected = (1 - alpha) * image_vector + alpha * catalog.encoder.encode_texts(["blue"])[0]
    np.testing.assert_allclose(both, expected / np.linalg.norm(expected), atol=1e-5)


@pytest.mark.parametrize("payload, message", [
    ({}, "give inputText, inputImage"),
    ({"inputText": "   "}, "give inputText, inputImage"),
    ({"inputImage": "not base64!!"}, "not valid base64"),
    ({"inputImage": base64.b64encode(b"GIF89a truncated").decode()}, "inputImage"),
    ({"inputText": "x" * 5000}, "limit"),
    ({"inputText": 12}, "inputText"),
])
def test_embed_bad_input_is_422(client, payload, message):
    response = client.post("/embed", json=payload)
    assert response.status_code == 422, response.text
    assert message in detail(response)


def test_embed_malformed_json_is_422(client):
    response = client.post("/embed", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 422


# -- /images ----------------------------------------------------------------------------------------

def test_images_serves_indexed_files_only_under_media_roots(client, catalog):
    hit = client.post("/search", data={"text": "a circle", "k": "1"}).json()["results"][0]
    response = client.get(hit["image_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(__import__("io").BytesIO(response.content)).size == (128, 128)

    locked = make_client(catalog, media_roots=())
    refused = locked.get(f"/images/{hit['id']}")
    assert refused.status_code == 404 and "CIR_MEDIA_ROOTS" in detail(refused)
    assert client.get("/images/unknown-id").status_code == 404


# -- /ingest ----------------------------------------------------------------------------------------

def test_ingest_reports_each_file_and_makes_it_searchable(catalog, tmp_path):
    client = make_client(catalog, index="cir-upload-test", upload_dir=str(tmp_path / "uploads"))  # created on use
    red = png_bytes(Image.new("RGB", (64, 64), (220, 30, 30)))
    blue = png_bytes(Image.new("RGB", (64, 64), (30, 70, 220)))
    files = [("files", ("red.png", red, "image/png")), ("files", ("broken.png", b"not an image", "image/png")),
             ("files", ("blue.png", blue, "image/png")), ("files", ("again.png", red, "image/png"))]
    response = client.post("/ingest", files=files, data={
        "captions": json.dumps(["a red square", None, "a blue square", "same red"]),
        "metadata": json.dumps([{"colour": "red"}, None, {"colour": "blue"}, None]),
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["status"] for item in body["items"]] == ["indexed", "failed", "indexed", "skipped"]
    assert body["indexed"] == 2 and body["failed"] == 1
    assert "broken.png" in body["items"][1]["name"] and body["items"][1]["error"]

    found = client.post("/search", data={"text": "square", "strategy": "bm25",
                                         "filters": json.dumps({"metadata.colour": "blue"})}).json()["results"]
    assert [r["id"] for r in found] == [body["items"][2]["id"]]
    image = client.get(found[0]["image_url"])
    assert image.status_code == 200 and image.content == blue


def test_ingest_bad_side_data(client, catalog):
    image = catalog.reference_png(0)
    files = [("files", ("a.png", image, "image/png")), ("files", ("b.png", image, "image/png"))]
    response = client.post("/ingest", files=files, data={"captions": '["only one"]'})
    assert response.status_code == 422 and "1 entries for 2 files" in detail(response)

    response = client.post("/ingest", files=files[:1], data={"metadata": '[{"a": {"nested": 1}}]'})
    assert response.status_code == 200
    item, = response.json()["items"]
    assert item["status"] == "failed" and "metadata[0].a" in item["error"]


def test_ingest_without_files_is_422(client):
    assert client.post("/ingest", data={"captions": "[]"}).status_code == 422


def test_ingest_with_another_model_than_the_index_is_409(catalog, tmp_path):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    other = load_encoder(build_tiny_model(tmp_path / "other", dim=16), threads=1)
    app = create_app(catalog.settings, client=catalog.client, encoder=other)
    response = TestClient(app).post("/ingest", files={"files": ("a.png", catalog.reference_png(0), "image/png")})
    assert response.status_code == 409 and "model" in detail(response)


# -- API key ----------------------------------------------------------------------------------------

def test_api_key_protects_everything_but_health_and_the_page(catalog):
    client = make_client(catalog, api_key="s3cret")
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
    refused = client.post("/search", data={"text": "red"})
    assert refused.status_code == 401 and "X-API-Key" in detail(refused)
    assert client.post("/search", data={"text": "red"}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/search", data={"text": "red"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.post("/embed", json={"inputText": "red"}).status_code == 401


# -- settings ---------------------------------------------------------------------------------------

def test_settings_from_environment():
    settings = Settings.from_env({"CIR_ENGINE_URL": "https://localhost:9200", "CIR_MAX_K": "7",
                                  "CIR_REMOTE_URL_ALLOWLIST": "https://a.example/, https://b.example/x/"})
    assert settings.engine_url == "https://localhost:9200" and settings.max_k == 7
    assert settings.allows_remote("https://b.example/x/1.jpg") and not settings.allows_remote("https://b.example/y")
    assert Settings.from_env({"OPENSEARCH_URL": "https://os:9200"}, index="cir-x").engine_url == "https://os:9200"
    with pytest.raises(ValueError, match="CIR_MAX_K"):
        Settings.from_env({"CIR_MAX_K": "many"})


# -- the same API on a real cluster (runs when OPENSEARCH_URL is set) ---------------------------------

def test_search_and_embed_on_a_cluster(opensearch_url, tiny_encoder, tmp_path):
    from opensearch_cir.cli.demo import build_scene_catalog
    from opensearch_cir.engines import connect

    index = "cir-test-service"
    cluster = connect(opensearch_url)
    if cluster.indices.exists(index=index):
        cluster.indices.delete(index=index)
    scenes = build_scene_catalog(cluster, index, tiny_encoder, tmp_path, n=12, queries=2)
    settings = Settings(engine_url=opensearch_url, index=index, media_roots=(str(scenes.image_dir),))
    client = TestClient(create_app(settings, client=cluster, encoder=tiny_encoder), raise_server_exceptions=False)
    try:
        query = scenes.queries[0]
        reference = scenes.image_path(query.reference).read_bytes()
        response = client.post("/search", files={"images": ("ref.png", reference, "image/png")},
                               data={"text": query.text, "k": "3", "explain": "true"})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == 3 and client.get(results[0]["image_url"]).status_code == 200
        assert client.get("/health").json()["documents"] == len(scenes.records)
    finally:
        cluster.indices.delete(index=index)


def test_search_with_phi_strategies(client, catalog):
    """The tiny model carries a random φ: `phi` and `phi_hybrid` are offered and answer."""
    assert {"phi", "phi_hybrid"} <= set(client.get("/health").json()["strategies"])
    for strategy, sub_queries in (("phi", {"image_knn"}), ("phi_hybrid", {"caption_bm25", "image_knn", "caption_knn"})):
        response = client.post("/search", files={"images": ("ref.png", catalog.reference_png(0), "image/png")},
                               data={"text": catalog.scenes.queries[0].text, "k": "4", "strategy": strategy})
        assert response.status_code == 200, response.text
        assert set(response.json()["query"]["sub_queries"]) == sub_queries and len(response.json()["results"]) == 4
    response = client.post("/search", data={"text": "a red circle", "strategy": "phi"})
    assert response.status_code == 422 and "reference image" in detail(response)
