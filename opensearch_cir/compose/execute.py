"""Step 3 of a composed search, and the whole path: register the pipeline, search, drop the
references, add each sub-query's score with explain (see `compose.query`)."""

from __future__ import annotations

import threading
from typing import Any

from .. import dsl
from ..dialect import detect
from ..dsl.vector_encoding import known_data_types
from .hooks import Hooks
from .prepare import prepare
from .query import (
    CAPTION_FIELD, CAPTION_VECTOR_FIELD, IMAGE_FIELD, CompositeQuery, PreparedQuery, RenderedQuery, SearchResponse, SearchResult,
)


_registered: dict[int, set[str]] = {}
_registered_lock = threading.Lock()


def ensure_pipeline(client: Any, rendered: RenderedQuery) -> None:
    """Register the rendered query's search pipeline on `client` (once per client and pipeline id)."""
    if rendered.pipeline_id is None:
        return
    with _registered_lock:
        known = _registered.setdefault(id(client), set())
        if rendered.pipeline_id in known:
            return
        client.search_pipeline.put(id=rendered.pipeline_id, body=rendered.pipeline_body)
        known.add(rendered.pipeline_id)


def execute(client: Any, index: str, rendered: RenderedQuery, *, explain: bool = False,
            vectors: bool = False) -> list[SearchResult]:
    """Run a rendered query; reference documents dropped; `explain` adds raw per-sub-query scores;
    `vectors` keeps the hits' stored vectors (from `_source`) in `SearchResult.vectors` (reranking)."""
    ensure_pipeline(client, rendered)
    params = {"search_pipeline": rendered.pipeline_id} if rendered.pipeline_id else None
    response = client.search(index=index, body=rendered.body, params=params) if params else \
        client.search(index=index, body=rendered.body)
    excluded = set(rendered.excluded_ids)
    results = []
    for hit in response["hits"]["hits"]:
        if hit["_id"] in excluded:
            continue
        source = hit.get("_source") or {}
        results.append(SearchResult(
            id=hit["_id"], score=float(hit["_score"] or 0.0), caption=source.get(CAPTION_FIELD),
            image_uri=source.get("image_uri"), metadata=source.get("metadata") or {},
            vectors={f: source[f] for f in (IMAGE_FIELD, CAPTION_VECTOR_FIELD) if vectors and source.get(f) is not None},
        ))
    results = results[: rendered.k]
    if explain and results:
        _add_sub_scores(client, index, rendered, results)
    return results


def _add_sub_scores(client: Any, index: str, rendered: RenderedQuery, results: list[SearchResult]) -> None:
    """Each sub-query run alone, restricted to the hits' ids: its raw (pre-normalisation) scores."""
    ids = [r.id for r in results]
    only_hits = {"ids": {"values": ids}}
    for name, clause in rendered.sub_queries.items():
        if "knn" in clause:
            (field_name, params), = clause["knn"].items()
            restricted = {"knn": {field_name: {**params, "k": len(ids), "filter": only_hits}}}
        else:
            restricted = {"bool": {"must": [clause], "filter": [only_hits]}}
        response = client.search(index=index, body=dsl.search_body(restricted, size=len(ids)))
        scores = {hit["_id"]: float(hit["_score"]) for hit in response["hits"]["hits"]}
        for result in results:
            result.sub_scores[name] = scores.get(result.id)


def search(client: Any, index: str, query: CompositeQuery, encoder: Any, *, explain: bool = False,
           hooks: Hooks | None = None) -> SearchResponse:
    """Prepare, render and execute `query` on `index`: the path the CLI, service, demo and eval share."""
    return run_prepared(client, index, prepare(client, index, query, encoder, hooks=hooks, only_strategy=not query.rerank), encoder, explain=explain)


def run_prepared(client: Any, index: str, prepared: PreparedQuery, encoder: Any = None, *,
                 explain: bool = False) -> SearchResponse:
    """Render and execute a prepared query, with its rerankers when it has any (`search`'s second half)."""
    if prepared.query.rerank:
        from .rerank import rerank_search

        return rerank_search(client, index, prepared, prepared.query.rerank, encoder,
                             depth=prepared.query.rerank_depth, explain=explain)
    rendered = prepared.render(dialect=detect(client), vector_types=known_data_types(client, index))
    results = execute(client, index, rendered, explain=explain)
    return SearchResponse(results=results, rendered=rendered, rewrite=prepared.rewrite)
