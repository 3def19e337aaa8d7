"""The composed query object and how it becomes OpenSearch DSL and results.

    query = CompositeQuery(images=["ref.jpg"], text="in navy blue instead", strategy="hybrid")
    response = search(client, "cir-products", query, encoder, explain=True)
    for hit in response: print(hit.id, hit.score, hit.caption, hit.sub_scores)

Three steps, each usable alone (`prepare` in `compose.prepare`, `execute` and `search` in
`compose.execute`; this module holds the query types and the rendering):
1. `prepare(client, index, query, encoder) -> PreparedQuery`: resolves the references (indexed doc
   ids are read with `client.get`, their stored `image_vector` (decoded from byte/binary fields) and
   `caption` reused; files/bytes are looked up by content hash: an indexed image is that document,
   its stored vector and caption, and any other image is encoded), rewrites
   the reference caption with the modification (`rewrite.rewrite_caption`), and encodes every text
   once. Evaluation prepares a query once and renders it with many strategies/weights.
2. `PreparedQuery.render(strategy, weights) -> RenderedQuery`: the named sub-queries (bare DSL
   fragments for users' own queries), one search body (C's `dsl` builders: a plain query for one
   sub-query, else `hybrid` + a normalization/RRF search pipeline whose weights are the sub-queries'
   weights) and the pipeline id/body.
3. `execute(client, index, rendered)`: registers the pipeline once per client, runs the search,
   drops the reference documents, and with `explain=True` adds each sub-query's raw score per hit.

Strategies (vector formulas in `strategies`; i = reference image vector, t = E_T(T), r = the
rewritten caption; sub-queries: `caption_bm25` = BM25 `match` on `caption`, `image_knn` / `caption_knn`
= k-NN on `image_vector` / `caption_vector`):

| strategy      | sub-queries (weight)                                                        |
|---------------|------------------------------------------------------------------------------|
| image_only    | image_knn(i)                                                                 |
| text_only     | image_knn(t)                                                                 |
| sum           | image_knn(norm(i + t))                                                       |
| fusion        | image_knn(norm((1−α)i + αt))                                                 |
| caption_aware | image_knn(q_fusion) (1−β), caption_knn(q_fusion) (β): WeiMoCIR's caption-aware score realised as a second k-NN sub-query, min-max normalised per sub-query instead of raw cosines |
| slerp         | image_knn(slerp(i, t; λ))                                                    |
| pdv           | image_knn(PDV(i, E_T(c), E_T(c + " " + T))) (needs the reference caption c)  |
| rewrite       | image_knn(E_T(r)) (CIReVL-style: the rewritten caption as a text query)      |
| bm25          | caption_bm25(r)                                                              |
| hybrid        | caption_bm25(r) (w_bm25), image_knn(composed) (w_image), caption_knn(E_T(r)) (w_caption); composed = `weights.hybrid_vector` strategy's vector |
| phi           | image_knn(E_T("a photo of $ that T" with φ(i) at $)) (textual inversion; needs a model with φ, see encoders.phi) |
| phi_hybrid    | hybrid with the phi vector as the image_knn vector (caption_bm25(r) and caption_knn(E_T(r)) as in hybrid) |

Without a reference caption there is nothing to rewrite: r is T cleaned by the rewriter's rules
(BM25 gets that text) and E_T(r) is E_T(T), one encoding fewer per query (leave-one-caption-out
search on 1,000 Flickr8k dev images: recall@1/5/10 52.7/71.4/79.0 with E_T(r), 52.6/71.9/79.0 with
E_T(T); `benchmarks/text_query_vectors.py`).

Negative text ("without a hood", given as `negative` or found by the rewriter) subtracts
`weights.negative`·E_T(negative) from every vector; the rewriter also deletes it from r.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .. import dsl
from ..dialect import Dialect, latest
from ..errors import InputError
from . import strategies as S
from .rewrite import Rewrite

STRATEGIES = ("image_only", "text_only", "sum", "fusion", "caption_aware", "slerp", "pdv", "rewrite", "bm25", "hybrid",
              "phi", "phi_hybrid")
PHI_STRATEGIES = {"phi", "phi_hybrid"}
"""Strategies that need a model with a φ graph (`Encoder.phi`)."""


def available_strategies(encoder: Any) -> list[str]:
    """STRATEGIES that `encoder`'s model supports (the φ ones need a φ graph)."""
    return [s for s in STRATEGIES if s not in PHI_STRATEGIES or getattr(encoder, "phi", None) is not None]


