"""DSL builders: exact shapes, input checks, pipelines from index_templates/, ml-commons bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from opensearch_cir import dsl
from opensearch_cir.resources import index_templates_dir


def test_knn_clause_shape_and_checks():
    clause = dsl.knn_clause("image_vector", np.array([0.5, -0.25], dtype=np.float32), 7, filter={"term": {"a": 1}}, ef_search=64)
    assert clause == {"knn": {"image_vector": {"vector": [0.5, -0.25], "k": 7, "filter": {"term": {"a": 1}},
                                               "method_parameters": {"ef_search": 64}}}}
    assert dsl.knn_clause("v", [1.0], 1) == {"knn": {"v": {"vector": [1.0], "k": 1}}}
    for bad_k in (0, 10_001):
        with pytest.raises(ValueError, match="k must be in"):
            dsl.knn_clause("v", [1.0], bad_k)
    with pytest.raises(ValueError, match="empty"):
        dsl.knn_clause("v", [], 3)
    with pytest.raises(ValueError, match="finite"):
        dsl.knn_clause("v", [1.0, float("inf")], 3)


def test_match_neural_and_filters():
    assert dsl.match_clause("caption", "navy jacket") == {"match": {"caption": {"query": "navy jacket", "operator": "or"}}}
    with pytest.raises(ValueError):
        dsl.match_clause("caption", "x", operator="xor")
    neural = dsl.neural_clause("image_vector", model_id="m", k=5, query_image="QUJD")
    assert neural == {"neural": {"image_vector": {"model_id": "m", "k": 5, "query_image": "QUJD"}}}
    with pytest.raises(ValueError, match="query_text"):
        dsl.neural_clause("image_vector", model_id="m", k=5)
    assert dsl.term_filters(None) is None
    assert dsl.term_filters({"metadata.colour": ["red", "blue"], "model_id": "m"}) == {
        "bool": {"filter": [{"terms": {"metadata.colour": ["red", "blue"]}}, {"term": {"model_id": "m"}}]}
    }


def test_hybrid_body():
    queries = [dsl.match_clause("caption", "red"), dsl.knn_clause("image_vector", [1.0], 20)]
    body = dsl.hybrid_body(queries, size=10, pagination_depth=20, filter={"term": {"x": 1}})
    assert body == {
        "size": 10,
        "query": {"hybrid": {"queries": queries, "pagination_depth": 20, "filter": {"term": {"x": 1}}}},
        "_source": {"excludes": ["image_vector", "caption_vector"]},
    }
    assert "_source" not in dsl.hybrid_body(queries, size=3, source_excludes=None)
    assert dsl.hybrid_body(queries, size=3, from_=6, pagination_depth=30)["from"] == 6
    with pytest.raises(ValueError, match="1..5"):
        dsl.hybrid_body(queries * 3, size=10)
    with pytest.raises(ValueError, match="1..5"):
        dsl.hybrid_body([], size=10)
    with pytest.raises(ValueError, match="pagination_depth"):
        dsl.hybrid_body(queries, size=10, from_=10)


def test_pipelines_are_the_json_files():
    folder = index_templates_dir() / "search_pipelines"
    assert dsl.PIPELINES == {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert dsl.DEFAULT_PIPELINE in dsl.PIPELINES
    processor = dsl.PIPELINES["cir-min-max"]["phase_results_processors"][0]["normalization-processor"]
    assert processor["normalization"]["technique"] == "min_max"
    assert sum(processor["combination"]["parameters"]["weights"]) == pytest.approx(1.0)
    rrf = dsl.PIPELINES["cir-rrf"]["phase_results_processors"][0]["score-ranker-processor"]["combination"]
    assert rrf == {"technique": "rrf"}  # the default rank_constant (60): read alike by 2.19 and 3.1+ (row 5, issue 11)


def test_pipeline_builders_and_ids():
    body = dsl.normalization_pipeline("l2", "harmonic_mean", [0.5, 0.5])
    processor = body["phase_results_processors"][0]["normalization-processor"]
    assert processor == {"normalization": {"technique": "l2"},
                         "combination": {"technique": "harmonic_mean", "parameters": {"weights": [0.5, 0.5]}}}
    with pytest.raises(ValueError):
        dsl.normalization_pipeline("softmax")
    with pytest.raises(ValueError):
        dsl.normalization_pipeline("min_max", "median")
    same = dsl.normalization_pipeline("l2", "harmonic_mean", [0.5, 0.5], description="other text")
    assert dsl.pipeline_id(body) == dsl.pipeline_id(same)  # the id depends on the processors only
    assert dsl.pipeline_id(body) != dsl.pipeline_id(dsl.normalization_pipeline("l2", "harmonic_mean", [0.4, 0.6]))
    assert dsl.pipeline_id(body).startswith("cir-adhoc-")
    rrf = dsl.rrf_pipeline(30, [0.7, 0.3])["phase_results_processors"][0]["score-ranker-processor"]["combination"]
    assert rrf == {"technique": "rrf", "rank_constant": 30, "parameters": {"weights": [0.7, 0.3]}}


def test_ml_bodies_substitute_only_our_placeholders():
    connector = dsl.connector_body("https://encoder.internal:8000/", model_name="clip-b32", api_key="s3cret")
    action = connector["actions"][0]
    assert action["url"] == "https://encoder.internal:8000/embed"
    assert connector["credential"] == {"api_key": "s3cret"} and connector["parameters"]["model"] == "clip-b32"
    assert "${parameters.inputText:-null}" in action["request_body"]  # ml-commons' own template stays
    assert action["headers"]["X-API-Key"] == "${credential.api_key}"  # the service checks X-API-Key
    assert action["post_process_function"] == "connector.post_process.bedrock.embedding"
    assert dsl.model_register_body("c-1") == {
        "name": "opensearch-cir-encoder", "function_name": "remote",
        "description": "opensearch-cir encoder (remote model over the encoder-connector)", "connector_id": "c-1",
    }
    processors = dsl.ingest_pipeline_body("m-9")["processors"]
    assert [p["text_image_embedding"]["model_id"] for p in processors[:2]] == ["m-9", "m-9"]
    assert {p["text_image_embedding"]["embedding"] for p in processors[:2]} == {"image_vector", "caption_vector"}
    text = json.dumps([dsl.connector_body("http://x"), dsl.model_register_body("c"), dsl.ingest_pipeline_body("m")])
    assert "${CIR_" not in text


def test_render_names_missing_placeholders():
    from opensearch_cir.dsl.ml import CONNECTOR_FILE, render

    with pytest.raises(KeyError, match="CIR_ENCODER_URL"):
        render(CONNECTOR_FILE, {"CIR_MODEL_NAME": "x", "CIR_ENCODER_API_KEY": "y"})
