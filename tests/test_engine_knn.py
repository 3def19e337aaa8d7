"""The embedded engine's `knn` query: scores per space type, HNSW recall against exact search,
efficient filtering, radial search and a bool post-filter. Split from test_engine_embedded.py,
whose client fixture and helpers these tests share."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine_embedded import bulk_docs, client, random_docs, template  # noqa: F401  (client: a fixture)

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.errors import EngineError


@pytest.mark.parametrize(
    "space, expected",
    [("l2", [0.8, 0.4444, 0.8]), ("cosinesimil", [0.9472, 0.7236, 0.9743]), ("innerproduct", [2.0, 1.5, 2.5])],
)
def test_knn_scores_per_space_type(client, space, expected):
    index = f"vec-{space}"
    client.indices.create(
        index=index, body={"mappings": {"properties": {"v": {"type": "knn_vector", "dimension": 3, "space_type": space}}}}
    )
    bulk_docs(client, index, {"x": {"v": [1, 0, 0]}, "y": {"v": [0, 1, 0]}, "z": {"v": [1, 1, 0]}})
    hits = client.search(index=index, body={"query": {"knn": {"v": {"vector": [1, 0.5, 0], "k": 3}}}})["hits"]["hits"]
    got = {h["_id"]: h["_score"] for h in hits}
    np.testing.assert_allclose([got["x"], got["y"], got["z"]], expected, atol=1e-4)


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, allowed=None) -> list[int]:
    scores = vectors @ query
    scores = np.where(scores >= 0, scores + 1, 1 / (1 - scores))
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    return list(np.argsort(-scores, kind="stable")[:k])


def test_hnsw_recall_and_efficient_filtering(tmp_path):
    dim, n = 16, 1500
    client = EmbeddedClient(tmp_path / "e", hnsw_threshold=500)
    client.indices.put_index_template(name="cir", body=template(dim))
    client.indices.create(index="cir-hnsw")
    docs, vectors = random_docs(n, dim)
    bulk_docs(client, "cir-hnsw", docs)
    client.indices.refresh(index="cir-hnsw")
    assert list((tmp_path / "e" / "cir-hnsw" / "vectors").glob("image_vector.*.hnsw"))
    rng = np.random.default_rng(1)
    recalls = []
    for _ in range(20):
        q = rng.normal(size=dim).astype(np.float32)
        body = {"query": {"knn": {"image_vector": {"vector": q.tolist(), "k": 10}}}, "_source": False}
        got = [int(h["_id"][3:]) for h in client.search(index="cir-hnsw", body=body)["hits"]["hits"]]
        recalls.append(len(set(got) & set(exact_top(vectors, q, 10))) / 10)
    assert np.mean(recalls) >= 0.9
    # selective filter (matches x dim <= 2,048,000): exact search, identical to brute force
    q = rng.normal(size=dim).astype(np.float32)
    allowed = np.array([i % 4 == 2 for i in range(n)])
    body = {
        "size": 10,
        "query": {"knn": {"image_vector": {"vector": q.tolist(), "k": 10, "filter": {"term": {"metadata.colour": "blue"}}}}},
    }
    hits = client.search(index="cir-hnsw", body=body)["hits"]["hits"]
    assert [int(h["_id"][3:]) for h in hits] == exact_top(vectors, q, 10, allowed)
    assert all(h["_source"]["metadata"]["colour"] == "blue" for h in hits)
    client.close()


def test_knn_radial_and_bool_post_filter(client):
    client.indices.create(index="cir-radial")
    docs = {"a": {"image_vector": [1, 0, 0, 0], "metadata": {"c": "x"}}, "b": {"image_vector": [0.5, 0, 0, 0], "metadata": {"c": "y"}}, "c": {"image_vector": [-1, 0, 0, 0]}}
    bulk_docs(client, "cir-radial", docs)
    q = [1, 0, 0, 0]
    radial = client.search(index="cir-radial", body={"query": {"knn": {"image_vector": {"vector": q, "min_score": 1.4}}}})
    assert [h["_id"] for h in radial["hits"]["hits"]] == ["a", "b"]
    # bool filter outside knn is a post-filter on the top k (not efficient filtering)
    body = {"query": {"bool": {"must": [{"knn": {"image_vector": {"vector": q, "k": 1}}}], "filter": [{"term": {"metadata.c": "y"}}]}}}
    assert client.search(index="cir-radial", body=body)["hits"]["total"]["value"] == 0
    with pytest.raises(EngineError, match="exactly one of k"):
        client.search(index="cir-radial", body={"query": {"knn": {"image_vector": {"vector": q, "k": 1, "min_score": 1}}}})
    with pytest.raises(EngineError, match="dimension"):
        client.search(index="cir-radial", body={"query": {"knn": {"image_vector": {"vector": [1, 0], "k": 1}}}})