IMAGE_STRATEGIES = {"image_only", "sum", "fusion", "caption_aware", "slerp", "pdv", "phi"}
TEXT_STRATEGIES = {"text_only", "sum", "fusion", "caption_aware", "slerp", "pdv"}
NORMALIZATIONS = ("min_max", "l2", "z_score", "rrf")
CAPTION_FIELD = "caption"
IMAGE_FIELD = "image_vector"
CAPTION_VECTOR_FIELD = "caption_vector"


@dataclass(frozen=True)
class Weights:
    """Strategy parameters. Defaults are the values tuned on the fashion benchmark's dev queries with
    the default model (docs/quality.md); `negative` is not tuned (no benchmark has negatives).

    alpha: text share in weighted fusion; beta: caption_vector share in caption_aware; lam: slerp
    position; pdv_*: PDV's α_T, α_I, β; negative: weight subtracted per negative text;
    bm25/image/caption: hybrid sub-query weights (renormalised to sum 1, zero drops the sub-query);
    hybrid_vector: which strategy composes the hybrid's image_knn vector; normalization:
    min_max | l2 | z_score | rrf; combination: arithmetic_mean | geometric_mean | harmonic_mean;
    candidates: k of each k-NN sub-query and the hybrid pagination depth (at least the query's k).
    """

    alpha: float = 0.6
    beta: float = 0.9
    lam: float = 0.6
    pdv_alpha_text: float = 2.0
    pdv_alpha_image: float = 1.0
    pdv_beta: float = 0.4
    negative: float = 0.3
    bm25: float = 0.2
    image: float = 0.4
    caption: float = 0.4
    hybrid_vector: str = "fusion"
    normalization: str = "l2"
    combination: str = "arithmetic_mean"
    candidates: int = 100

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.hybrid_vector not in IMAGE_STRATEGIES - {"caption_aware"} | {"text_only", "rewrite"}:
            raise InputError(f"hybrid_vector must be a single-vector strategy, got {self.hybrid_vector!r}")
        for name in ("bm25", "image", "caption", "negative"):
            if getattr(self, name) < 0:
                raise InputError(f"weight {name} must be ≥ 0")


@dataclass(frozen=True)
class DecodedImage:
    """A reference image already decoded and preprocessed for the model (`encoder.preprocess`): its
    bytes (for the content hash) and pixels `float32[3, H, W]`, so a search does not decode it again
    (the service decodes uploads once, in its bounded decode pool)."""

    data: bytes
    pixels: np.ndarray


@dataclass
class CompositeQuery:
    """A composed query: reference image(s) plus modification text, or either alone.

    images: reference images as file paths, bytes or `DecodedImage`s; doc_ids: references already in the index;
    text: the modification ("in navy blue instead"); negative: what to avoid ("a hood");
    caption: the reference caption, when not taken from the index; filters: `{field: value|[values]}`
    term filters (e.g. `{"metadata.gender": "Women"}`); k: number of results; strategy: one of
    STRATEGIES; weights: `Weights`; exclude_reference: drop the reference documents from results.
    """

    images: Sequence[str | Path | bytes | DecodedImage] = ()
    doc_ids: Sequence[str] = ()
    text: str = ""
    negative: str = ""
    caption: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    k: int = 10
    strategy: str = "hybrid"
    weights: Weights = field(default_factory=Weights)
    exclude_reference: bool = True
    rerank: Sequence[Any] = ()  # rerankers after the strategy (`compose.rerank`): names, URLs, callables
    rerank_depth: int = 100  # K: how many first-stage candidates the rerankers see

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not 1 <= int(self.k) <= dsl.query.MAX_K:
            raise InputError(f"k must be in 1..{dsl.query.MAX_K}, got {self.k}")
        if isinstance(self.images, (str, Path, bytes)):
            self.images = [self.images]
        if isinstance(self.doc_ids, str):
            self.doc_ids = [self.doc_ids]
        if not (self.images or self.doc_ids or self.text.strip()):
            raise InputError("a query needs a reference image, a document id or a text")
        if isinstance(self.rerank, str) or callable(self.rerank):
            self.rerank = [part for part in self.rerank.split(",") if part.strip()] \
                if isinstance(self.rerank, str) else [self.rerank]
        if not 1 <= int(self.rerank_depth) <= dsl.query.MAX_K:
            raise InputError(f"rerank_depth must be in 1..{dsl.query.MAX_K}, got {self.rerank_depth}")


