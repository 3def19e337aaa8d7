"""The embedded engine: exact OpenSearch scoring, filters, hybrid pipelines, bulk semantics, storage."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from opensearch_cir.engines import connect
from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.engines.embedded import store as store_module
from opensearch_cir.engines.embedded.analysis import build_analyzer
from opensearch_cir.errors import EngineError, UnsupportedQueryError
from opensearch_cir.resources import index_templates_dir
from opensearch_cir.scoring import byte4_to_int, int_to_byte4

DIM = 4


def template(dim: int = DIM, space: str = "innerproduct") -> dict:
    body = json.loads((index_templates_dir() / "cir-index-template.json").read_text())
    for field in ("image_vector", "caption_vector"):
        body["template"]["mappings"]["properties"][field]["dimension"] = dim
        body["template"]["mappings"]["properties"][field]["space_type"] = space
    return body


@pytest.fixture
def client(tmp_path):
    c = connect(f"embedded://{tmp_path / 'engine'}")
    c.indices.put_index_template(name="cir", body=template())
    yield c
    c.close()


def bulk_docs(client, index, docs: dict[str, dict]):
    body = []
    for doc_id, source in docs.items():
        body += [{"index": {"_index": index, "_id": doc_id}}, source]
    response = client.bulk(body=body, refresh=True)
    assert not response["errors"], response
    return response


def analyze(text: str) -> list[str]:
    settings = {"index.analysis": template()["template"]["settings"]["analysis"]}
    return build_analyzer("cir_caption", settings)(text)


# --- analysis ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Men's T-Shirts", ["men", "s", "t", "shirt"]),
        ("pi is 3.14", ["pi", "is", "3", "14"]),
        ("naïve CAFÉ", ["naïv", "café"]),
        ("running dogs, jumped!", ["run", "dog", "jump"]),
        ("e-mail:foo_bar@x.org", ["e", "mail", "foo", "bar", "x", "org"]),
        ("日本語 テキスト", ["日本語", "テキスト"]),
    ],
)
def test_caption_analyzer_reproduces_pattern_lowercase_snowball(text, tokens):
    assert analyze(text) == tokens


def test_unreproducible_analyzer_is_refused(client):
    with pytest.raises(UnsupportedQueryError, match="french"):
        client.indices.create(index="plain", body={"mappings": {"properties": {"t": {"type": "text", "analyzer": "french"}}}})
    assert not client.indices.exists(index="plain")
    with pytest.raises(EngineError, match="has not been configured") as excinfo:
        client.indices.create(index="plain", body={"mappings": {"properties": {"t": {"type": "text", "analyzer": "nope"}}}})
    assert excinfo.value.status == 400 and excinfo.value.error_type == "mapper_parsing_exception"
    client.indices.create(index="plain", body={"mappings": {"properties": {"t": {"type": "text"}}}})  # standard


# --- BM25 -----------------------------------------------------------------------------------------
CORPUS = {
    "d1": "the red car",
    "d2": ["a red red dress", "summer dress with red dots"],  # multi-valued: one field length
    "d3": "blue car parked near the red house " + "word " * 100,  # length 107 is stored as 104
    "d4": "green tree in the park",
    "d5": "Red cars and red trucks",
}


def lucene_bm25(query_tokens: list[str], corpus_tokens: dict[str, list[str]]) -> dict[str, float]:
    """Lucene BM25Similarity, written out independently: idf · f / (f + k1 (1 − b + b · dl / avgdl))."""
    k1, b = 1.2, 0.75
    n_docs = len(corpus_tokens)
    avgdl = sum(len(t) for t in corpus_tokens.values()) / n_docs
    scores = {}
    for doc_id, tokens in corpus_tokens.items():
        counts = Counter(tokens)
        dl = byte4_to_int(int_to_byte4(len(tokens)))
        total = 0.0
        for term in query_tokens:
            if counts[term]:
                df = sum(term in t for t in corpus_tokens.values())
                idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
                total += idf * counts[term] / (counts[term] + k1 * (1 - b + b * dl / avgdl))
        if total:
            scores[doc_id] = total
    return scores


@pytest.mark.parametrize("legacy", [False, True])
def test_match_scores_equal_lucene_bm25(tmp_path, legacy):
    client = EmbeddedClient(tmp_path / "e", legacy_bm25=legacy)
    client.indices.put_index_template(name="cir", body=template())
    client.indices.create(index="cir-bm25")
    bulk_docs(client, "cir-bm25", {k: {"caption": v} for k, v in CORPUS.items()})
    # documents without caption tokens do not count in Lucene's docCount / avgdl
    bulk_docs(client, "cir-bm25", {"no-caption": {"metadata": {"a": "b"}}, "no-tokens": {"caption": "!!! ..."}})
    corpus_tokens = {k: [t for value in ([v] if isinstance(v, str) else v) for t in analyze(value)] for k, v in CORPUS.items()}
    assert byte4_to_int(int_to_byte4(len(corpus_tokens["d3"]))) != len(corpus_tokens["d3"])  # quantisation exercised
    for text in ("red car", "dress", "red dots park", "word"):
        expected = lucene_bm25(analyze(text), corpus_tokens)
        hits = client.search(index="cir-bm25", body={"query": {"match": {"caption": text}}, "size": 10})["hits"]
        got = {h["_id"]: h["_score"] for h in hits["hits"]}
        assert set(got) == set(expected)
        for doc_id, score in expected.items():
            assert got[doc_id] == pytest.approx(score * (2.2 if legacy else 1.0), rel=1e-4), (text, doc_id)
        assert hits["total"]["value"] == len(expected)
    client.close()


def test_match_operator_and_boost_and_term_on_text(client):
    client.indices.create(index="cir-ops")
    bulk_docs(client, "cir-ops", {k: {"caption": v} for k, v in CORPUS.items()})
    both = client.search(index="cir-ops", body={"query": {"match": {"caption": {"query": "red dress", "operator": "and"}}}})
    assert [h["_id"] for h in both["hits"]["hits"]] == ["d2"]
    plain = client.search(index="cir-ops", body={"query": {"match": {"caption": "tree"}}})["hits"]["hits"][0]["_score"]
    boosted = client.search(index="cir-ops", body={"query": {"match": {"caption": {"query": "tree", "boost": 2}}}})["hits"]["hits"][0]["_score"]
    assert boosted == pytest.approx(2 * plain, rel=1e-6)
    term = client.search(index="cir-ops", body={"query": {"term": {"caption": "tree"}}})["hits"]["hits"][0]["_score"]
    assert term == pytest.approx(plain, rel=1e-6)
    assert client.search(index="cir-ops", body={"query": {"term": {"caption": "Tree"}}})["hits"]["total"]["value"] == 0


def random_docs(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    colours = ["red", "green", "blue", "black"]
    docs = {
        f"doc{i}": {"caption": f"item {colours[i % 4]} number{i}", "image_vector": vectors[i].tolist(), "metadata": {"colour": colours[i % 4], "rank": i}}
        for i in range(n)
    }
    return docs, vectors


# --- filters --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    client = EmbeddedClient(tmp_path_factory.mktemp("catalog"))
    client.indices.put_index_template(name="cir", body=template())
    client.indices.create(index="cir-cat")
    docs = {
        "1": {"caption": "red dress", "metadata": {"colour": "red", "size": "m"}, "price": 10, "in_stock": True},
        "2": {"caption": "blue dress", "metadata": {"colour": "blue", "size": "s"}, "price": 25.5, "in_stock": False},
        "3": {"caption": "red shoes", "metadata": {"colour": "red", "size": "l"}, "price": 40},
        "4": {"caption": "green hat", "metadata": {"colour": "green"}, "price": 5, "in_stock": True},
    }
    bulk_docs(client, "cir-cat", docs)
    yield client
    client.close()


def ids_of(client, query, index="cir-cat") -> set[str]:
    return {h["_id"] for h in client.search(index=index, body={"query": query, "size": 100})["hits"]["hits"]}


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"term": {"metadata.colour": "red"}}, {"1", "3"}),
        ({"terms": {"metadata.colour": ["blue", "green"]}}, {"2", "4"}),
        ({"range": {"price": {"gte": 10, "lt": 40}}}, {"1", "2"}),
        ({"range": {"metadata.size": {"gt": "l"}}}, {"1", "2"}),
        ({"exists": {"field": "metadata.size"}}, {"1", "2", "3"}),
        ({"exists": {"field": "metadata"}}, {"1", "2", "3", "4"}),
        ({"term": {"in_stock": True}}, {"1", "4"}),
        ({"ids": {"values": ["2", "9"]}}, {"2"}),
        ({"bool": {"must_not": [{"term": {"metadata.colour": "red"}}]}}, {"2", "4"}),
        ({"bool": {"should": [{"term": {"metadata.colour": "red"}}, {"match": {"caption": "dress"}}], "minimum_should_match": 2}}, {"1"}),
        ({"bool": {"filter": [{"term": {"caption.keyword": "red shoes"}}]}}, {"3"}),
        ({"bool": {"must": [{"match": {"caption": "dress"}}], "filter": {"range": {"price": {"lte": 20}}}}}, {"1"}),
        ({"match_all": {}}, {"1", "2", "3", "4"}),
    ],
)
def test_filters(catalog, query, expected):
    assert ids_of(catalog, query) == expected
    assert catalog.count(index="cir-cat", body={"query": query})["count"] == len(expected)


def test_bool_scores_sum_must_and_should(catalog):
    match = catalog.search(index="cir-cat", body={"query": {"match": {"caption": "red"}}})["hits"]["hits"]
    red = {h["_id"]: h["_score"] for h in match}
    body = {"query": {"bool": {"must": [{"match": {"caption": "red"}}], "should": [{"range": {"price": {"gt": 20}}}], "filter": [{"exists": {"field": "price"}}]}}}
    hits = {h["_id"]: h["_score"] for h in catalog.search(index="cir-cat", body=body)["hits"]["hits"]}
    assert hits["1"] == pytest.approx(red["1"]) and hits["3"] == pytest.approx(red["3"] + 1.0)
    const = catalog.search(index="cir-cat", body={"query": {"constant_score": {"filter": {"term": {"metadata.colour": "red"}}, "boost": 3}}})
    assert {h["_score"] for h in const["hits"]["hits"]} == {3.0}


def test_term_on_keyword_scores_like_lucene(catalog):
    # OpenSearch 3.x: a keyword term query is constant score (opensearch-project/OpenSearch#17823)
    hits = catalog.search(index="cir-cat", body={"query": {"term": {"metadata.colour": {"value": "red", "boost": 2}}}})["hits"]["hits"]
    assert {h["_score"] for h in hits} == {2.0}
    # 2.x: BM25 without norms: score = idf · 1 / (1 + k1 (1 − b + b / avgdl)), avgdl = values per doc
    legacy = EmbeddedClient(catalog.root, legacy_bm25=True)
    hits = legacy.search(index="cir-cat", body={"query": {"term": {"metadata.colour": "red"}}})["hits"]["hits"]
    idf = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))
    assert hits[0]["_score"] == pytest.approx(2.2 * idf / (1 + 1.2), rel=1e-5)
    legacy.close()


# --- hybrid ---------------------------------------------------------------------------------------
def test_unsupported_things_are_named(catalog):
    with pytest.raises(UnsupportedQueryError, match="match_phrase"):
        catalog.search(index="cir-cat", body={"query": {"match_phrase": {"caption": "red dress"}}})
    with pytest.raises(UnsupportedQueryError, match="aggs"):
        catalog.search(index="cir-cat", body={"query": {"match_all": {}}, "aggs": {"p": {"max": {"field": "price"}}}})
    with pytest.raises(UnsupportedQueryError, match="fuzziness"):
        catalog.search(index="cir-cat", body={"query": {"match": {"caption": {"query": "red", "fuzziness": 1}}}})
    with pytest.raises(UnsupportedQueryError, match="update"):
        catalog.bulk(body=[{"update": {"_index": "cir-cat", "_id": "1"}}, {"doc": {"price": 1}}])


def test_source_filtering_and_total_hits_shapes(catalog):
    body = {"query": {"match_all": {}}, "size": 1, "_source": {"includes": ["metadata.*", "price"], "excludes": ["metadata.size"]}}
    response = catalog.search(index="cir-cat", body=body)
    assert response["hits"]["hits"][0]["_source"] == {"metadata": {"colour": "red"}, "price": 10}
    assert catalog.search(index="cir-cat", body={"_source": False})["hits"]["hits"][0].keys() == {"_index", "_id", "_score"}
    assert catalog.search(index="cir-cat", body={"track_total_hits": 2})["hits"]["total"] == {"value": 2, "relation": "gte"}
    assert "total" not in catalog.search(index="cir-cat", body={"track_total_hits": False})["hits"]
    response = catalog.search(index="cir-cat", body={"query": {"match": {"caption": "nothing"}}})
    assert response["hits"] == {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}
    for key in ("took", "timed_out", "_shards"):
        assert key in response


def test_bulk_item_semantics_and_versions(client):
    client.indices.create(index="cir-bulk")
    body = [
        {"index": {"_index": "cir-bulk", "_id": "a"}}, {"caption": "first", "image_vector": [1, 0, 0, 0]},
        {"create": {"_index": "cir-bulk", "_id": "a"}}, {"caption": "dup"},
        {"index": {"_index": "cir-bulk", "_id": "b"}}, {"caption": "bad", "image_vector": [1, 2]},
        {"delete": {"_index": "cir-bulk", "_id": "zz"}},
        {"index": {"_index": "cir-bulk", "_id": "a"}}, {"caption": "second"},
        {"index": {"_index": "cir-bulk"}}, {"caption": "auto id"},
    ]
    response = client.bulk(body=body)
    assert response["errors"] is True
    statuses = [next(iter(item.values()))["status"] for item in response["items"]]
    assert statuses == [201, 409, 400, 404, 200, 201]
    assert response["items"][2]["index"]["error"]["type"] == "mapper_parsing_exception"
    assert response["items"][4]["index"]["_version"] == 2 and response["items"][4]["index"]["result"] == "updated"
    assert client.get(index="cir-bulk", id="a")["_source"] == {"caption": "second"}
    assert client.count(index="cir-bulk")["count"] == 2
    assert client.search(index="cir-bulk", body={"query": {"match": {"caption": "first"}}})["hits"]["total"]["value"] == 0
    assert client.delete(index="cir-bulk", id="a")["result"] == "deleted"
    with pytest.raises(EngineError) as gone:
        client.get(index="cir-bulk", id="a")
    assert gone.value.status == 404
    ndjson = '{"index": {"_id": "n"}}\n{"caption": "from ndjson"}\n'
    assert not client.bulk(body=ndjson, index="cir-bulk")["errors"]
    assert client.index(index="cir-bulk", id="m", body={"caption": "one"})["result"] == "created"


def test_indices_lifecycle_and_mapping(client):
    assert client.indices.create(index="cir-life")["acknowledged"]
    with pytest.raises(EngineError) as exists:
        client.indices.create(index="cir-life")
    assert exists.value.status == 400 and exists.value.error_type == "resource_already_exists_exception"
    mapping = client.indices.get_mapping(index="cir-life")["cir-life"]["mappings"]
    assert mapping["properties"]["image_vector"]["dimension"] == DIM
    assert mapping["_meta"]["cir"]["model_id"] == "default"
    bulk_docs(client, "cir-life", {"x": {"metadata": {"brand": "acme"}, "extra": 3}})
    mapping = client.indices.get_mapping(index="cir-life")["cir-life"]["mappings"]
    assert mapping["properties"]["metadata"]["properties"]["brand"] == {"type": "keyword"}
    assert mapping["properties"]["extra"] == {"type": "long"}
    with pytest.raises(EngineError, match="Invalid index name"):
        client.indices.create(index="Bad*Name")
    assert client.indices.delete(index="cir-life")["acknowledged"]
    assert not client.indices.exists(index="cir-life")
    with pytest.raises(EngineError) as missing:
        client.search(index="cir-life", body={})
    assert missing.value.status == 404


def test_reopen_and_second_client_see_committed_state(client, tmp_path):
    client.indices.create(index="cir-reopen")
    bulk_docs(client, "cir-reopen", {"a": {"caption": "hello world", "image_vector": [0.1, 0.2, 0.3, 0.4]}})
    reader = EmbeddedClient(client.root)
    assert reader.get(index="cir-reopen", id="a")["_source"]["image_vector"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    bulk_docs(client, "cir-reopen", {"b": {"caption": "hello again"}})
    hits = reader.search(index="cir-reopen", body={"query": {"match": {"caption": "hello"}}})["hits"]
    assert hits["total"]["value"] == 2  # the reader catches up with the writer's manifest
    reader.close()


def test_single_writer_lock(client, monkeypatch):
    client.indices.create(index="cir-lock")
    bulk_docs(client, "cir-lock", {"a": {"caption": "x"}})
    monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT_S", 0.2)
    other = EmbeddedClient(client.root)
    other.index(index="cir-lock", id="b", body={"caption": "y"})  # the lock is held only while writing
    client._stores["cir-lock"]._acquire_writer()  # as if `client` were in the middle of a bulk
    with pytest.raises(EngineError) as locked:
        other.index(index="cir-lock", id="c", body={"caption": "z"})
    assert locked.value.status == 409
    assert other.count(index="cir-lock")["count"] == 2  # reading needs no lock
    client._stores["cir-lock"].release_writer()
    other.index(index="cir-lock", id="c", body={"caption": "z"})
    assert other.count(index="cir-lock")["count"] == 3
    other.close()


def test_snapshot_open_equals_full_replay(client, monkeypatch):
    monkeypatch.setattr(store_module, "SNAPSHOT_MIN_BYTES", 1)
    client.indices.create(index="cir-snap")
    docs, _ = random_docs(40, DIM, seed=9)
    bulk_docs(client, "cir-snap", dict(list(docs.items())[:20]))
    bulk_docs(client, "cir-snap", dict(list(docs.items())[20:]))
    client.delete(index="cir-snap", id="doc3")
    bulk_docs(client, "cir-snap", {"doc4": {"caption": "replaced red", "metadata": {"colour": "red", "flag": True}}})
    snapshot = client.root / "cir-snap" / "snapshot.npz"
    assert snapshot.exists()
    monkeypatch.setattr(store_module, "SNAPSHOT_MIN_BYTES", 10**12)  # the next batch is replayed from the log
    bulk_docs(client, "cir-snap", {"late": {"caption": "written after the snapshot", "metadata": {"colour": "blue"}}})
    queries = [
        {"match": {"caption": "red"}},
        {"bool": {"filter": [{"term": {"metadata.colour": "red"}}, {"term": {"metadata.flag": True}}]}},
        {"range": {"metadata.rank": {"gte": 10}}},
        {"knn": {"image_vector": {"vector": [0.1, 0.2, 0.3, 0.4], "k": 5}}},
    ]

    def answers(c):
        return [[(h["_id"], h["_score"]) for h in c.search(index="cir-snap", body={"query": q, "size": 50})["hits"]["hits"]] for q in queries]

    from_snapshot = EmbeddedClient(client.root)
    expected = answers(from_snapshot)
    assert 0 < from_snapshot._store("cir-snap")._snapshot_log_pos < from_snapshot._store("cir-snap").log_pos
    assert from_snapshot.count(index="cir-snap")["count"] == 40  # 40 - doc3 + late
    from_snapshot.close()
    snapshot.write_bytes(b"not a snapshot")  # derived data: a bad file means a full replay
    replayed = EmbeddedClient(client.root)
    assert answers(replayed) == expected
    replayed.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.search(index="cir-cat", body={"size": "ten"}),
        lambda c: c.search(index="cir-cat", body={"query": {"knn": {"image_vector": {"vector": "abc", "k": 1}}}}),
        lambda c: c.bulk(body=42),
        lambda c: c.bulk(body="{not json"),
        lambda c: c.search(index="cir-cat", body={"query": {"range": {"price": {"gte": {"x": 1}}}}}),
        lambda c: c.search_pipeline.put(id="p", body={"phase_results_processors": [{"normalization-processor": {"combination": 5}}]}),
    ],
)
def test_malformed_requests_are_engine_errors_never_raw_exceptions(catalog, call):
    with pytest.raises(EngineError) as info:
        call(catalog)
    assert info.value.status == 400


def test_date_fields_dynamic_detection_range_math_term_and_sort(tmp_path):
    # OpenSearch: date_detection maps ISO strings to `date` (strict_date_optional_time||epoch_millis);
    # range date math rounds up for gt/lte and down for gte/lt (JavaDateMathParser)
    client = EmbeddedClient(tmp_path / "e")
    docs = {"1": {"d": "2024-01-01"}, "2": {"d": "2024-01-15T10:00:00Z"}, "3": {"d": 1706745600000}, "4": {"note": "no date"}}
    bulk_docs(client, "dates", docs)
    assert client.indices.get_mapping(index="dates")["dates"]["mappings"]["properties"]["d"] == {"type": "date"}

    def ids(query):
        return sorted(h["_id"] for h in client.search(index="dates", body={"query": query})["hits"]["hits"])

    assert ids({"range": {"d": {"gte": "2024-01-01", "lt": "2024-01-15"}}}) == ["1"]
    assert ids({"range": {"d": {"gt": "2024-01-01||/M"}}}) == ["3"]
    assert ids({"range": {"d": {"lte": "2024-01-15||/d"}}}) == ["1", "2"]
    assert ids({"term": {"d": "2024-01-01T00:00:00Z"}}) == ["1"]
    assert ids({"exists": {"field": "d"}}) == ["1", "2", "3"]
    hits = client.search(index="dates", body={"query": {"exists": {"field": "d"}}, "sort": [{"d": "desc"}]})["hits"]["hits"]
    assert [h["sort"] for h in hits] == [[1706745600000], [1705312800000], [1704067200000]]
    with pytest.raises(EngineError) as info:
        client.index(index="dates", id="5", body={"d": "not a date"})
    assert info.value.status == 400 and info.value.error_type == "mapper_parsing_exception"
    with pytest.raises(UnsupportedQueryError):
        client.indices.create(index="fmt", body={"mappings": {"properties": {"d": {"type": "date", "format": "yyyy/MM/dd"}}}})
    client.close()
