"""Cases from neural-search's tests (opensearch-project/neural-search: query/HybridQueryIT.java,
processor/factory/NormalizationProcessorFactoryTests.java, RRFProcessorFactoryTests.java and the
validation in ScoreCombinationUtil / RRFNormalizationTechnique), written for the embedded client."""

from __future__ import annotations

import pytest

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.errors import EngineError

pytestmark = pytest.mark.upstream("neural-search HybridQueryIT / processor factories")

NORMALIZATION = {"normalization-processor": {"normalization": {"technique": "min_max"}, "combination": {"technique": "arithmetic_mean"}}}


@pytest.fixture()
def client(tmp_path):
    c = EmbeddedClient(tmp_path / "e")
    c.indices.create(index="hybrid", body={"mappings": {"properties": {
        "test-text-field-1": {"type": "text"},
        "test-knn-vector-1": {"type": "knn_vector", "dimension": 3, "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"}}}}})
    docs = ["Hello world", "Hi to this place", "We would like to welcome everyone", "Hello, this is the sample text"]
    body = []
    for i, text in enumerate(docs):
        body += [{"index": {"_index": "hybrid", "_id": str(i + 1)}}, {"test-text-field-1": text, "test-knn-vector-1": [float(i), 1.0, 0.0]}]
    c.bulk(body=body)
    c.search_pipeline.put(id="pipeline", body={"phase_results_processors": [NORMALIZATION]})
    yield c
    c.close()


def hybrid(client, queries, **extra):
    body = {"query": {"hybrid": {"queries": queries, **{k: v for k, v in extra.items() if k == "pagination_depth"}}}}
    body.update({k: v for k, v in extra.items() if k in ("from", "size")})
    return client.search(index="hybrid", body=body, params={"search_pipeline": "pipeline"})


def test_no_match_results_when_only_term_sub_query_without_match(client):
    """HybridQueryIT.testNoMatchResults_whenOnlyTermSubQueryWithoutMatch_thenEmptyResult: no hits,
    max_score 0.0, total {0, eq}."""
    hits = hybrid(client, [{"term": {"test-text-field-1": "nope"}}, {"term": {"test-text-field-1": "nothing"}}])["hits"]
    assert hits["hits"] == [] and hits["max_score"] == 0.0 and hits["total"] == {"value": 0, "relation": "eq"}


def test_total_hits_counts_every_match(client):
    """HybridQueryIT.testTotalHits_whenResultSizeIsLessThenDefaultSize_thenSuccessful: total counts
    every matching document even when size (and so the depth) is smaller."""
    hits = hybrid(client, [{"match": {"test-text-field-1": "hello this"}}, {"match_all": {}}], size=1)["hits"]
    assert hits["total"]["value"] == 4 and len(hits["hits"]) == 1


def test_nested_query_when_hybrid_query_is_wrapped_into_other_query(client):
    """HybridQueryIT.testNestedQuery_whenHybridQueryIsWrappedIntoOtherQuery_thenFail: a 400."""
    body = {"query": {"bool": {"must": [{"hybrid": {"queries": [{"match_all": {}}]}}]}}}
    with pytest.raises(EngineError) as info:
        client.search(index="hybrid", body=body, params={"search_pipeline": "pipeline"})
    assert info.value.status == 400


def test_from_is_greater_than_total_result_count(client):
    """HybridQueryIT.testHybridQuery_whenFromIsGreaterThanTotalResultCount_thenFail."""
    with pytest.raises(EngineError, match="Reached end of search result, increase pagination_depth value to see more results") as info:
        hybrid(client, [{"match_all": {}}], pagination_depth=10, size=10, **{"from": 5})
    assert info.value.status == 400


def test_pagination_depth_out_of_range(client):
    """HybridQueryIT.testHybridQuery_whenPaginationDepthIsOutOfRange_thenFail (100001 > index.max_result_window)."""
    with pytest.raises(EngineError, match="pagination_depth should be less than or equal to index.max_result_window setting"):
        hybrid(client, [{"match_all": {}}], pagination_depth=100001)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"normalization": {"technique": "random_name_for_normalization"}}, "provided normalization technique is not supported"),
        ({"combination": {"technique": "random_name_for_combination"}}, "provided combination technique is not supported"),
        ({"combination": {"technique": "arithmetic_mean", "parameters": {"weights_random": [0.5, 0.5]}}}, "provided parameter for combination technique is not supported"),
        ({"combination": {"parameters": {"weights": [0.3, 0.3, 0.1]}}}, "sum of weights for combination must be equal to 1.0"),
        ({"combination": {"parameters": {"weights": [1.2, -0.2]}}}, "all weights must be in range"),
        ({"combination": {"parameters": {"weights": "0.5"}}}, "must be a collection of numbers"),
    ],
)
def test_normalization_processor_factory_validation(client, config, message):
    """NormalizationProcessorFactoryTests.testInputValidation_whenInvalidNormalizationClause_thenFail,
    testInputValidation_whenInvalidCombinationClause_thenFail, testInputValidation_whenInvalidCombinationParams_thenFail,
    testWeightsParams_whenInvalidValues_thenFail: refused when the pipeline is PUT, 400."""
    with pytest.raises(EngineError, match=message) as info:
        client.search_pipeline.put(id="bad", body={"phase_results_processors": [{"normalization-processor": config}]})
    assert info.value.status == 400 and info.value.error_type == "illegal_argument_exception"
    with pytest.raises(EngineError):
        client.search_pipeline.get(id="bad")


def test_normalization_processor_when_no_params(client):
    """NormalizationProcessorFactoryTests.testNormalizationProcessor_whenNoParams_thenSuccessful."""
    assert client.search_pipeline.put(id="defaults", body={"phase_results_processors": [{"normalization-processor": {}}]})["acknowledged"]


@pytest.mark.parametrize(
    "rank_constant, message",
    [(-1, "rank constant must be in the interval between 1 and 10000"), (50_000, "rank constant must be in the interval between 1 and 10000"),
     ("string", "parameter \\[rank_constant\\] must be an integer")],
)
def test_rrf_processor_factory_validation(client, rank_constant, message):
    """RRFProcessorFactoryTests.testInvalidCombinationParams_whenRankIsNegative_thenFail,
    testInvalidCombinationParams_whenRankIsTooLarge_thenFail, testInvalidCombinationParams_whenRankIsNotNumeric_thenFail."""
    body = {"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": rank_constant}}}]}
    with pytest.raises(EngineError, match=message) as info:
        client.search_pipeline.put(id="rrf", body=body)
    assert info.value.status == 400


def test_rrf_defaults_when_no_values_passed(client):
    """RRFProcessorFactoryTests.testDefaults_whenNoValuesPassed_thenSuccessful: rank_constant 60."""
    client.search_pipeline.put(id="rrf", body={"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf"}}}]})
    hits = client.search(index="hybrid", body={"query": {"hybrid": {"queries": [{"match_all": {}}]}}}, params={"search_pipeline": "rrf"})["hits"]["hits"]
    assert hits[0]["_score"] == pytest.approx(1 / 61)


def test_pipeline_with_only_response_processors_is_accepted(client):
    """A search pipeline may hold only request/response processors (OpenSearch search pipelines);
    a non-hybrid search runs through it."""
    client.search_pipeline.put(id="explain-only", body={"response_processors": [{"hybrid_score_explanation": {}}]})
    hits = client.search(index="hybrid", body={"query": {"match_all": {}}}, params={"search_pipeline": "explain-only"})["hits"]
    assert hits["total"]["value"] == 4
