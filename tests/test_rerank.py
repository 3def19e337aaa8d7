"""The rerank stage (`opensearch_cir.compose.rerank`): the pure rules, each reranker on hand-made
candidates, the search path end to end on the embedded engine (one request), the external hook
(a callable and an HTTP endpoint on 127.0.0.1), and `cir search --rerank`."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.compose import CompositeQuery, search
from opensearch_cir.compose import rerank as R
from opensearch_cir.compose.rerank.clauses import combine, propositions
from opensearch_cir.compose.rerank.expansion import expand
from opensearch_cir.compose.rerank.intersection import agreement
from opensearch_cir.errors import EngineError, InputError

E = np.eye(4, dtype=np.float32)


# -- pure rules ---------------------------------------------------------------------------------


def test_minmax_handles_ties_and_missing():
    assert np.allclose(R.minmax(np.array([1.0, 3.0, 2.0])), [0, 1, 0.5])
    assert np.allclose(R.minmax(np.array([2.0, 2.0])), [1, 1])
    assert np.allclose(R.minmax(np.array([np.nan, 1.0, 3.0])), [0, 0, 1])


def test_agreement_keeps_candidates_in_both_top_lists():
    image = np.array([0.9, 0.8, 0.1, 0.7])
    text = np.array([0.1, 0.9, 0.8, 0.7])
    assert agreement(image, text, 2).tolist() == [0, 1, 0, 0]
    assert agreement(image, text, 3).tolist() == [0, 1, 0, 1]
    assert agreement(image, np.array([np.nan] * 4), 4).tolist() == [0, 0, 0, 0]


def test_expand_moves_the_query_towards_similar_neighbours():
    q = R.base.S.normalize(E[0] + 0.2 * E[1])
    neighbours = np.stack([E[1], E[2]])  # E[2] is orthogonal: weight 0
    refined = expand(q, neighbours, np.array([True, True]), power=1.0)
    assert refined @ E[1] > q @ E[1] and abs(refined @ E[2]) < 1e-6
    assert np.allclose(expand(q, neighbours, np.array([False, False]), 1.0), q)


def test_clause_split_negation_and_rule():
    parts = propositions("Puma Men Black T-shirt", "in red and without the hood")
    assert parts == [("Puma Men red T-shirt", False), ("hood", True)]
    assert propositions(None, "make it longer, no sleeves") == [("make it longer", False), ("sleeves", True)]
    evidence = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]])  # positive clause, negated clause
    assert np.allclose(combine(evidence, [False, True]), [1.0, -1.0, 0.5])


def test_parse_specs_and_errors():
    chain = R.parse_rerankers("exact, intersection:keep=0.3:blend=0.5")
    assert [type(r).__name__ for r in chain] == ["Exact", "Intersection"]
    assert chain[1].keep == 0.3 and chain[1].blend == 0.5
    assert isinstance(R.parse_reranker("http://127.0.0.1:9/rerank"), R.HttpReranker)
    assert isinstance(R.parse_reranker(lambda q, c: [0.0] * len(c)), R.CallableReranker)
    for bad in ("nope", "exact:blend", "exact:blend=x", "exact:depth=3", "exact:blend=2"):
        with pytest.raises(InputError):
            R.parse_reranker(bad)
    with pytest.raises(InputError, match="rerank_depth"):
        CompositeQuery(text="red", rerank="exact", rerank_depth=0)


# -- each reranker on hand-made candidates --------------------------------------------------------


@dataclass
class _Query:
    text: str = ""
    negative: str = ""
    doc_ids: tuple = ()


@dataclass
class _Prepared:
    image: np.ndarray | None
    caption: str | None = None
    query: _Query = field(default_factory=_Query)


@dataclass
class _Context:
    """The three vectors a reranker asks the context for, fixed by the test."""

    composed: np.ndarray
    caption_side: np.ndarray
    text: np.ndarray | None
    prepared: _Prepared
    strategy: str = "fusion"
    weights: object = field(default_factory=lambda: CompositeQuery(text="x").weights)
    encoder: object = None

    def composed_vector(self):
        return self.composed

    def caption_query(self):
        return self.caption_side

    def text_side(self):
        return self.text

    def encode_texts(self, texts):
        return self.encoder.encode_texts(texts)


def _candidates(image_rows, caption_rows=None, scores=None):
    caption_rows = caption_rows if caption_rows is not None else [None] * len(image_rows)
    scores = scores if scores is not None else list(range(len(image_rows), 0, -1))
    return [R.Candidate(id=f"d{i}", score=float(s), image_vector=None if v is None else np.asarray(v, np.float32),
                        caption_vector=None if c is None else np.asarray(c, np.float32))
            for i, (v, c, s) in enumerate(zip(image_rows, caption_rows, scores))]


def test_exact_reorders_by_the_caption_aware_cosine():
    context = _Context(composed=E[0], caption_side=E[1], text=None, prepared=_Prepared(image=E[0]))
    candidates = _candidates([E[2], E[0], R.base.S.normalize(E[0] + E[2])], [E[1], E[2], E[1]])
    ranked = R.Exact(beta=0.5)(context, candidates)  # own: d0 .5, d1 .5, d2 .5·.707+.5 = .854
    assert ranked[0].id == "d2"
    assert ranked[0].scores["exact"] == pytest.approx(0.5 * 2**-0.5 + 0.5)
    kept = R.Exact(beta=0.5, blend=0.0)(context, _candidates([E[2], E[0], E[1]]))
    assert [c.id for c in kept] == ["d0", "d1", "d2"]  # blend 0: the incoming order


def test_intersection_puts_agreed_candidates_first():
    image_side, text_side = E[0], E[1]
    context = _Context(composed=R.base.S.normalize(E[0] + E[1]), caption_side=R.base.S.normalize(E[0] + E[1]),
                       text=text_side, prepared=_Prepared(image=image_side))
    rows = [E[0], E[1], R.base.S.normalize(E[0] + E[1] + E[3]), E[3]]
    ranked = R.Intersection(keep=0.5)(context, _candidates(rows, rows))
    assert ranked[0].id == "d2" and ranked[0].scores["intersection"] >= 1.0
    no_image = _Context(composed=E[1], caption_side=E[1], text=E[1], prepared=_Prepared(image=None))
    assert R.Intersection()(no_image, _candidates(rows, rows))[0].id == "d1"  # one side: composed order


def test_expansion_refines_towards_the_top_neighbours():
    q = R.base.S.normalize(E[0] + 0.1 * E[1])
    context = _Context(composed=q, caption_side=q, text=None, prepared=_Prepared(image=E[0]))
    rows = [R.base.S.normalize(E[0] + E[1]), E[0], E[1], R.base.S.normalize(E[0] + 0.3 * E[2])]
    exact = [c.id for c in R.Exact()(context, _candidates(rows))]
    expanded = [c.id for c in R.Expansion(neighbours=1, power=1.0)(context, _candidates(rows))]
    assert exact.index("d0") == 2 and expanded.index("d0") == 0  # the top neighbour (d0) pulls the query to itself


def test_clauses_negated_clause_counts_against(tiny_encoder):
    vectors = tiny_encoder.encode_texts(["a red shirt with a hood", "a red shirt", "a blue shirt"])
    query = _Query(text="in red and without the hood")
    context = _Context(composed=vectors[0], caption_side=vectors[0], text=None, encoder=tiny_encoder,
                       prepared=_Prepared(image=None, caption="a blue shirt", query=query))
    candidates = _candidates([v for v in vectors], [v for v in vectors], scores=[1.0, 1.0, 1.0])
    own = R.Clauses().own_scores(context, candidates)
    hood = tiny_encoder.encode_texts(["hood"])[0]
    red = tiny_encoder.encode_texts(["a red shirt"])[0]
    expected = combine(np.array([R.minmax(vectors @ red), R.minmax(vectors @ hood)]), [False, True])
    assert np.allclose(own, expected, atol=1e-5)


# -- end to end on the embedded engine ----------------------------------------------------------


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny")), device="cpu", threads=1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_encoder):
    from opensearch_cir.admin import setup_index
    from opensearch_cir.engines import connect
    from opensearch_cir.ingest import Ingestor, Record

    folder = tmp_path_factory.mktemp("engine")
    client = connect(f"embedded://{folder}")
    setup_index(client, "cir-shop", tiny_encoder.manifest)
    blobs = {}
    colours = {"red": (220, 20, 20), "blue": (20, 40, 220), "green": (20, 180, 40), "black": (5, 5, 5), "white": (240, 240, 240)}
    with Ingestor(client, "cir-shop", tiny_encoder) as ingestor:
        for gender in ("Men", "Women"):
            for kind in ("shirt", "hoodie"):
                for name, rgb in colours.items():
                    blob = _png(tuple(min(255, c + (9 if gender == "Women" else 0) + (4 if kind == "hoodie" else 0)) for c in rgb))
                    blobs[(gender, kind, name)] = blob
                    ingestor.add(Record(image=blob, captions=[f"Brand {gender} {name} {kind}"], uri=f"{gender}-{kind}-{name}.png",
                                        metadata={"gender": gender}))
    return folder, client, blobs


class _CountingClient:
    """Counts search requests and response bytes of the client it wraps."""

    def __init__(self, client):
        self.client, self.searches, self.bytes = client, 0, 0

    def search(self, **kwargs):
        self.searches += 1
        response = self.client.search(**kwargs)
        self.bytes += len(json.dumps(response))
        return response

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("chain", ["exact", "intersection", "expansion", "clauses", "exact,intersection"])
def test_rerank_search_one_request_reference_excluded_filters_kept(shop, tiny_encoder, chain):
    from opensearch_cir.ingest.records import document_id

    _, client, blobs = shop
    reference = blobs[("Men", "shirt", "red")]
    counting = _CountingClient(client)
    query = CompositeQuery(images=[reference], text="in blue and without a hood", filters={"metadata.gender": "Men"},
                           k=4, rerank=chain, rerank_depth=8)
    response = search(counting, "cir-shop", query, tiny_encoder)
    assert counting.searches == 1, "the candidates' vectors come with the first-stage response"
    assert len(response) == 4 and document_id(reference) not in response.ids
    assert all(hit.metadata["gender"] == "Men" for hit in response)
    assert [h.score for h in response] == sorted((h.score for h in response), reverse=True)
    assert response.rendered.body["size"] >= 8  # first stage at depth K


def test_exact_equals_numpy_over_stored_vectors(shop, tiny_encoder):
    from opensearch_cir.compose.prepare import prepare
    from opensearch_cir.compose.rerank.exact import caption_share

    _, client, blobs = shop
    query = CompositeQuery(images=[blobs[("Women", "hoodie", "green")]], text="make it black", k=5,
                           rerank=["exact"], rerank_depth=19)
    response = search(client, "cir-shop", query, tiny_encoder, explain=True)
    prepared = prepare(client, "cir-shop", query, tiny_encoder)
    context = R.RerankContext(prepared, "hybrid", query.weights, tiny_encoder)
    beta = caption_share(context)
    q, qc = context.composed_vector(), context.caption_query()
    expected = {}
    for doc in client.search(index="cir-shop", body={"query": {"match_all": {}}, "size": 50})["hits"]["hits"]:
        if doc["_id"] in prepared.excluded_ids:
            continue
        source = doc["_source"]
        expected[doc["_id"]] = (1 - beta) * float(np.dot(source["image_vector"], q)) + beta * float(np.dot(source["caption_vector"], qc))
    best = sorted(expected, key=expected.get, reverse=True)[:5]
    assert response.ids == best  # depth 19 = the whole gallery but the reference: exact over everything
    assert response[0].sub_scores["rerank:exact"] == pytest.approx(expected[best[0]], abs=1e-5)
    assert {"caption_bm25", "image_knn", "caption_knn"} <= set(response[0].sub_scores)


# -- the external hook --------------------------------------------------------------------------


def test_callable_reranker_gets_the_contract_and_decides(shop, tiny_encoder):
    _, client, blobs = shop
    seen = {}

    def prefer_white(query, candidates):
        seen["query"], seen["candidates"] = query, candidates
        return [1.0 if "white" in c["caption"] else 0.0 for c in candidates]

    query = CompositeQuery(images=[blobs[("Men", "shirt", "red")]], text="in blue", k=3, rerank=[prefer_white])
    response = search(client, "cir-shop", query, tiny_encoder)
    assert all("white" in hit.caption for hit in response[:2])
    assert seen["query"]["text"] == "in blue" and seen["query"]["rewritten_caption"] == "Brand Men blue shirt"
    assert {"id", "rank", "score", "caption", "image_uri", "metadata"} == set(seen["candidates"][0])
    assert [c["rank"] for c in seen["candidates"]][:3] == [1, 2, 3]
    with pytest.raises(EngineError, match="expected a list of"):
        search(client, "cir-shop", CompositeQuery(text="red", rerank=[lambda q, c: [1.0]]), tiny_encoder)


class _ReverseHandler(BaseHTTPRequestHandler):
    """A reranker on 127.0.0.1: reverses the incoming order; `/broken` answers too few scores."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(body["candidates"])
        scores = list(range(n)) if self.path == "/rerank" else [0.0]
        payload = json.dumps({"scores": scores}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def reranker_url():
    server = HTTPServer(("127.0.0.1", 0), _ReverseHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def test_http_reranker_on_localhost(shop, tiny_encoder, reranker_url):
    _, client, blobs = shop
    base = dict(images=[blobs[("Men", "shirt", "red")]], text="in blue", k=19)
    plain = search(client, "cir-shop", CompositeQuery(**base), tiny_encoder).ids
    reversed_ = search(client, "cir-shop", CompositeQuery(**base, rerank=[reranker_url + "/rerank"], rerank_depth=19),
                       tiny_encoder).ids
    assert reversed_ == plain[::-1]
    with pytest.raises(EngineError, match="expected a list of") as error:
        search(client, "cir-shop", CompositeQuery(**base, rerank=[reranker_url + "/broken"]), tiny_encoder)
    assert error.value.status == 502
    with pytest.raises(EngineError):
        search(client, "cir-shop", CompositeQuery(**base, rerank=["http://127.0.0.1:9/none"]), tiny_encoder)


def test_cir_search_rerank_option(shop, tiny_encoder, tmp_path):
    from typer.testing import CliRunner

    from opensearch_cir.cli import app

    folder, _, blobs = shop
    image = tmp_path / "ref.png"
    image.write_bytes(blobs[("Women", "shirt", "green")])
    args = ["search", "--image", str(image), "--text", "make it black", "--url", f"embedded://{folder}",
            "--index", "cir-shop", "--model", str(tiny_encoder.model_dir), "--k", "3"]
    result = CliRunner().invoke(app, [*args, "--rerank", "exact,intersection", "--explain"])
    assert result.exit_code == 0, result.output
    assert "rerank:exact=" in result.output and "rerank:intersection=" in result.output
    as_json = CliRunner().invoke(app, [*args, "--rerank", "expansion", "--json"])
    payload = json.loads(as_json.output)
    assert len(payload["results"]) == 3 and "vectors" not in payload["results"][0]
    bad = CliRunner().invoke(app, [*args, "--rerank", "llm"])
    assert bad.exit_code == 2 and "unknown reranker" in bad.output


# -- the first-stage body on a cluster ------------------------------------------------------------


@pytest.mark.parametrize("source", [True, False])
def test_first_stage_body_validates_against_the_spec(shop, tiny_encoder, api_spec_dir, source):
    """The rerank first stage (size K, vectors in `_source`) is a valid OpenSearch search body."""
    from opensearch_cir.compose.prepare import prepare
    from opensearch_cir.compose.rerank.run import first_stage
    from opensearch_cir.dsl.spec import find_spec_dir
    from opensearch_cir.dsl.validate import validate_request

    spec = find_spec_dir(api_spec_dir)
    if spec is None:
        pytest.skip("no OpenSearch API spec beside the repository")
    _, client, blobs = shop
    query = CompositeQuery(images=[blobs[("Men", "shirt", "red")]], text="in blue", k=5)
    rendered, candidates = first_stage(client, "cir-shop", prepare(client, "cir-shop", query, tiny_encoder),
                                       depth=12, source=source)
    assert rendered.body["size"] == 12 + len(rendered.excluded_ids)
    assert rendered.body["_source"] == (True if source else {"includes": ["image_vector", "caption_vector"]})
    assert all(c.image_vector is not None and c.caption_vector is not None for c in candidates)
    validate_request("search", rendered.body, pipeline=rendered.pipeline_body, spec_dir=spec)
