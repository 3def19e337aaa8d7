"""The rerank path: one first-stage search at depth K that also returns the candidates' vectors,
then the chain in memory, then the top k.

Requests and bytes (OpenSearch or the embedded engine): the first stage is the strategy's usual
single request with `size` = K (default 100) instead of k, and its hits carry `_source.image_vector`
and `_source.caption_vector` (the full `_source` for users, only the two vectors for evaluation;
without a reranker both are excluded from `_source`):
about 2 × dimension × ~10 bytes of JSON per candidate (≈ 5 KB at 256-d, ≈ 0.5 MB for K = 100,
≈ 1 MB for a 512-d CLIP). No reranker makes a second engine request; `explain` adds the sub-query
requests it always makes. On OpenSearch 3.x indices with derived vector source the vectors are
still returned in `_source` (they are rebuilt from the doc values).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from ...dsl.vector_encoding import known_data_types
from ..execute import _add_sub_scores, execute
from ..query import PreparedQuery, RenderedQuery, SearchResponse, SearchResult
from . import DEFAULT_DEPTH, apply_chain, parse_rerankers
from .base import CAPTION_VECTOR_FIELD, IMAGE_FIELD, VECTOR_FIELDS, Candidate, RerankContext


def first_stage(client: Any, index: str, prepared: PreparedQuery, *, depth: int = DEFAULT_DEPTH,
                source: bool = True, strategy: str | None = None, weights: Any = None) -> tuple[RenderedQuery, list[Candidate]]:
    """The strategy's search at depth max(K, k) with the candidates' vectors in the same response;
    `source=False` asks for the two vector fields only."""
    rendered = prepared.render(strategy, weights, k=max(depth, prepared.query.k),
                               vector_types=known_data_types(client, index))
    # the usual body leaves the vectors out of `_source`; the rerankers need them
    rendered.body["_source"] = True if source else {"includes": list(VECTOR_FIELDS)}
    hits = execute(client, index, rendered, vectors=True)
    return rendered, [candidate_of(hit) for hit in hits]


def candidate_of(hit: SearchResult) -> Candidate:
    def vector(name: str) -> np.ndarray | None:
        value = hit.vectors.get(name)
        return None if value is None else np.asarray(value, np.float32)

    return Candidate(id=hit.id, score=hit.score, caption=hit.caption, image_uri=hit.image_uri, metadata=hit.metadata,
                     image_vector=vector(IMAGE_FIELD), caption_vector=vector(CAPTION_VECTOR_FIELD))


def fresh(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Copies to rerank again (rerankers rewrite `score` and `scores`); vectors are shared, not copied."""
    return [dataclasses.replace(c, scores={}) for c in candidates]


def rerank_search(client: Any, index: str, prepared: PreparedQuery, specs: Any, encoder: Any = None, *,
                  depth: int = DEFAULT_DEPTH, explain: bool = False) -> SearchResponse:
    """First stage at depth K, the chain of `specs` (see the package docstring), then the top k;
    with `explain` each hit's `sub_scores` holds the sub-queries' raw scores and each reranker's own."""
    chain = parse_rerankers(specs)
    rendered, candidates = first_stage(client, index, prepared, depth=depth)
    context = RerankContext(prepared, rendered.strategy, prepared.query.weights, encoder)
    ranked = apply_chain(chain, context, candidates)[: prepared.query.k]
    results = [SearchResult(id=c.id, score=c.score, caption=c.caption, image_uri=c.image_uri, metadata=c.metadata)
               for c in ranked]
    if explain and results:
        _add_sub_scores(client, index, rendered, results)
        for result, candidate in zip(results, ranked):
            result.sub_scores.update({f"rerank:{name}": value for name, value in candidate.scores.items()})
    rendered.k = prepared.query.k
    return SearchResponse(results=results, rendered=rendered, rewrite=prepared.rewrite)
