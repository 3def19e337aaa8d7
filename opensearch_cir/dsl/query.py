"""Query DSL builders: the clauses and search bodies the package sends to OpenSearch.

Every builder returns plain dicts (JSON-ready) so users can embed the fragments in their own DSL.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ..dialect import Dialect, latest
from .vector_encoding import encode_list

VECTOR_FIELDS = ("image_vector", "caption_vector")
CAPTION_FIELD = "caption"
MAX_HYBRID_QUERIES = 5
MAX_K = 10_000


def _vector_list(vector: Sequence[float] | np.ndarray) -> list[float]:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.size == 0:
        raise ValueError("a k-NN query vector must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError("a k-NN query vector must contain only finite numbers")
    return [float(value) for value in array]


def knn_clause(
    field: str,
    vector: Sequence[float] | np.ndarray,
    k: int,
    filter: dict | None = None,
    *,
    ef_search: int | None = None,
    rescore: bool | float | None = None,
    data_type: str = "float",
    dialect: Dialect | None = None,
) -> dict:
    """`{"knn": {field: {"vector": [...], "k": k[, "filter"][, "method_parameters"][, "rescore"]}}}`.

    rescore: None (the field's default), False (none), True (k-NN's default oversample 1.0) or an
    `oversample_factor` in [1, 100] (k-NN 2.17+). data_type: the field's (`byte` / `binary`
    vectors go as `vector_encoding` encodes them: the same way `cir ingest` writes documents).
    """
    if not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    params: dict[str, Any] = {"vector": _vector_list(vector), "k": int(k)}
    if data_type != "float":
        params["vector"] = encode_list(params["vector"], data_type)
    if filter:
        params["filter"] = filter
    if ef_search is not None:
        (dialect or latest()).require("knn_method_parameters")
        params["method_parameters"] = {"ef_search": int(ef_search)}
    if rescore is not None:
        (dialect or latest()).require("knn_rescore")
        if isinstance(rescore, bool):
            params["rescore"] = rescore
        elif 1.0 <= float(rescore) <= 100.0:
            params["rescore"] = {"oversample_factor": float(rescore)}
        else:
            raise ValueError(f"rescore oversample_factor must be in [1, 100], got {rescore}")
    return {"knn": {field: params}}


def match_clause(field: str, text: str, operator: str = "or") -> dict:
    """`{"match": {field: {"query": text, "operator": operator}}}` (BM25 on an analysed text field)."""
    if operator not in ("or", "and"):
        raise ValueError(f"operator must be 'or' or 'and', got {operator!r}")
    return {"match": {field: {"query": text, "operator": operator}}}


def neural_clause(
    field: str,
    *,
    model_id: str,
    k: int,
    query_text: str | None = None,
    query_image: str | None = None,
    filter: dict | None = None,
    dialect: Dialect | None = None,
) -> dict:
    """`{"neural": {field: {...}}}`: OpenSearch embeds text and/or a base64 image with a remote model."""
    if query_text is None and query_image is None:
        raise ValueError("a neural query needs query_text, query_image (base64) or both")
    if query_text is None:
        (dialect or latest()).require("neural_query_image")
    if not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    params: dict[str, Any] = {"model_id": model_id, "k": int(k)}
    if query_text is not None:
        params["query_text"] = query_text
    if query_image is not None:
        params["query_image"] = query_image
    if filter:
        params["filter"] = filter
    return {"neural": {field: params}}


def term_filters(filters: dict[str, Any] | None) -> dict | None:
    """`{"field": value | [values]}` -> a `bool.filter` of `term`/`terms` clauses (None when empty)."""
    if not filters:
        return None
    clauses = [
        {"terms": {field: list(value)}} if isinstance(value, (list, tuple, set)) else {"term": {field: value}}
        for field, value in filters.items()
    ]
    return {"bool": {"filter": clauses}}


def hybrid_body(
    queries: Iterable[dict],
    *,
    size: int,
    pagination_depth: int | None = None,
    filter: dict | None = None,
    source_excludes: Sequence[str] | None = VECTOR_FIELDS,
    from_: int = 0,
    dialect: Dialect | None = None,
) -> dict:
    """A search body whose top-level query is `hybrid` over 1..5 sub-queries.

    Needs a search pipeline with a normalization or score-ranker processor (see `dsl.pipelines`).
    `filter` applies to every sub-query: `hybrid.filter` on 3.0+; on 2.19, which rejects that field
    (neural-search HybridQueryBuilder.java), pushed into each sub-query with `with_filter` (what
    3.0 does itself). `from_ > 0` requires `pagination_depth`.
    """
    dialect = dialect or latest()
    queries = list(queries)
    if not 1 <= len(queries) <= MAX_HYBRID_QUERIES:
        raise ValueError(f"a hybrid query takes 1..{MAX_HYBRID_QUERIES} sub-queries, got {len(queries)}")
    if from_ and pagination_depth is None:
        raise ValueError("hybrid queries with from > 0 need pagination_depth")
    if filter and not dialect.supports("hybrid_filter"):
        queries, filter = [with_filter(query, filter) for query in queries], None
    hybrid: dict[str, Any] = {"queries": queries}
    if pagination_depth is not None:
        dialect.require("pagination_depth")
        hybrid["pagination_depth"] = int(pagination_depth)
    if filter:
        hybrid["filter"] = filter
    body: dict[str, Any] = {"size": int(size), "query": {"hybrid": hybrid}}
    if from_:
        body["from"] = int(from_)
    if source_excludes:
        body["_source"] = {"excludes": list(source_excludes)}
    return body


def with_filter(clause: dict, filter_clause: dict | None) -> dict:
    """`clause` restricted by `filter_clause`: inside `knn.filter` (efficient filtering, and-ed with a
    filter already there), else a `bool` with the clause in `must` and the filter in `filter`."""
    if not filter_clause:
        return clause
    if "knn" in clause:
        (field_name, params), = clause["knn"].items()
        existing = params.get("filter")
        combined = filter_clause if existing is None else {"bool": {"filter": [existing, filter_clause]}}
        return {"knn": {field_name: {**params, "filter": combined}}}
    return {"bool": {"must": [clause], "filter": [filter_clause]}}


def search_body(
    query: dict,
    *,
    size: int,
    source_excludes: Sequence[str] | None = VECTOR_FIELDS,
) -> dict:
    """A plain (non-hybrid) search body around one query clause."""
    body: dict[str, Any] = {"size": int(size), "query": query}
    if source_excludes:
        body["_source"] = {"excludes": list(source_excludes)}
    return body
