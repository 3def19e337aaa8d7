"""Analysis and BM25 against real Lucene 9.9.1 (../shared/tools/lucene_oracle): every analyzer the
embedded engine accepts gives Lucene's tokens on the multilingual corpus (+ the Flickr8k dev
captions when ../shared/data is present), and `match` scores through the engine equal Lucene's
BM25 on `standard` and `english` fields.

Upstream: Lucene's analyzers as OpenSearch builds them (StandardAnalyzer without stop words,
SimpleAnalyzer, WhitespaceAnalyzer, KeywordAnalyzer, StopAnalyzer, EnglishAnalyzer,
OpenSearch's SnowballAnalyzer, CustomAnalyzer chains) and BM25Similarity."""

from __future__ import annotations

import numpy as np
import pytest
from lucene_corpus import MULTILINGUAL

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.engines.embedded.analysis import build_analyzer

pytestmark = pytest.mark.upstream("lucene 9.9.1 (lucene_oracle)")

# name -> (our index analysis settings, the same chain as Lucene factories)
ANALYZERS = {
    "standard": ({}, "standard"),
    "simple": ({}, {"tokenizer": "letter", "filters": ["lowercase"]}),
    "whitespace": ({}, "whitespace"),
    "keyword": ({}, {"tokenizer": "keyword"}),
    "stop": ({}, {"tokenizer": "letter", "filters": ["lowercase", "stop"]}),
    "english": ({}, {"tokenizer": "standard", "filters": ["englishPossessive", "lowercase", "stop", "porterStem"]}),
    "snowball": ({}, {"tokenizer": "standard", "filters": ["englishPossessive", "lowercase", "stop", {"name": "snowballPorter", "language": "English"}]}),
    "folded": (
        {"analyzer": {"folded": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}}},
        {"tokenizer": "standard", "filters": ["lowercase", "asciiFolding"]},
    ),
    "folded_preserve": (
        {"analyzer": {"folded_preserve": {"tokenizer": "whitespace", "filter": ["keep_both"]}},
         "filter": {"keep_both": {"type": "asciifolding", "preserve_original": True}}},
        {"tokenizer": "whitespace", "filters": [{"name": "asciiFolding", "preserveOriginal": "true"}]},
    ),
    "cir_caption": (
        {"tokenizer": {"cir_words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
         "filter": {"stem": {"type": "snowball", "language": "English"}},
         "analyzer": {"cir_caption": {"type": "custom", "tokenizer": "cir_words", "filter": ["lowercase", "stem"]}}},
        {"tokenizer": {"name": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}, "filters": ["lowercase", {"name": "snowballPorter", "language": "English"}]},
    ),
    "java_w": (
        {"tokenizer": {"w": {"type": "pattern", "pattern": "\\W+"}}, "analyzer": {"java_w": {"tokenizer": "w", "filter": ["lowercase"]}}},
        {"tokenizer": {"name": "pattern", "pattern": "\\W+"}, "filters": ["lowercase"]},
    ),
    "lowercase_tokenizer": (
        {"analyzer": {"lowercase_tokenizer": {"tokenizer": "lowercase"}}},
        {"tokenizer": "letter", "filters": ["lowercase"]},
    ),
    "porter2_possessive": (
        {"filter": {"p2": {"type": "stemmer", "language": "porter2"}, "poss": {"type": "stemmer", "language": "possessive_english"}},
         "analyzer": {"porter2_possessive": {"tokenizer": "standard", "filter": ["poss", "lowercase", "p2"]}}},
        {"tokenizer": "standard", "filters": ["englishPossessive", "lowercase", {"name": "snowballPorter", "language": "English"}]},
    ),
    "stop_custom": (
        {"filter": {"my_stop": {"type": "stop", "stopwords": ["The", "dog"], "ignore_case": True}},
         "analyzer": {"stop_custom": {"tokenizer": "standard", "filter": ["my_stop", "lowercase"]}}},
        {"tokenizer": "standard", "filters": [{"name": "stop", "words": "_inline_", "ignoreCase": "true"}, "lowercase"]},
    ),
    "short_tokens": (
        {"analyzer": {"short_tokens": {"type": "standard", "max_token_length": 5}}},
        {"tokenizer": {"name": "standard", "maxTokenLength": "5"}, "filters": ["lowercase"]},
    ),
}