@dataclass
class RenderedQuery:
    """A strategy's DSL: `sub_queries` (name → bare clause), the search `body`, and the pipeline."""

    strategy: str
    sub_queries: dict[str, dict]
    weights: list[float]
    body: dict
    pipeline_id: str | None
    pipeline_body: dict | None
    excluded_ids: list[str]
    k: int


@dataclass
class SearchResult:
    """One hit: `sub_scores` maps sub-query name → its raw score for this document (explain only)."""

    id: str
    score: float
    caption: Any = None
    image_uri: str | None = None
    metadata: dict = field(default_factory=dict)
    sub_scores: dict[str, float | None] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict, repr=False)  # only with execute(vectors=True)


@dataclass
class SearchResponse:
    """Ranked results plus what produced them (iterable over `results`)."""

    results: list[SearchResult]
    rendered: RenderedQuery
    rewrite: Rewrite | None = None

    def __iter__(self) -> Iterator[SearchResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> SearchResult:
        return self.results[index]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.results]


@dataclass
class PreparedQuery:
    """A query with its references resolved and all its texts encoded (see the module docstring)."""

    query: CompositeQuery
    image: np.ndarray | None
    caption: str | None
    rewrite: Rewrite
    text: np.ndarray | None
    negative: np.ndarray | None
    caption_vector: np.ndarray | None
    caption_with_text: np.ndarray | None
    rewritten: np.ndarray | None
    excluded_ids: list[str]
    phi: np.ndarray | None = None

    def vector(self, strategy: str, weights: Weights) -> np.ndarray:
        """The composed query vector of a single-vector strategy (negatives applied)."""
        if strategy in IMAGE_STRATEGIES and self.image is None:
            raise InputError(f"strategy {strategy!r} needs a reference image")
        if strategy in TEXT_STRATEGIES - {"pdv"} and self.text is None:
            raise InputError(f"strategy {strategy!r} needs a modification text")
        if strategy == "image_only":
            vector = S.image_only(self.image)
        elif strategy == "text_only":
            vector = S.text_only(self.text)
        elif strategy == "sum":
            vector = S.weighted_fusion(self.image, self.text, 0.5)
        elif strategy in ("fusion", "caption_aware"):
            vector = S.weighted_fusion(self.image, self.text, weights.alpha)
        elif strategy == "slerp":
            vector = S.slerp(self.image, self.text, weights.lam)
        elif strategy == "pdv":
            if self.caption_vector is None:
                raise InputError("strategy 'pdv' needs the reference caption (index it, or pass `caption`)")
            vector = S.prompt_directional_vector(
                self.image, self.caption_vector, self.caption_with_text,
                alpha_text=weights.pdv_alpha_text, alpha_image=weights.pdv_alpha_image, beta=weights.pdv_beta,
            )
        elif strategy == "phi":
            if self.phi is None:
                raise InputError("strategy 'phi' needs a model with a φ graph (`cir models train-phi` / `import-phi`)")
            vector = S.normalize(self.phi)
        elif strategy == "rewrite":
            if self.rewritten is None:
                raise InputError("strategy 'rewrite' needs a reference caption or a modification text")
            vector = S.text_only(self.rewritten)
        else:
            raise InputError(f"strategy {strategy!r} has no single query vector")
        if self.negative is not None and weights.negative > 0:
            vector = S.with_negative(vector, self.negative, weights.negative)
        return vector

    def render(self, strategy: str | None = None, weights: Weights | None = None, k: int | None = None,
               *, source: bool = True, dialect: Dialect | None = None,
               vector_types: dict[str, str] | None = None) -> RenderedQuery:
        """This query as DSL for `strategy` (default: the query's own) with `weights`;
        `source=False` asks for ids and scores only (`"_source": false`, what evaluation needs);
        `dialect`: the cluster's version rules (`dialect.detect(client)`; default: the latest);
        `vector_types`: the index's `{field: data_type}` (byte / binary fields get encoded vectors)."""
        strategy = strategy or self.query.strategy
        weights = weights or self.query.weights
        if strategy == "phi_hybrid":
            weights = replace(weights, hybrid_vector="phi")
        k = int(k or self.query.k)
        candidates = max(k, weights.candidates)
        types = vector_types or {}

        def knn(field: str, vector) -> dict:
            return dsl.knn_clause(field, vector, candidates, data_type=types.get(field, "float"))

        named: list[tuple[str, dict, float]] = []
        if strategy == "caption_aware":
            vector = self.vector(strategy, weights)
            named = [("image_knn", knn(IMAGE_FIELD, vector), 1 - weights.beta),
                     ("caption_knn", knn(CAPTION_VECTOR_FIELD, vector), weights.beta)]
        elif strategy in ("bm25", "hybrid", "phi_hybrid"):
            if self.rewrite.text:
                named.append(("caption_bm25", dsl.match_clause(CAPTION_FIELD, self.rewrite.text), weights.bm25))
            if strategy != "bm25":
                composed = self._hybrid_vector(weights)
                named.append(("image_knn", knn(IMAGE_FIELD, composed), weights.image))
                if self.rewritten is not None:
                    caption_query = self._negated(self.rewritten, weights)
                    named.append(("caption_knn", knn(CAPTION_VECTOR_FIELD, caption_query),
                                  weights.caption))
        else:
            named = [("image_knn", knn(IMAGE_FIELD, self.vector(strategy, weights)), 1.0)]
        named = [(name, clause, weight) for name, clause, weight in named if weight > 0]
        if not named:
            raise InputError(f"strategy {strategy!r} has nothing to search with for this query")
        rendered = _assemble(strategy, named, weights, k, candidates, self.query.filters, self.excluded_ids,
                             dialect or latest())
        if not source:
            rendered.body["_source"] = False
        return rendered

    def _hybrid_vector(self, weights: Weights) -> np.ndarray:
        """The hybrid's image_knn vector, degrading to what the query has (image, text or both)."""
        if self.image is None:
            return self.vector("text_only" if self.text is not None else "rewrite", weights)
        if self.text is None:
            return self.vector("image_only", weights)
        if (weights.hybrid_vector == "pdv" and self.caption_vector is None) or \
                (weights.hybrid_vector == "phi" and self.phi is None):
            return self.vector("fusion", weights)
        return self.vector(weights.hybrid_vector, weights)

    def _negated(self, vector: np.ndarray, weights: Weights) -> np.ndarray:
        if self.negative is not None and weights.negative > 0:
            return S.with_negative(vector, self.negative, weights.negative)
        return S.normalize(vector)


