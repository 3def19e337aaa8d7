"""The same scenarios against the embedded engine and, when OPENSEARCH_URL is set, a real cluster.

Expected values are computed independently (Lucene's BM25 formula, k-NN score formulas, the
scoring functions applied to each sub-query's own results), so both engines must agree with them.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter

import numpy as np
import pytest

from opensearch_cir.engines import connect
from opensearch_cir.resources import index_templates_dir
from opensearch_cir.scoring import byte4_to_int, combine, int_to_byte4, min_max, rrf_rank_scores

DIM = 4


def _cluster_client():
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("OPENSEARCH_URL is not set")
    try:
        from opensearch_cir.engines import opensearch  # noqa: F401  (engine C)
    except ImportError:
        pytest.skip("opensearch_cir.engines.opensearch is not available")
    return connect(url)


@pytest.fixture(params=["embedded", "opensearch"])
def engine(request, tmp_path):
    """(client, unique name prefix); cluster resources are removed afterwards."""
    client = connect(f"embedded://{tmp_path / 'db'}") if request.param == "embedded" else _cluster_client()
    prefix = f"cir-scn-{uuid.uuid4().hex[:8]}"
    created: list[tuple[str, str]] = []
    yield client, prefix, created
    for kind, name in reversed(created):
        try:
            if kind == "index":
                client.indices.delete(index=name)
            elif kind == "pipeline":
                client.search_pipeline.delete(id=name)
            elif kind == "template":
                client.indices.delete_index_template(name=name)
        except Exception:  # best-effort cleanup on a shared cluster
            pass
    if request.param == "embedded":
        client.close()


def status_of(exc: Exception) -> int:
    return getattr(exc, "status", None) or getattr(exc, "status_code", None)


def make_index(engine, suffix: str, dim: int = DIM) -> str:
    client, prefix, created = engine
    body = json.loads((index_templates_dir() / "cir-index-template.json").read_text())
    for field in ("image_vector", "caption_vector"):
        body["template"]["mappings"]["properties"][field]["dimension"] = dim
    index = f"{prefix}-{suffix}"
    body["index_patterns"] = [index]
    client.indices.put_index_template(name=index, body=body)
    created.append(("template", index))
    client.indices.create(index=index)
    created.append(("index", index))
    return index


def put_pipeline(engine, suffix: str, body: dict) -> str:
    client, prefix, created = engine
    name = f"{prefix}-{suffix}"
    client.search_pipeline.put(id=name, body=body)
    created.append(("pipeline", name))
    return name


def index_docs(client, index: str, docs: dict[str, dict]) -> None:
    body = []
    for doc_id, source in docs.items():
        body += [{"index": {"_index": index, "_id": doc_id}}, source]
    response = client.bulk(body=body, refresh=True)
    assert not response["errors"]


CAPTIONS = {
    "1": "A red dress with white dots",
    "2": ["Men's T-shirts in red", "cotton shirt"],
    "3": "Blue jeans, slim fit, blue denim " + "long " * 40,
    "4": "Red running shoes",
    "5": "a green hat",
}


def tokens(text: str) -> list[str]:
    from opensearch_cir.engines.embedded.analysis import build_analyzer

    analysis = json.loads((index_templates_dir() / "cir-index-template.json").read_text())["template"]["settings"]["analysis"]
    return build_analyzer("cir_caption", {"index.analysis": analysis})(text)


def test_template_mapping_and_documents(engine):
    client, _, _ = engine
    index = make_index(engine, "docs")
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["image_vector"]["type"] == "knn_vector"
    assert mapping["properties"]["caption"]["analyzer"] == "cir_caption"
    index_docs(client, index, {"a": {"caption": "red car", "image_vector": [1, 0, 0, 0], "metadata": {"colour": "red"}}})
    doc = client.get(index=index, id="a")
    assert doc["found"] and doc["_source"]["caption"] == "red car"
    assert client.count(index=index)["count"] == 1
    client.delete(index=index, id="a", refresh=True)
    with pytest.raises(Exception) as missing:
        client.get(index=index, id="a")
    assert status_of(missing.value) == 404


def test_bm25_equals_lucene_formula(engine):
    client, _, _ = engine
    index = make_index(engine, "bm25")
    index_docs(client, index, {k: {"caption": v} for k, v in CAPTIONS.items()})
    corpus = {k: [t for value in ([v] if isinstance(v, str) else v) for t in tokens(value)] for k, v in CAPTIONS.items()}
    avgdl = sum(map(len, corpus.values())) / len(corpus)
    query = "red shirts and blue denim"
    expected = {}
    for doc_id, toks in corpus.items():
        counts, dl = Counter(toks), byte4_to_int(int_to_byte4(len(toks)))
        score = 0.0
        for term in tokens(query):
            if counts[term]:
                df = sum(term in t for t in corpus.values())
                idf = math.log(1 + (len(corpus) - df + 0.5) / (df + 0.5))
                score += idf * counts[term] / (counts[term] + 1.2 * (0.25 + 0.75 * dl / avgdl))
        if score:
            expected[doc_id] = score
    hits = client.search(index=index, body={"query": {"match": {"caption": query}}, "size": 10})["hits"]["hits"]
    assert {h["_id"]: pytest.approx(h["_score"], rel=1e-4) for h in hits} == expected


def test_knn_scores_innerproduct(engine):
    client, _, _ = engine
    index = make_index(engine, "knn", dim=3)
    index_docs(client, index, {"x": {"image_vector": [1, 0, 0]}, "y": {"image_vector": [0, 1, 0]}, "z": {"image_vector": [1, 1, 0]}})
    hits = client.search(index=index, body={"query": {"knn": {"image_vector": {"vector": [1, 0.5, 0], "k": 3}}}})["hits"]["hits"]
    assert [(h["_id"], round(h["_score"], 4)) for h in hits] == [("z", 2.5), ("x", 2.0), ("y", 1.5)]


def _vectors_and_docs(n: int = 30):
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = ["red", "blue", "green", "dress", "shirt", "hat"]
    return {
        f"d{i}": {"caption": f"{words[i % 6]} {words[(i * 5 + i // 6) % 6]} item", "image_vector": vectors[i].tolist(), "metadata": {"parity": "odd" if i % 2 else "even"}}
        for i in range(n)
    }


def _sub_query(client, index, query, depth):
    hits = client.search(index=index, body={"query": query, "size": depth, "_source": False})["hits"]["hits"]
    return [h["_id"] for h in hits], np.array([h["_score"] for h in hits], dtype=np.float32)


def test_hybrid_min_max_harmonic(engine):
    client, _, _ = engine
    index = make_index(engine, "hyb")
    index_docs(client, index, _vectors_and_docs())
    pipeline = put_pipeline(
        engine,
        "mm",
        {"phase_results_processors": [{"normalization-processor": {"normalization": {"technique": "min_max"}, "combination": {"technique": "harmonic_mean", "parameters": {"weights": [0.4, 0.6]}}}}]},
    )
    text = {"match": {"caption": "red dress"}}
    knn = {"knn": {"image_vector": {"vector": [0.3, 0.1, -0.5, 0.2], "k": 10}}}
    body = {"size": 6, "query": {"hybrid": {"queries": [text, knn]}}, "_source": {"excludes": ["image_vector", "caption_vector"]}}
    hits = client.search(index=index, body=body, params={"search_pipeline": pipeline})["hits"]["hits"]
    ids_t, raw_t = _sub_query(client, index, text, 6)
    ids_k, raw_k = _sub_query(client, index, knn, 6)
    norm_t, norm_k = min_max([raw_t, raw_k])
    union = sorted(set(ids_t) | set(ids_k))
    table = np.array([[dict(zip(ids_t, norm_t)).get(d, 0.0), dict(zip(ids_k, norm_k)).get(d, 0.0)] for d in union])
    combined = dict(zip(union, combine("harmonic_mean", table, [0.4, 0.6])))
    # ties (equal captions) break by index order, as Lucene's doc ids do within one segment
    assert [h["_id"] for h in hits] == sorted(union, key=lambda d: (-combined[d], int(d[1:])))[:6]
    for h in hits:
        assert h["_score"] == pytest.approx(combined[h["_id"]], abs=1e-5)


def test_hybrid_rrf_with_filter(engine):
    client, _, _ = engine
    index = make_index(engine, "rrf")
    docs = _vectors_and_docs()
    index_docs(client, index, docs)
    pipeline = put_pipeline(engine, "rrf", {"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}]})
    flt = {"term": {"metadata.parity": "odd"}}
    text = {"match": {"caption": "blue shirt"}}
    knn = {"knn": {"image_vector": {"vector": [0.5, 0.5, 0.5, 0.5], "k": 8}}}
    body = {"size": 5, "query": {"hybrid": {"queries": [text, knn], "filter": flt}}}
    hits = client.search(index=index, body=body, params={"search_pipeline": pipeline})["hits"]["hits"]
    ids_t, _ = _sub_query(client, index, {"bool": {"must": [text], "filter": [flt]}}, 5)
    ids_k, _ = _sub_query(client, index, {"knn": {"image_vector": {**knn["knn"]["image_vector"], "filter": flt}}}, 5)
    rank = rrf_rank_scores(5, 60)
    fused = Counter()
    for ids in (ids_t, ids_k):
        for r, d in enumerate(ids):
            fused[d] += float(rank[r])
    best = sorted(fused.values(), reverse=True)[:5]
    assert [h["_score"] for h in hits] == pytest.approx(best, abs=1e-7)
    assert all(h["_score"] == pytest.approx(fused[h["_id"]], abs=1e-7) for h in hits)
    assert all(docs[h["_id"]]["metadata"]["parity"] == "odd" for h in hits)


def test_hybrid_rejects_six_sub_queries(engine):
    client, _, _ = engine
    index = make_index(engine, "six")
    pipeline = put_pipeline(engine, "p", {"phase_results_processors": [{"normalization-processor": {"normalization": {"technique": "l2"}}}]})
    body = {"query": {"hybrid": {"queries": [{"match": {"caption": "x"}}] * 6}}}
    with pytest.raises(Exception) as refused:
        client.search(index=index, body=body, params={"search_pipeline": pipeline})
    assert status_of(refused.value) == 400
