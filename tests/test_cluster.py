"""Against a real OpenSearch 3.x cluster: runs only when OPENSEARCH_URL is set (see docker/README.md).

    OPENSEARCH_URL=https://localhost:9200 OPENSEARCH_USER=admin OPENSEARCH_PASSWORD=... \
    OPENSEARCH_CA_CERTS=... (or CIR_TEST_INSECURE=1) pytest tests/test_cluster.py

With CIR_ENCODER_URL set too (the encoder service as the cluster reaches it, e.g.
http://cir-encoder:8000), the ml-commons remote model and a `neural` query are exercised.
"""

from __future__ import annotations

import io
import os
import uuid

import pytest
from PIL import Image

from opensearch_cir import admin, dsl
from opensearch_cir.dialect import detect
from opensearch_cir.errors import IndexMismatchError
from opensearch_cir.ingest import Record, ingest

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230), "yellow": (240, 230, 30)}


@pytest.fixture(scope="module")
def client(opensearch_url):
    from opensearch_cir.engines.opensearch import connect

    client = connect(opensearch_url, verify_certs=not os.environ.get("CIR_TEST_INSECURE"), max_retries=2)
    info = client.info()
    assert detect(client).version >= (2, 19, 0), info["version"]  # 2.19 and 3.x: bodies follow the version
    return client


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny")), threads=1, device="cpu")


@pytest.fixture(scope="module")
def index(client, encoder):
    name = f"cir-test-{uuid.uuid4().hex[:8]}"
    report = admin.setup_index(client, name, encoder.manifest)
    assert report.index_action == "created"
    records = []
    for colour, rgb in COLOURS.items():
        buffer = io.BytesIO()
        Image.new("RGB", (48, 48), rgb).save(buffer, format="PNG")
        records.append(Record(buffer.getvalue(), captions=[f"a {colour} square"], metadata={"colour": colour}, uri=f"mem://{colour}"))
    result = ingest(client, name, encoder, records, retry_backoff=0.2)
    assert (result.indexed, result.failed) == (len(COLOURS), 0)
    yield name
    client.indices.delete(index=name)
    client.indices.delete_index_template(name=admin.template_name(name))


def test_setup_is_idempotent_and_refuses_another_model(client, index, encoder):
    assert admin.setup_index(client, index, encoder.manifest).index_action == "unchanged"
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["image_vector"]["dimension"] == encoder.dim
    other = type("M", (), {"model_id": "other", "embedding_dim": encoder.dim})()
    with pytest.raises(IndexMismatchError):
        admin.setup_index(client, index, other)


def test_reingest_updates_and_resume_skips(client, index, encoder):
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), COLOURS["red"]).save(buffer, format="PNG")
    report = ingest(client, index, encoder, [Record(buffer.getvalue(), captions=["a red square"])], resume=True)
    assert report.skipped == 1
    assert client.count(index=index)["count"] == len(COLOURS)


@pytest.mark.parametrize("pipeline", sorted(dsl.PIPELINES))
def test_hybrid_search_with_each_pipeline(client, index, encoder, pipeline):
    vector = encoder.encode_texts(["a red square"])[0]
    queries = [dsl.match_clause("caption", "red"), dsl.knn_clause("image_vector", vector, 4), dsl.knn_clause("caption_vector", vector, 4)]
    dialect = detect(client)
    accepted, skipped = dsl.for_dialect(dsl.PIPELINES, dialect)
    if pipeline in skipped:
        pytest.skip(skipped[pipeline])
    body = dsl.hybrid_body(queries, size=4, pagination_depth=4, dialect=dialect)
    dsl.validate_request("search", body, pipeline=accepted[pipeline], dialect=dialect)
    response = client.search(index=index, body=body, params={"search_pipeline": pipeline})
    hits = response["hits"]["hits"]
    assert hits and hits[0]["_source"]["metadata"]["colour"] == "red"
    assert "image_vector" not in hits[0]["_source"]


def test_filtered_knn(client, index, encoder):
    vector = encoder.encode_texts(["a square"])[0]
    clause = dsl.knn_clause("image_vector", vector, 4, filter=dsl.term_filters({"metadata.colour": ["blue", "green"]}))
    response = client.search(index=index, body=dsl.search_body(clause, size=4))
    assert {hit["_source"]["metadata"]["colour"] for hit in response["hits"]["hits"]} <= {"blue", "green"}


def test_remote_model_ingest_pipeline_and_neural_query(client):
    """OpenSearch embeds through our encoder service: at ingest (cir-embed) and for a neural query."""
    import base64
    from types import SimpleNamespace

    encoder_url = os.environ.get("CIR_ENCODER_URL")
    if not encoder_url:
        pytest.skip("CIR_ENCODER_URL is not set")
    model_id = admin.setup_remote_model(client, encoder_url)
    prediction = client.ml.predict(algorithm_name="remote", model_id=model_id, body={"parameters": {"inputText": "a red square"}})
    dimension = len(prediction["inference_results"][0]["output"][0]["data"])
    name = f"cir-test-neural-{uuid.uuid4().hex[:8]}"
    admin.setup_index(client, name, SimpleNamespace(model_id=model_id, embedding_dim=dimension), pipelines={})
    try:
        for colour, rgb in COLOURS.items():
            buffer = io.BytesIO()
            Image.new("RGB", (48, 48), rgb).save(buffer, format="PNG")
            document = {"caption": f"a {colour} square", "image_base64": base64.b64encode(buffer.getvalue()).decode(),
                        "metadata": {"colour": colour}}
            client.index(index=name, body=document, id=colour, params={"pipeline": "cir-embed", "refresh": "true"})
        stored = client.get(index=name, id="red")["_source"]
        assert len(stored["image_vector"]) == dimension and "image_base64" not in stored
        listed = {"caption": ["a red square", "a small red box"], "metadata": {"colour": "red"}}  # row 10 of issue 11
        client.index(index=name, body=listed, id="listed", params={"pipeline": "cir-embed", "refresh": "true"})
        assert len(client.get(index=name, id="listed")["_source"]["caption_vector"]) == dimension
        client.delete(index=name, id="listed", refresh=True)
        clause = dsl.neural_clause("caption_vector", model_id=model_id, k=4, query_text="a red square")
        response = client.search(index=name, body=dsl.search_body(clause, size=4))
        assert response["hits"]["hits"][0]["_id"] == "red"
    finally:
        client.indices.delete(index=name)
        client.indices.delete_index_template(name=admin.template_name(name))
