"""Every body the package sends validates against the OpenSearch OpenAPI spec and our stricter
rules; each rule the spec misses is shown to reject a bad body with a path."""

from __future__ import annotations

import copy
import io
import json
from types import SimpleNamespace

import pytest
from PIL import Image

from opensearch_cir import admin, dsl
from opensearch_cir.dsl.spec import OPERATIONS, find_spec_dir
from opensearch_cir.dsl.validate import validate_request
from opensearch_cir.errors import BodyValidationError

MODEL = SimpleNamespace(model_id="tiny-random-32", embedding_dim=32)
VECTOR = [0.25] * 32


@pytest.fixture(scope="module")
def spec(api_spec_dir):
    root = find_spec_dir(api_spec_dir)
    assert root is not None, f"{api_spec_dir} has no spec/namespaces"
    return root


def check(kind, body, spec, **options):
    validate_request(kind, body, spec_dir=spec, **options)


def rejects(kind, body, spec, *fragments, **options):
    with pytest.raises(BodyValidationError) as info:
        validate_request(kind, body, spec_dir=spec, **options)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


# -- bodies the package sends ---------------------------------------------------------------------

def test_index_template_create_and_mapping_bodies(spec):
    template = admin.index_template(MODEL, "cir-products")
    check("indices.put_index_template", template, spec)
    check("indices.put_index_template", json.loads((admin.index_templates_dir() / admin.TEMPLATE_FILE).read_text()), spec)
    check("indices.create", admin.index_body(MODEL), spec)
    mappings = template["template"]["mappings"]
    check("indices.put_mapping", {"properties": {"image_uri": mappings["properties"]["image_uri"]}, "_meta": mappings["_meta"]}, spec)
    assert template["template"]["mappings"]["properties"]["image_vector"]["dimension"] == 32


def test_bulk_lines_and_resume_lookup_from_a_real_ingest(spec, tmp_path):
    """Record what the ingestor actually sends, then validate each body."""
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.ingest import Ingestor, Record
    from test_ingest import InMemoryClient

    sent = []

    class Recording(InMemoryClient):
        def bulk(self, body, **kwargs):
            sent.append(("bulk", copy.deepcopy(body)))
            return super().bulk(body, **kwargs)

        def search(self, index, body, params=None):
            sent.append(("search", copy.deepcopy(body)))
            return super().search(index, body, params)

    encoder = load_encoder(build_tiny_model(tmp_path / "tiny"), threads=1, device="cpu")
    client = Recording()
    client.indices.create(index="cir-x", body=admin.index_body(encoder.manifest))
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "teal").save(buffer, format="PNG")
    with Ingestor(client, "cir-x", encoder, resume=True) as ingestor:
        ingestor.add(Record(buffer.getvalue(), captions=["a teal square", "teal"], metadata={"colour": "teal", "sizes": ["S", "M"]}, uri="mem://teal"))
        ingestor.add(Record(buffer.getvalue()[:0] + b"\x89PNG broken"))
    assert [kind for kind, _ in sent] == ["search", "bulk"]
    for kind, body in sent:
        check(kind, body, spec)


def test_search_bodies(spec):
    knn = dsl.knn_clause("image_vector", VECTOR, 50, filter=dsl.term_filters({"metadata.colour": ["red", "blue"]}), ef_search=200)
    hybrid = dsl.hybrid_body(
        [dsl.match_clause("caption", "red dress"), knn, dsl.knn_clause("caption_vector", VECTOR, 50)],
        size=10, pagination_depth=50, filter=dsl.term_filters({"metadata.gender": "women"}),
    )
    check("search", hybrid, spec, pipeline=dsl.PIPELINES["cir-min-max"])
    check("search", dsl.hybrid_body([knn, knn], size=10, from_=10, pagination_depth=40), spec, pipeline=dsl.PIPELINES["cir-rrf"])
    check("search", dsl.search_body(knn, size=10), spec)
    neural = dsl.neural_clause("image_vector", model_id="m1", k=10, query_text="in red", query_image="aGVsbG8=")
    check("search", dsl.search_body(neural, size=10), spec)
    check("search", dsl.hybrid_body([dsl.match_clause("caption", "red", operator="and"), neural], size=5), spec)


