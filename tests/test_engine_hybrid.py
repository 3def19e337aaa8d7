"""The embedded engine's `hybrid` query: normalization and RRF pipelines against the scoring
functions, filters, pagination, errors, `hits.total`, and pipelines shared between clients."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_engine_embedded import DIM, bulk_docs, client, random_docs  # noqa: F401  (client: a fixture)

from opensearch_cir.engines import connect
from opensearch_cir.errors import EngineError, UnsupportedQueryError
from opensearch_cir.scoring import combine, min_max, rrf_rank_scores


def hybrid_fixture(client, index="cir-hyb"):
    client.indices.create(index=index)
    docs, vectors = random_docs(60, DIM, seed=3)
    bulk_docs(client, index, docs)
    return docs, vectors


def sub_results(client, index, query, depth):
    hits = client.search(index=index, body={"query": query, "size": depth, "_source": False})["hits"]["hits"]
    return [h["_id"] for h in hits], np.array([h["_score"] for h in hits], dtype=np.float32)


def test_hybrid_min_max_arithmetic_matches_scoring_functions(client):
    hybrid_fixture(client)
    pipeline = {
        "phase_results_processors": [
            {"normalization-processor": {"normalization": {"technique": "min_max"}, "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.3, 0.7]}}}}
        ],
        "response_processors": [{"hybrid_score_explanation": {}}],
    }
    client.search_pipeline.put(id="mm", body=pipeline)
    text = {"match": {"caption": "red blue number7"}}
    knn = {"knn": {"image_vector": {"vector": [0.5, -0.2, 0.1, 0.9], "k": 8}}}
    body = {"size": 5, "query": {"hybrid": {"queries": [text, knn]}}, "explain": True, "_source": {"excludes": ["image_vector"]}}
    response = client.search(index="cir-hyb", body=body, params={"search_pipeline": "mm"})
    ids_t, raw_t = sub_results(client, "cir-hyb", text, 5)
    ids_k, raw_k = sub_results(client, "cir-hyb", knn, 5)
    norm_t, norm_k = min_max([raw_t, raw_k])
    union = sorted(set(ids_t) | set(ids_k))
    table = np.array([[dict(zip(ids_t, norm_t)).get(d, 0.0), dict(zip(ids_k, norm_k)).get(d, 0.0)] for d in union])
    combined = dict(zip(union, combine("arithmetic_mean", table, [0.3, 0.7])))
    hits = response["hits"]["hits"]
    # neural-search counts every document a sub-query matches (knn: its k), not only the top `depth`
    every_match = set(sub_results(client, "cir-hyb", text, 100)[0]) | set(sub_results(client, "cir-hyb", knn, 100)[0])
    assert response["hits"]["total"]["value"] == len(every_match)
    expected = sorted(union, key=lambda d: -combined[d])[:5]
    assert [h["_id"] for h in hits] == expected
    for h in hits:
        assert h["_score"] == pytest.approx(combined[h["_id"]], abs=1e-6)
        assert "image_vector" not in h["_source"]
        explanation = h["_explanation"]
        assert explanation["value"] == pytest.approx(h["_score"])
        assert explanation["description"].startswith("arithmetic_mean")
        raws = {d["details"][0]["description"]: d["details"][0]["value"] for d in explanation["details"]}
        if h["_id"] in ids_t:
            assert raws["sub-query [0] raw score"] == pytest.approx(dict(zip(ids_t, raw_t))[h["_id"]])


def test_hybrid_rrf_filter_pagination_and_default_pipeline(client):
    client.search_pipeline.put(id="rrf", body={"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 10}}}]})
    client.indices.create(index="cir-rrf", body={"settings": {"index.search.default_pipeline": "rrf"}})
    docs, _ = random_docs(40, DIM, seed=5)
    bulk_docs(client, "cir-rrf", docs)
    text = {"match": {"caption": "red green"}}
    knn = {"knn": {"image_vector": {"vector": [0.1, 0.2, 0.3, 0.4], "k": 20}}}
    flt = {"term": {"metadata.colour": "red"}}
    body = {"size": 4, "from": 2, "query": {"hybrid": {"queries": [text, knn], "pagination_depth": 10, "filter": flt}}}
    hits = client.search(index="cir-rrf", body=body)["hits"]["hits"]
    ids_t, _ = sub_results(client, "cir-rrf", {"bool": {"must": [text], "filter": [flt]}}, 10)
    ids_k, _ = sub_results(client, "cir-rrf", {"knn": {"image_vector": {**knn["knn"]["image_vector"], "filter": flt}}}, 10)
    rank = rrf_rank_scores(10, 10)
    fused = Counter()
    for ids in (ids_t, ids_k):
        for r, d in enumerate(ids):
            fused[d] += float(rank[r])
    order = sorted(fused, key=lambda d: (-fused[d], int(d[3:])))
    assert [h["_id"] for h in hits] == order[2:6]
    assert all(docs[h["_id"]]["metadata"]["colour"] == "red" for h in hits)


def test_hybrid_errors(client):
    hybrid_fixture(client, "cir-err")
    q = {"match": {"caption": "red"}}
    with pytest.raises(EngineError, match="search pipeline"):
        client.search(index="cir-err", body={"query": {"hybrid": {"queries": [q]}}})
    client.search_pipeline.put(id="p", body={"phase_results_processors": [{"normalization-processor": {}}]})
    with pytest.raises(EngineError, match="between 1 and 5"):
        client.search(index="cir-err", body={"query": {"hybrid": {"queries": [q] * 6}}}, params={"search_pipeline": "p"})
    with pytest.raises(EngineError, match="pagination_depth"):
        client.search(index="cir-err", body={"from": 2, "query": {"hybrid": {"queries": [q]}}}, params={"search_pipeline": "p"})
    with pytest.raises(EngineError, match="top level"):
        client.search(index="cir-err", body={"query": {"bool": {"must": [{"hybrid": {"queries": [q]}}]}}})
    with pytest.raises(EngineError, match="not defined"):
        client.search(index="cir-err", body={"query": {"hybrid": {"queries": [q]}}}, params={"search_pipeline": "nope"})
    with pytest.raises(UnsupportedQueryError, match="request_processors"):
        client.search_pipeline.put(id="bad", body={"request_processors": [{"filter_query": {}}]})
    client.search_pipeline.put(id="w", body={"phase_results_processors": [{"normalization-processor": {"combination": {"technique": "arithmetic_mean", "parameters": {"weights": [1.0]}}}}]})
    with pytest.raises(EngineError, match="number of weights"):
        client.search(index="cir-err", body={"query": {"hybrid": {"queries": [q, q]}}}, params={"search_pipeline": "w"})
    assert client.search_pipeline.get(id="w")["w"]["phase_results_processors"]
    client.search_pipeline.delete(id="w")
    with pytest.raises(EngineError) as missing:
        client.search_pipeline.get(id="w")
    assert missing.value.status == 404


# --- request surface ------------------------------------------------------------------------------
def test_hybrid_total_counted_by_tantivy_equals_every_match_after_deletes_and_updates(client):
    docs, _ = hybrid_fixture(client, "cir-total")
    client.delete(index="cir-total", id="doc1", refresh=True)  # green
    client.delete(index="cir-total", id="doc4", refresh=True)  # red
    client.index(index="cir-total", id="doc8", body={**docs["doc8"], "caption": "item purple"}, refresh=True)
    client.index(index="cir-total", id="doc9", body={**docs["doc9"], "caption": "item red again"}, refresh=True)
    client.search_pipeline.put(id="rrf", body={"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf"}}}]})
    cases = [
        [{"match": {"caption": "red"}}, {"knn": {"image_vector": {"vector": [0.5, -0.2, 0.1, 0.9], "k": 9}}}],
        [{"match": {"caption": "red"}}, {"match": {"caption": "blue purple"}}],
        [{"term": {"caption": "green"}}, {"knn": {"image_vector": {"vector": [-0.1, 0.3, 0.8, 0.2], "k": 20}}},
         {"term": {"metadata.colour": "black"}}],
    ]
    for queries in cases:
        every_match = set()
        for query in queries:
            every_match |= set(sub_results(client, "cir-total", query, 100)[0])
        body = {"size": 3, "query": {"hybrid": {"queries": queries}}}
        total = client.search(index="cir-total", body=body, params={"search_pipeline": "rrf"})["hits"]["total"]
        assert total == {"value": len(every_match), "relation": "eq"}, queries
    # track_total_hits: false (what compose sends): the same hits, no total, and nothing counted
    import opensearch_cir.engines.embedded.hybrid as hybrid_module

    counted = client.search(index="cir-total", body=body, params={"search_pipeline": "rrf"})["hits"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hybrid_module, "_total_matches", lambda *a: pytest.fail("counted with track_total_hits false"))
        uncounted = client.search(index="cir-total", body={**body, "track_total_hits": False}, params={"search_pipeline": "rrf"})["hits"]
    assert "total" not in uncounted and uncounted["hits"] == counted["hits"]


def test_a_search_pipeline_put_by_another_client_is_used_at_once(client, tmp_path):
    hybrid_fixture(client, "cir-pipe")
    other = connect(f"embedded://{tmp_path / 'engine'}")  # as another process would
    queries = [{"match": {"caption": "red"}}, {"knn": {"image_vector": {"vector": [0.5, -0.2, 0.1, 0.9], "k": 5}}}]
    body = {"size": 3, "query": {"hybrid": {"queries": queries}}}

    def put(weights):
        other.search_pipeline.put(id="p", body={"phase_results_processors": [{"normalization-processor": {
            "normalization": {"technique": "min_max"}, "combination": {"technique": "arithmetic_mean", "parameters": {"weights": weights}}}}]})

    def ranked(searcher):
        hits = searcher.search(index="cir-pipe", body=body, params={"search_pipeline": "p"})["hits"]["hits"]
        return [(h["_id"], round(h["_score"], 6)) for h in hits]

    put([0.99, 0.01])
    text_heavy = ranked(client)
    put([0.01, 0.99])
    fresh = connect(f"embedded://{tmp_path / 'engine'}")  # reads the registry anew
    assert ranked(client) == ranked(fresh) != text_heavy
    fresh.close()
    other.search_pipeline.delete(id="p")
    with pytest.raises(EngineError, match="not defined"):
        client.search(index="cir-pipe", body=body, params={"search_pipeline": "p"})
    other.close()