# Known deviations (docs/embedded-engine.md): analyzer -> (reason, which texts it affects).
KNOWN_DEVIATIONS = {
    "short_tokens": ("a ZWJ emoji sequence cut by a non-default max_token_length keeps its trailing ZWJ", lambda t: "\u200d" in t),
}


@pytest.fixture(scope="module")
def corpus(request):
    texts = list(MULTILINGUAL)
    from conftest import SHARED  # noqa: PLC0415  (tests/conformance/conftest.py)

    captions = SHARED / "data" / "flickr8k" / "captions-dev.txt"
    if captions.exists():
        texts += [line.split("\t", 1)[1].rstrip("\n") for line in captions.open(encoding="utf-8")]
    return texts


def lucene_tokens(lucene, spec, texts: list[str]) -> list[list[str]]:
    out = lucene({"analyzer": spec, "docs": [], "queries": [{"type": "analyze", "text": t} for t in texts]})
    return [[token["token"] for token in result] for result in out["results"]]


@pytest.mark.parametrize("name", sorted(set(ANALYZERS) - {"stop_custom"}))  # the oracle has no inline stop list
def test_tokens_equal_lucene(lucene, corpus, name):
    analysis, spec = ANALYZERS[name]
    ours = build_analyzer(name, {"index.analysis": analysis})
    expected = lucene_tokens(lucene, spec, corpus)
    mismatches = [(text, want, ours(text)) for text, want in zip(corpus, expected) if ours(text) != want]
    if name in KNOWN_DEVIATIONS:
        mismatches = [m for m in mismatches if not KNOWN_DEVIATIONS[name][1](m[0])]
    assert not mismatches, f"{len(mismatches)}/{len(corpus)} texts differ, first: {mismatches[:3]}"


def test_stop_filter_ignore_case():
    analyzer = build_analyzer("s", {"index.analysis": ANALYZERS["stop_custom"][0] | {"analyzer": {"s": ANALYZERS["stop_custom"][0]["analyzer"]["stop_custom"]}}})
    assert analyzer("THE Dog and the cat") == ["and", "cat"]


@pytest.mark.parametrize("analyzer", ["standard", "english", "dynamic"])
def test_bm25_through_the_engine_equals_lucene(lucene, corpus, tmp_path, analyzer):
    """`dynamic`: a string field mapped by dynamic mapping (text, standard analyzer; indexed in a
    column instead of tantivy) scores like a `standard` field too."""
    docs = corpus[:400]
    queries = ["dog running in the snow", "a man's red shirt", "Children's playground", "日本語 テキスト", "1,000 3.14 e-mail", "women’s jeans"]
    out = lucene({"analyzer": ANALYZERS["standard" if analyzer == "dynamic" else analyzer][1], "docs": [{"id": str(i), "text": t} for i, t in enumerate(docs)],
                  "queries": [{"type": "match", "text": q, "size": 1000} for q in queries]})
    client = EmbeddedClient(tmp_path / "e")
    if analyzer != "dynamic":
        client.indices.create(index="bm25", body={"mappings": {"properties": {"t": {"type": "text", "analyzer": analyzer}}}})
    body = []
    for i, text in enumerate(docs):
        body += [{"index": {"_index": "bm25", "_id": str(i)}}, {"t": text}]
    assert not client.bulk(body=body)["errors"]
    compared = 0
    for query, expected in zip(queries, out["results"]):
        hits = client.search(index="bm25", body={"query": {"match": {"t": query}}, "size": 1000, "_source": False})["hits"]
        got = {h["_id"]: h["_score"] for h in hits["hits"]}
        want = {h["id"]: h["score"] for h in expected}
        assert set(got) == set(want), query
        assert hits["total"]["value"] == len(want)
        for doc_id, score in want.items():
            assert np.float32(got[doc_id]) == pytest.approx(np.float32(score), rel=1e-6), (query, doc_id)
        compared += len(want)
    assert compared > 50
    if analyzer == "dynamic":
        assert client.indices.get_mapping(index="bm25")["bm25"]["mappings"]["properties"]["t"]["type"] == "text"
    client.close()
