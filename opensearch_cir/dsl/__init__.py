"""OpenSearch request bodies: query DSL builders, search/ingest pipelines, ml-commons bodies, and
`validate_request(kind, body[, dialect=])` (the OpenAPI spec, our stricter rules and a version's rules).

Builders whose body depends on the cluster's version take `dialect=` (`opensearch_cir.dialect`;
default: the newest version's rules) and emit what that version accepts or refuse naming the
first version with the feature."""

from .ml import connector_body, ingest_pipeline_body, model_register_body
from .pipelines import (
    DEFAULT_PIPELINE,
    PIPELINES,
    for_dialect,
    normalization_pipeline,
    pipeline_id,
    rrf_pipeline,
)
from .query import (
    MAX_HYBRID_QUERIES,
    VECTOR_FIELDS,
    hybrid_body,
    knn_clause,
    match_clause,
    neural_clause,
    search_body,
    term_filters,
    with_filter,
)
from .validate import validate_request

__all__ = [
    "DEFAULT_PIPELINE",
    "MAX_HYBRID_QUERIES",
    "PIPELINES",
    "VECTOR_FIELDS",
    "connector_body",
    "for_dialect",
    "hybrid_body",
    "ingest_pipeline_body",
    "knn_clause",
    "match_clause",
    "model_register_body",
    "neural_clause",
    "normalization_pipeline",
    "pipeline_id",
    "rrf_pipeline",
    "search_body",
    "term_filters",
    "validate_request",
    "with_filter",
]