def test_search_and_ingest_pipelines_and_ml_bodies(spec):
    assert set(dsl.PIPELINES) == {"cir-min-max", "cir-l2", "cir-z-score", "cir-rrf"}
    for body in dsl.PIPELINES.values():
        check("search_pipeline.put", body, spec)
    for normalization in ("min_max", "l2", "z_score"):
        check("search_pipeline.put", dsl.normalization_pipeline(normalization, "arithmetic_mean", [0.3, 0.7]), spec)
    for combination in ("geometric_mean", "harmonic_mean"):
        check("search_pipeline.put", dsl.normalization_pipeline("min_max", combination, [0.5, 0.5]), spec)
    check("search_pipeline.put", dsl.rrf_pipeline(rank_constant=20, weights=[0.6, 0.4]), spec)
    check("ingest.put_pipeline", dsl.ingest_pipeline_body("model-abc"), spec)
    check("ml.create_connector", dsl.connector_body("http://cir-encoder:8000"), spec)
    check("ml.register_model", dsl.model_register_body("connector-xyz"), spec)


def test_every_operation_has_a_request_body_schema(spec):
    from opensearch_cir.dsl.spec import validator

    for kind in OPERATIONS:
        assert validator(spec, kind) is not None


# -- what the spec alone rejects ------------------------------------------------------------------

def test_spec_rejections(spec):
    rejects("search", {"size": "ten", "query": {"match_all": {}}}, spec, "$.size", "OpenAPI spec")
    rejects("search", {"query": {"knn": {"image_vector": {"vector": "0.1,0.2", "k": 3}}}}, spec, "OpenAPI spec")
    rejects("indices.put_index_template", {"index_patterns": ["cir-*"], "priority": "high"}, spec, "priority", "OpenAPI spec")
    rejects("ml.create_connector", {"name": "x", "actions": []}, spec, "OpenAPI spec")
    rejects("search_pipeline.put", dsl.normalization_pipeline() | {"phase_results_processors": [{"normalization-processor": {"normalization": {"technique": "max"}}}]}, spec, "OpenAPI spec")


# -- what only our rules reject --------------------------------------------------------------------

def _knn(k=10):
    return {"knn": {"image_vector": {"vector": VECTOR, "k": k}}}


def test_strict_search_rules(spec):
    six = {"size": 10, "query": {"hybrid": {"queries": [_knn()] * 6}}}
    rejects("search", six, spec, "$.query.hybrid.queries", "1..5 sub-queries, got 6")
    nested = {"query": {"bool": {"must": [{"hybrid": {"queries": [_knn()]}}]}}}
    rejects("search", nested, spec, "$.query.bool.must[0].hybrid", "top-level")
    rejects("search", {"query": _knn(0)}, spec, "$.query.knn.image_vector.k")
    rejects("search", {"query": _knn(10_001)}, spec, "k must be an integer in 1..10000")
    both = {"query": {"knn": {"image_vector": {"vector": VECTOR, "k": 3, "min_score": 0.5}}}}
    rejects("search", both, spec, "exactly one of k, min_score, max_distance")
    rejects("search", {"query": {"hybrid": {"queries": [_knn()], "boost": 2}}}, spec, "boost")
    rejects("search", {"from": 10, "query": {"hybrid": {"queries": [_knn()]}}}, spec, "pagination_depth")
    rejects("search", {"query": {"knn": {"image_vector": {"vector": [0.1] * 16_001, "k": 3}}}}, spec, "16001 dimensions")