def _assemble(
    strategy: str,
    named: list[tuple[str, dict, float]],
    weights: Weights,
    k: int,
    candidates: int,
    filters: dict[str, Any],
    excluded_ids: list[str],
    dialect: Dialect,
) -> RenderedQuery:
    filter_clause = _filter(filters, excluded_ids)
    size = k + len(excluded_ids)  # the reference is also dropped after the search, whatever the engine
    sub_queries = {name: clause for name, clause, _ in named}
    if len(named) == 1:
        name, clause, _ = named[0]
        body = dsl.search_body(dsl.with_filter(clause, filter_clause), size=size)
        return RenderedQuery(strategy, sub_queries, [1.0], _without_total(body), None, None, excluded_ids, k)
    weight_list = _unit_sum([weight for _, _, weight in named])
    if weights.normalization == "rrf":
        pipeline = dsl.rrf_pipeline(weights=weight_list, dialect=dialect)
    else:  # z_score keeps the weights too: 3.x combines it with a weighted arithmetic mean
        pipeline = dsl.normalization_pipeline(weights.normalization, weights.combination, weight_list, dialect=dialect)
    body = dsl.hybrid_body(list(sub_queries.values()), size=size, pagination_depth=candidates, filter=filter_clause,
                           dialect=dialect)
    return RenderedQuery(strategy, sub_queries, weight_list, _without_total(body), dsl.pipeline_id(pipeline), pipeline,
                         excluded_ids, k)


def _without_total(body: dict) -> dict:
    """`body` asking for no `hits.total`: a composed search returns its top k, and counting every
    match (for a hybrid query, the union of all BM25 matches) is work nobody reads."""
    body["track_total_hits"] = False
    return body


def _unit_sum(weights: list[float]) -> list[float]:
    """Weights rounded to 4 decimals that sum to exactly 1 (what the normalization processor checks)."""
    total = sum(weights)
    rounded = [round(w / total, 4) for w in weights]
    rounded[-1] = round(1.0 - sum(rounded[:-1]), 4)
    return rounded


def _filter(filters: dict[str, Any], excluded_ids: list[str]) -> dict | None:
    clause = dsl.term_filters(filters)
    if not excluded_ids:
        return clause
    clause = clause or {"bool": {}}
    clause["bool"]["must_not"] = [{"ids": {"values": list(excluded_ids)}}]
    return clause
