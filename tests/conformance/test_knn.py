"""Cases from the k-NN plugin's integration tests (opensearch-project/k-NN,
src/test/java/org/opensearch/knn/index/LuceneEngineIT.java and SpaceType/KNNQueryBuilder rules),
written for the embedded client. Each test names the upstream test whose expectation it encodes."""

from __future__ import annotations

import pytest

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.errors import EngineError

pytestmark = pytest.mark.upstream("k-NN LuceneEngineIT / FaissIT / KNNQueryBuilder")

INDEX_VECTORS = [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
COSINE_VECTORS = [[6.0, 7.0, 3.0], [3.0, 2.0, 5.0], [4.0, 5.0, 7.0]]
QUERY_VECTORS = INDEX_VECTORS


def lucene_index(tmp_path, space: str, vectors, *, dimension=3) -> EmbeddedClient:
    client = EmbeddedClient(tmp_path / "e")
    mapping = {"type": "knn_vector", "dimension": dimension, "method": {"name": "hnsw", "space_type": space, "engine": "lucene"}}
    client.indices.create(index="knn", body={"settings": {"index.knn": True}, "mappings": {"properties": {"v": mapping}}})
    body = []
    for i, vector in enumerate(vectors):
        body += [{"index": {"_index": "knn", "_id": str(i + 1)}}, {"v": vector}]
    assert not client.bulk(body=body)["errors"]
    return client


def radial_counts(client, **threshold) -> list[int]:
    return [client.search(index="knn", body={"size": 10, "query": {"knn": {"v": {"vector": q, **threshold}}}})["hits"]["total"]["value"]
            for q in QUERY_VECTORS]


def test_radius_search_using_distance_threshold_using_l2(tmp_path):
    """LuceneEngineIT.testRadiusSearch_usingDistanceThreshold_usingL2Metrics_usingFloatType: max_distance 3.5 -> 2, 3, 2."""
    assert radial_counts(lucene_index(tmp_path, "l2", INDEX_VECTORS), max_distance=3.5) == [2, 3, 2]


def test_radius_search_using_score_threshold_using_l2(tmp_path):
    """LuceneEngineIT.testRadiusSearch_usingScoreThreshold_usingL2Metrics_usingFloatType: min_score 0.23 -> 2, 3, 2."""
    assert radial_counts(lucene_index(tmp_path, "l2", INDEX_VECTORS), min_score=0.23) == [2, 3, 2]


def test_radius_search_using_distance_threshold_using_cosine(tmp_path):
    """LuceneEngineIT.testRadiusSearch_usingDistanceThreshold_usingCosineMetrics_usingFloatType: max_distance 0.03 -> 1, 1, 1."""
    assert radial_counts(lucene_index(tmp_path, "cosinesimil", COSINE_VECTORS), max_distance=0.03) == [1, 1, 1]


def test_lucene_innerproduct_max_distance_is_the_inner_product(tmp_path):
    """Lucene.java DISTANCE_TRANSLATIONS (k-NN): on a Lucene innerproduct field max_distance d becomes
    min_score d + 1 (d >= 0), i.e. inner product >= d; faiss reads d as a distance (-inner product)."""
    client = lucene_index(tmp_path, "innerproduct", INDEX_VECTORS)
    hits = client.search(index="knn", body={"query": {"knn": {"v": {"vector": [1.0, 1.0, 1.0], "max_distance": 6.0}}}})["hits"]
    assert sorted(h["_id"] for h in hits["hits"]) == ["2", "3"]  # inner products 6 and 9


def test_query_l2_scores(tmp_path):
    """LuceneEngineIT.testQuery_l2: the nearest neighbours with score 1 / (1 + squared distance)."""
    client = lucene_index(tmp_path, "l2", INDEX_VECTORS)
    hits = client.search(index="knn", body={"query": {"knn": {"v": {"vector": [1.0, 1.0, 1.0], "k": 3}}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["1", "2", "3"]
    assert [h["_score"] for h in hits] == pytest.approx([1.0, 1 / 4, 1 / 13])


def test_query_cosine_scores(tmp_path):
    """LuceneEngineIT.testQuery_cosine: score (1 + cosine) / 2."""
    client = lucene_index(tmp_path, "cosinesimil", INDEX_VECTORS)
    hits = client.search(index="knn", body={"query": {"knn": {"v": {"vector": [1.0, 1.0, 1.0], "k": 3}}}})["hits"]["hits"]
    assert [h["_score"] for h in hits] == pytest.approx([1.0, 1.0, 1.0])


def test_query_invalid_vector_dimension_in_query(tmp_path):
    """LuceneEngineIT.testQuery_invalidVectorDimensionInQuery: a 400."""
    client = lucene_index(tmp_path, "l2", INDEX_VECTORS)
    with pytest.raises(EngineError, match="Query vector has invalid dimension: 2. Dimension should be: 3") as info:
        client.search(index="knn", body={"query": {"knn": {"v": {"vector": [1.0, 1.0], "k": 1}}}})
    assert info.value.status == 400


def test_query_documents_missing_field(tmp_path):
    """LuceneEngineIT.testQuery_documentsMissingField: documents without the vector are not returned."""
    client = lucene_index(tmp_path, "l2", INDEX_VECTORS)
    client.index(index="knn", id="4", body={"other": 0})
    hits = client.search(index="knn", body={"query": {"knn": {"v": {"vector": [1.0, 1.0, 1.0], "k": 10}}}})["hits"]
    assert hits["total"]["value"] == 3


def test_zero_vector_refused_on_lucene_cosine(tmp_path):
    """SpaceType.COSINESIMIL.validateVector: "zero vector is not supported when space type is [cosinesimil]"
    for a document on a Lucene field and for any query."""
    client = lucene_index(tmp_path, "cosinesimil", INDEX_VECTORS)
    item = client.bulk(body=[{"index": {"_index": "knn", "_id": "z"}}, {"v": [0.0, 0.0, 0.0]}])["items"][0]["index"]
    assert item["status"] == 400 and "zero vector is not supported" in item["error"]["reason"]
    with pytest.raises(EngineError, match="zero vector is not supported") as info:
        client.search(index="knn", body={"query": {"knn": {"v": {"vector": [0.0, 0.0, 0.0], "k": 1}}}})
    assert info.value.status == 400


@pytest.mark.parametrize("threshold, message", [({"max_distance": -1.0}, "distance to be non-negative"), ({"min_score": 1.5}, "score to be in the range")])
def test_radial_threshold_validation(tmp_path, threshold, message):
    """KNNQueryBuilder.doToQuery: negative max_distance / min_score > 1 refused except for innerproduct."""
    client = lucene_index(tmp_path, "l2", INDEX_VECTORS)
    with pytest.raises(EngineError, match=message) as info:
        client.search(index="knn", body={"query": {"knn": {"v": {"vector": [1.0, 1.0, 1.0], **threshold}}}})
    assert info.value.status == 400


def test_string_dimension_is_parsed(tmp_path):
    """KNNVectorFieldMapper: "dimension": "3" is parsed as the number 3."""
    client = lucene_index(tmp_path, "l2", INDEX_VECTORS, dimension="3")
    assert client.count(index="knn")["count"] == 3


def filter_index(tmp_path, engine: str) -> EmbeddedClient:
    """FaissIT / LuceneEngineIT setupKNNIndexForFilterQuery: three vectors with a dynamic `color`."""
    client = EmbeddedClient(tmp_path / "e")
    mapping = {"type": "knn_vector", "dimension": 3, "method": {"name": "hnsw", "space_type": "l2", "engine": engine}}
    client.indices.create(index="knn", body={"settings": {"index.knn": True}, "mappings": {"properties": {"v": mapping}}})
    docs = [("doc1", [6.0, 7.9, 3.1], {"color": "red", "taste": "sweet"}), ("doc2", [3.2, 2.1, 4.8], {"color": "green"}),
            ("doc3", [4.1, 5.0, 7.1], {"color": "red"})]
    body = []
    for doc_id, vector, attributes in docs:
        body += [{"index": {"_index": "knn", "_id": doc_id}}, {"v": vector, **attributes}]
    assert not client.bulk(body=body)["errors"]
    return client


def test_faiss_radial_query_with_filter(tmp_path):
    """FaissIT.testRadialQuery_withFilter_thenSuccess: max_distance 15 with a term filter -> doc3."""
    client = filter_index(tmp_path, "faiss")
    query = {"knn": {"v": {"vector": [3.3, 3.0, 5.0], "max_distance": 15.0, "filter": {"term": {"color": "red"}}}}}
    assert [h["_id"] for h in client.search(index="knn", body={"query": query})["hits"]["hits"]] == ["doc3"]


@pytest.mark.parametrize("engine", ["faiss", "lucene"])
def test_query_with_filter(tmp_path, engine):
    """LuceneEngineIT.testQueryWithFilterUsingFloatVectorDataType (and FaissIT's filter tests): k=3 with a
    `color: red` filter returns only the red documents, nearest first."""
    client = filter_index(tmp_path, engine)
    query = {"knn": {"v": {"vector": [6.0, 7.9, 3.1], "k": 3, "filter": {"term": {"color": "red"}}}}}
    assert [h["_id"] for h in client.search(index="knn", body={"query": query})["hits"]["hits"]] == ["doc1", "doc3"]