def test_strict_pipeline_rules(spec):
    body = {"size": 10, "query": {"hybrid": {"queries": [_knn(), _knn()]}}}
    rejects("search", body, spec, "3 weights for 2 hybrid sub-queries", pipeline=dsl.PIPELINES["cir-min-max"])
    rejects("search_pipeline.put", dsl.normalization_pipeline(weights=[0.5, 0.4]), spec, "sum to 0.9000")
    rejects("search_pipeline.put", dsl.normalization_pipeline(weights=[1.5, -0.5]), spec, "weights[0]", "outside [0, 1]")
    zscore = dsl.normalization_pipeline("z_score")
    zscore["phase_results_processors"][0]["normalization-processor"]["combination"]["technique"] = "geometric_mean"
    rejects("search_pipeline.put", zscore, spec, "z_score normalisation works only with arithmetic_mean")
    rejects("search_pipeline.put", dsl.rrf_pipeline(rank_constant=10_001), spec, "rank_constant")
    rrf = dsl.rrf_pipeline()
    rrf["phase_results_processors"][0]["score-ranker-processor"]["combination"]["rank_constant"] = 0
    rejects("search_pipeline.put", rrf, spec, "rank_constant")  # the spec's minimum: 1
    rejects("search_pipeline.put", dsl.rrf_pipeline(weights=[0.2, 0.2]), spec, "sum to 0.4000")
    check("search_pipeline.put", dsl.normalization_pipeline(weights=[0.333, 0.333, 0.334]), spec)
    check("search_pipeline.put", dsl.normalization_pipeline(weights=[0.5, 0.495]), spec)  # within ±0.01


def test_strict_mapping_rules(spec):
    def template_with(**changes):
        template = admin.index_template(MODEL, "cir-x")
        template["template"]["mappings"]["properties"]["image_vector"].update(changes)
        return template

    rejects("indices.put_index_template", template_with(dimension=16_001), spec, "image_vector.dimension")
    rejects("indices.put_index_template", template_with(space_type="dot"), spec, "'dot' is not one of")
    nmslib = template_with(method={"name": "hnsw", "engine": "nmslib"})
    rejects("indices.put_index_template", nmslib, spec, "nmslib is blocked")
    rejects("indices.put_index_template", template_with(space_type="hamming"), spec, "hamming")
    no_knn = admin.index_body(MODEL)
    no_knn["settings"]["index"]["knn"] = False
    rejects("indices.create", no_knn, spec, "index.knn: true")
    assert "space_type" in rejects("indices.put_mapping", {"properties": {"v": {"type": "knn_vector", "dimension": 4, "space_type": "cosine"}}}, spec)


def test_strict_ingest_ml_and_bulk_rules(spec):
    pipeline = dsl.ingest_pipeline_body("m1")
    pipeline["processors"][0]["text_image_embedding"]["field_map"] = {"picture": "image_base64"}
    rejects("ingest.put_pipeline", pipeline, spec, "field_map")
    connector = dsl.connector_body("http://enc:8000")
    connector["actions"][0]["url"] = "enc:8000/embed"
    rejects("ml.create_connector", connector, spec, "$.actions[0].url")
    rejects("ml.register_model", {"name": "x", "function_name": "remote"}, spec, "connector_id")
    bad_vector = [{"index": {"_index": "cir-x", "_id": "a"}}, {"image_vector": [0.1, float("nan")]}]
    rejects("bulk", bad_vector, spec, "$[1].image_vector")
    rejects("bulk", [{"index": {"_index": "cir-x", "_id": "a"}}], spec, "followed by a source")


def test_strict_rules_run_without_the_spec(monkeypatch, tmp_path):
    from opensearch_cir.dsl import spec as spec_module

    monkeypatch.setenv("CIR_OPENSEARCH_API_SPEC", str(tmp_path))
    monkeypatch.setattr(spec_module, "_DEFAULT_SPEC", tmp_path)
    assert spec_module.find_spec_dir() is None
    validate_request("search_pipeline.put", dsl.PIPELINES["cir-rrf"])
    with pytest.raises(BodyValidationError, match="sum to"):
        validate_request("search_pipeline.put", dsl.normalization_pipeline(weights=[0.9, 0.9]))


