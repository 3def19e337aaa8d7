"""Issue 11, rows 2-12 (row 1: tests/test_embed_contract.py), and how a cluster's dialect is found.

Each row's test names the upstream file (opensearch-project/<repo> at tag X.Y.Z.0) that shows what
the cluster does; each failed on the code before the dialect.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_ingest import InMemoryClient

from opensearch_cir import admin, dsl
from opensearch_cir.compose.query import CompositeQuery, PreparedQuery, Weights
from opensearch_cir.compose.rewrite import Rewrite
from opensearch_cir.dialect import (
    FEATURES, VERSION_ENV, Dialect, UnsupportedFeatureError, detect, dialect_from_info, parse_version,
)
from opensearch_cir.dsl.ml import connector_body, ingest_pipeline_body
from opensearch_cir.dsl.version_rules import version_errors
from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.resources import index_templates_dir

V219, V30, V31, V33 = (Dialect.of(v) for v in ("2.19.0", "3.0.0", "3.1.0", "3.3.0"))
MODEL = SimpleNamespace(model_id="tiny-random-32", embedding_dim=32)


def prepared(filters=None) -> PreparedQuery:
    """A prepared hybrid query (image, text, caption) without an encoder: fixed unit vectors."""
    import numpy as np

    unit = np.full(32, 1 / np.sqrt(32), np.float32)
    query = CompositeQuery(text="in navy", filters=filters or {})
    return PreparedQuery(query=query, image=unit, caption="a red jacket", rewrite=Rewrite(text="a navy jacket"),
                         text=unit, negative=None, caption_vector=unit, caption_with_text=unit, rewritten=unit,
                         excluded_ids=["ref-1"])


class RecordingML(InMemoryClient):
    """InMemoryClient plus the ml-commons and ingest calls `setup_remote_model` makes."""

    def __init__(self, dialect: Dialect):
        super().__init__()
        self.cir_dialect = dialect
        self.sent: dict[str, dict] = {}
        self.ml = SimpleNamespace(
            create_connector=lambda body: self.sent.setdefault("connector", body) and {"connector_id": "c1"},
            register_model=lambda body, params: self.sent.setdefault("register", body) and {"model_id": "m1"},
        )
        self.ingest = SimpleNamespace(put_pipeline=lambda id, body: self.sent.setdefault("ingest", body))


# -- rows --------------------------------------------------------------------------------------------

def test_row2_connector_sends_the_services_api_key(monkeypatch):
    """admin.setup_remote_model registered `X-API-Key: none` whatever CIR_API_KEY said (401 on every inference)."""
    monkeypatch.setenv("CIR_API_KEY", "s3cret")
    client = RecordingML(V33)
    assert admin.setup_remote_model(client, "http://encoder:8000") == "m1"
    connector = client.sent["connector"]
    assert connector["credential"] == {"api_key": "s3cret"}
    assert connector["actions"][0]["headers"]["X-API-Key"] == "${credential.api_key}"
    assert admin.setup_remote_model(RecordingML(V33), "http://e:1", api_key="given") == "m1"


def test_row3_connector_timeouts_are_seconds():
    """ml-commons ml-algorithms/.../remote/HttpJsonConnectorExecutor.java: Duration.ofSeconds(connection_timeout)."""
    config = connector_body("http://encoder:8000")["client_config"]
    assert config["connection_timeout"] == 5 and config["read_timeout"] == 30


@pytest.mark.parametrize("dialect", [V219, V30])
def test_row4_weighted_rrf_is_refused_before_3_1(dialect):
    """neural-search processor/factory/RRFProcessorFactory.java (2.19/3.0): combination.parameters go to
    the RRF normaliser, whose ScoreNormalizationUtil.validateParams rejects `weights` (400)."""
    with pytest.raises(UnsupportedFeatureError, match=r"needs OpenSearch 3\.1\.0.*RRFProcessorFactory"):
        dsl.rrf_pipeline(weights=[0.7, 0.3], dialect=dialect)
    equal = dsl.rrf_pipeline(weights=[0.5, 0.5], dialect=dialect)  # equal weights = plain RRF: dropped
    assert "weights" not in json.dumps(equal) and not version_errors("search_pipeline.put", equal, dialect)
    with pytest.raises(UnsupportedFeatureError, match="3.1.0"):
        prepared().render("hybrid", Weights(normalization="rrf"), dialect=dialect)
    weighted = dsl.rrf_pipeline(weights=[0.7, 0.3], dialect=V31)
    assert weighted["phase_results_processors"][0]["score-ranker-processor"]["combination"]["parameters"] == {"weights": [0.7, 0.3]}


def test_row5_rank_constant_where_each_version_reads_it():
    """neural-search RRFProcessorFactory.java: 2.19/3.0 read rank_constant only from
    combination.parameters (beside technique it is silently ignored); 3.1+ read it beside technique."""
    for dialect in (V219, V30):
        combination = dsl.rrf_pipeline(20, dialect=dialect)["phase_results_processors"][0]["score-ranker-processor"]["combination"]
        assert combination == {"technique": "rrf", "parameters": {"rank_constant": 20}}
        assert version_errors("search_pipeline.put", dsl.rrf_pipeline(20, dialect=V33), dialect)  # 3.1 form: ignored
    combination = dsl.rrf_pipeline(20, dialect=V31)["phase_results_processors"][0]["score-ranker-processor"]["combination"]
    assert combination == {"technique": "rrf", "rank_constant": 20}
    shipped = dsl.PIPELINES["cir-rrf"]
    assert all(not version_errors("search_pipeline.put", shipped, d) for d in (V219, V30, V31, V33))


def test_row6_hybrid_filter_is_pushed_into_each_sub_query_on_2_19():
    """neural-search query/HybridQueryBuilder.java: FILTER_FIELD exists from 3.0.0.0; 2.19 rejects `filter`."""
    rendered = prepared({"metadata.color": "navy"}).render("hybrid", dialect=V219)
    hybrid = rendered.body["query"]["hybrid"]
    assert "filter" not in hybrid
    wanted = {"bool": {"filter": [{"term": {"metadata.color": "navy"}}], "must_not": [{"ids": {"values": ["ref-1"]}}]}}
    for query in hybrid["queries"]:
        if "knn" in query:
            (params,) = query["knn"].values()
            assert params["filter"] == wanted
        else:
            assert query["bool"]["filter"] == [wanted]
    assert not version_errors("search", rendered.body, V219)
    on_3 = prepared({"metadata.color": "navy"}).render("hybrid", dialect=V30).body["query"]["hybrid"]
    assert on_3["filter"] == wanted
    assert version_errors("search", {"query": {"hybrid": on_3}}, V219)


def test_row7_skip_existing_only_from_3_0():
    """neural-search processor/factory/TextImageEmbeddingProcessorFactory.java reads SKIP_EXISTING from 3.0.0.0;
    2.19 leaves it in the config, which core rejects as an unknown processor parameter."""
    old = ingest_pipeline_body("m1", V219)
    assert "skip_existing" not in json.dumps(old["processors"]) and not version_errors("ingest.put_pipeline", old, V219)
    assert "skip_existing" in json.dumps(ingest_pipeline_body("m1", V30)["processors"])


def test_row8_setup_on_2_19_skips_z_score_and_puts_the_rest():
    """neural-search processor/normalization/ScoreNormalizationFactory.java (2.19.0.0) has no z_score."""
    client = InMemoryClient()
    client.cir_dialect = V219
    report = admin.setup_index(client, "cir-a", MODEL)
    assert report.index_action == "created"
    assert set(report.pipelines) == set(dsl.PIPELINES) - {"cir-z-score"}
    assert "3.0.0" in report.skipped["search pipeline cir-z-score"] and not report.failed
    with pytest.raises(UnsupportedFeatureError, match="3.0.0"):
        prepared().render("hybrid", Weights(normalization="z_score"), dialect=V219)


def test_row9_z_score_keeps_the_strategy_weights():
    """neural-search ScoreNormalizationFactory.java (3.3.0.0) allows z_score with arithmetic_mean, and
    combination/ArithmeticMeanScoreCombinationTechnique.java applies `weights`."""
    rendered = prepared().render("hybrid", Weights(normalization="z_score"), dialect=V33)
    combination = rendered.pipeline_body["phase_results_processors"][0]["normalization-processor"]["combination"]
    assert combination == {"technique": "arithmetic_mean", "parameters": {"weights": rendered.weights}}
    assert len(set(rendered.weights)) > 1


def test_row10_caption_lists_reach_the_processor_as_one_string():
    """neural-search processor/TextImageEmbeddingProcessor.java (buildMapWithKnnKeyAndOriginalValue):
    a mapped field that is not a non-blank String fails the document."""
    processors = ingest_pipeline_body("m1", V33)["processors"]
    caption_embedders = [p["text_image_embedding"] for p in processors
                         if "text" in p.get("text_image_embedding", {}).get("field_map", {})]
    joins = [p["join"] for p in processors if "join" in p]
    assert len(caption_embedders) == 2 and len(joins) == 1
    direct, joined = caption_embedders
    assert direct["field_map"]["text"] == "caption" and "instanceof String" in direct["if"]
    assert joins[0]["field"] == "caption" and "instanceof List" in joins[0]["if"]
    assert joined["field_map"]["text"] == joins[0]["target_field"] and "instanceof String" in joined["if"]
    assert joins[0]["target_field"] in processors[-1]["remove"]["field"]  # the joined text is not stored


def test_row11_ef_search_is_a_faiss_method_parameter():
    """k-NN index/util/IndexUtil.java passes index.knn.algo_param.ef_search to NMSLIB only;
    index/engine/faiss/FaissHNSWMethod.java reads method.parameters.ef_search."""
    template = admin.index_template(MODEL)["template"]
    assert "knn.algo_param.ef_search" not in template["settings"]["index"]
    for field in ("image_vector", "caption_vector"):
        method = template["mappings"]["properties"][field]["method"]
        assert method["engine"] == "faiss" and method["parameters"]["ef_search"] == 100


def test_row11_embedded_engine_reads_ef_search_where_k_nn_does():
    """The embedded engine takes ef_search from the field's method parameters (faiss), and from the
    index setting only for nmslib fields, as k-NN IndexUtil.java / FaissHNSWMethod.java do."""
    from opensearch_cir.engines.embedded.clauses.knn import _default_ef_search
    from opensearch_cir.engines.embedded.mapping import FieldSpec

    setting = {"index.knn.algo_param.ef_search": 512}
    faiss = FieldSpec("v", "knn_vector", {"dimension": 4, "method": {"name": "hnsw", "engine": "faiss", "parameters": {"ef_search": 64}}})
    assert _default_ef_search(faiss, setting) == 64
    plain = FieldSpec("v", "knn_vector", {"dimension": 4})
    assert _default_ef_search(plain, setting) == 100
    nmslib = FieldSpec("v", "knn_vector", {"dimension": 4, "method": {"name": "hnsw", "engine": "nmslib"}})
    assert _default_ef_search(nmslib, setting) == 512


def test_row12_date_like_metadata_stays_keyword(tmp_path):
    """OpenSearch core server/.../index/mapper/DocumentParser.java: with date_detection on (the default)
    a date-like string becomes `date` before `match_mapping_type: string` templates apply."""
    template = json.loads((index_templates_dir() / admin.TEMPLATE_FILE).read_text())
    assert template["template"]["mappings"]["date_detection"] is False
    client = EmbeddedClient(tmp_path)
    admin.setup_index(client, "cir-d", MODEL, pipelines={})
    client.index(index="cir-d", id="a", body={"caption": "x", "metadata": {"season": "2024-05-01"}}, refresh=True)
    mapping = client.indices.get_mapping(index="cir-d")["cir-d"]["mappings"]
    assert mapping["properties"]["metadata"]["properties"]["season"]["type"] == "keyword"


# -- finding the dialect ---------------------------------------------------------------------------

def test_every_feature_names_its_upstream_file_and_a_version():
    for name, feature in FEATURES.items():
        assert feature.name == name and feature.since >= (2, 16, 0) and ".java" in feature.source


def test_dialect_from_get_root_and_plugins():
    info = {"version": {"distribution": "opensearch", "number": "2.19.1"}}
    dialect = dialect_from_info(info, {"opensearch-neural-search": "2.19.1.0"})
    assert dialect.version == (2, 19, 1) and dialect.has_plugin("opensearch-neural-search")
    assert not dialect.has_plugin("opensearch-ml") and not dialect.supports("hybrid_filter")
    compat = dialect_from_info({"version": {"number": "7.10.2"}}, {"opensearch-knn": "3.1.0.0"})
    assert compat.version == (3, 1, 0) and "compatibility" in compat.distribution
    with pytest.raises(Exception, match=VERSION_ENV):
        dialect_from_info({"version": {"number": "7.10.2"}}, None)
    assert dialect_from_info({}, None, override="3.0").version == (3, 0, 0)
    assert parse_version("2.19.0.0") == (2, 19, 0)


def test_detect_asks_once_and_honours_the_override(monkeypatch, tmp_path):
    calls = []
    client = SimpleNamespace(info=lambda: calls.append(1) or {"version": {"distribution": "opensearch", "number": "3.1.0"}})
    assert detect(client).version == (3, 1, 0) and detect(client).version == (3, 1, 0) and calls == [1]
    monkeypatch.setenv(VERSION_ENV, "2.19.0")
    assert detect(SimpleNamespace(info=lambda: {})).version == (2, 19, 0)
    serverless = SimpleNamespace(info=lambda: pytest.fail("Serverless has no GET /"), cir_serverless=True)
    assert detect(serverless).distribution == "aoss" and detect(serverless).version == (2, 19, 0)


def test_embedded_engine_answers_like_a_3x_cluster(tmp_path):
    client = EmbeddedClient(tmp_path)
    dialect = detect(client)
    assert dialect.version >= (3, 1, 0) and dialect.distribution == "opensearch-cir-embedded"
    assert all(dialect.supports(name) for name in FEATURES)


def test_cluster_connect_takes_a_version_for_serverless():
    from opensearch_cir.engines.opensearch import connect

    client = connect("https://abc.us-east-1.aoss.amazonaws.com", opensearch_version="2.19")
    assert client.cir_serverless and detect(client) == Dialect.of("2.19", "aoss")


def test_the_docs_mirror_the_table():
    from opensearch_cir.dialect import format_version

    text = (index_templates_dir().parent / "docs" / "opensearch-versions.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in text.splitlines()
            if line.startswith("| `") and line.count("|") == 5}
    assert rows == {name: format_version(feature.since) for name, feature in FEATURES.items()}


def test_a_refused_get_root_falls_back_to_the_oldest_rules():
    class Forbidden(Exception):
        status_code = 403

    def info():
        raise Forbidden("no cluster:monitor/main")

    assert detect(SimpleNamespace(info=info)).version == (2, 19, 0)
    with pytest.raises(ConnectionError):
        detect(SimpleNamespace(info=lambda: (_ for _ in ()).throw(ConnectionError("down"))))


def test_setup_goes_on_past_a_failed_step_and_reports_it(tmp_path, monkeypatch):
    """A pipeline the cluster refuses (a 500 here) does not stop the template, the index or the other pipelines."""
    from typer.testing import CliRunner

    from opensearch_cir.cli import app
    from opensearch_cir.cli import setup as setup_cli
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.errors import EngineError

    client = InMemoryClient()
    client.cir_dialect = V219
    put = client.search_pipeline.put

    def flaky_put(id, body):
        if id == "cir-l2":
            raise EngineError("boom", status=500)
        put(id=id, body=body)

    client.search_pipeline.put = flaky_put
    with pytest.raises(admin.SetupIncomplete, match="search pipeline cir-l2: boom") as info:
        admin.setup_index(client, "cir-f", MODEL)
    report = info.value.report
    assert report.index_action == "created" and "cir-template-cir-f" in client.templates
    assert set(report.pipelines) == {"cir-min-max", "cir-rrf"} and "search pipeline cir-z-score" in report.skipped

    monkeypatch.setattr(setup_cli, "connect_from_options", lambda *a, **k: client)
    result = CliRunner().invoke(app, ["setup", "--index", "cir-g", "--model", str(build_tiny_model(tmp_path / "tiny"))])
    assert result.exit_code == 1
    assert "index cir-g: created" in result.output and "search pipeline cir-rrf: unchanged" in result.output
    assert "skipped search pipeline cir-z-score: z_score normalisation needs OpenSearch 3.0.0" in result.output
    assert "failed search pipeline cir-l2: boom" in result.output


def test_the_version_override_leaves_the_embedded_engine_alone(tmp_path, monkeypatch):
    from opensearch_cir.engines import connect

    monkeypatch.setenv(VERSION_ENV, "2.19.0")
    client = connect(f"embedded://{tmp_path}", opensearch_version="2.19.0")
    assert detect(client).version == (3, 3, 0)


def test_setup_names_missing_plugins():
    client = InMemoryClient()
    client.cir_dialect = Dialect.of("3.3.0", plugins=["opensearch-knn"])
    report = admin.setup_index(client, "cir-p", MODEL)
    assert report.index_action == "created" and not report.pipelines
    assert "opensearch-neural-search is not installed" in report.skipped["search pipeline cir-rrf"]
    with pytest.raises(Exception, match="opensearch-ml plugin"):
        admin.setup_remote_model(client, "http://encoder:8000")
    client.cir_dialect = Dialect.of("3.3.0", plugins=[])
    with pytest.raises(Exception, match="opensearch-knn plugin"):
        admin.setup_index(client, "cir-q", MODEL)