def test_composed_query_bodies(spec, tmp_path):
    """What compose (area E) renders with our builders, for every strategy and normalisation."""
    compose = pytest.importorskip("opensearch_cir.compose.query")
    from opensearch_cir.compose.prepare import prepare
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.ingest import Ingestor, Record
    from test_ingest import InMemoryClient

    encoder = load_encoder(build_tiny_model(tmp_path / "tiny", phi=True), threads=1, device="cpu")
    client = InMemoryClient()
    admin.setup_index(client, "cir-q", encoder.manifest, pipelines={})
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "navy").save(buffer, format="PNG")
    with Ingestor(client, "cir-q", encoder) as ingestor:
        ingestor.add(Record(buffer.getvalue(), captions=["a navy jacket with a hood"]))
    doc_id = next(iter(client.indices_store["cir-q"]))
    query = compose.CompositeQuery(doc_ids=[doc_id], text="in red without the hood", filters={"metadata.gender": ["women", "men"]})
    prepared = prepare(client, "cir-q", query, encoder)
    rendered_count = 0
    for strategy in compose.STRATEGIES:
        for normalization in compose.NORMALIZATIONS:
            rendered = prepared.render(strategy, compose.Weights(normalization=normalization))
            check("search", rendered.body, spec, pipeline=rendered.pipeline_body)
            if rendered.pipeline_body is not None:
                check("search_pipeline.put", rendered.pipeline_body, spec)
            for clause in rendered.sub_queries.values():
                check("search", dsl.search_body(clause, size=10), spec)
            rendered_count += 1
    assert rendered_count == len(compose.STRATEGIES) * len(compose.NORMALIZATIONS)


def test_fields_named_like_clauses_are_not_clauses(spec):
    body = {"query": {"bool": {"filter": [{"term": {"knn": "x"}}, {"match": {"hybrid": "y"}}, {"term": {"neural": "z"}}]}}}
    check("search", body, spec)


def test_non_object_bodies_and_unknown_kinds(spec):
    for kind in ("search", "indices.create", "search_pipeline.put", "ml.create_connector"):
        rejects(kind, ["not", "an", "object"], spec, "must be a JSON object")
    rejects("bulk", {"index": {}}, spec, "list of action/source lines")
    with pytest.raises(ValueError, match="unknown request kind"):
        validate_request("cat.indices", {})


def test_lower_and_upper_bounds(spec):
    bounds = dsl.normalization_pipeline(
        weights=[0.5, 0.5],
        lower_bounds=[{"mode": "apply", "min_score": 0.1}, {"mode": "clip", "min_score": 0.0}],
        upper_bounds=[{"mode": "apply", "max_score": 1.0}, {"mode": "ignore"}],
    )
    normalization = bounds["phase_results_processors"][0]["normalization-processor"]["normalization"]
    assert normalization["parameters"]["lower_bounds"][0] == {"mode": "apply", "min_score": 0.1}
    body = {"size": 10, "query": {"hybrid": {"queries": [_knn(), _knn()]}}}
    check("search", body, spec, pipeline=bounds)
    three = {"size": 10, "query": {"hybrid": {"queries": [_knn()] * 3}}}
    rejects("search", three, spec, "2 bounds for 3 hybrid sub-queries", pipeline=bounds)
    l2 = dsl.normalization_pipeline("l2", lower_bounds=[{"mode": "apply", "min_score": 0.1}])
    rejects("search_pipeline.put", l2, spec, "bounds work only with min_max")
    bad = dsl.normalization_pipeline(lower_bounds=[{"mode": "floor", "min_score": 20_000}])
    rejects("search_pipeline.put", bad, spec, "'floor' is not one of", "min_score: must be a number in [-10000, 10000]")
