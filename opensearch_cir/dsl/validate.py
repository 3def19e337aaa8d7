"""Validate request bodies against the OpenSearch OpenAPI spec and our stricter rules.

`validate_request(kind, body)` checks `body` against the request-body schema of the operation
`kind` (e.g. "search", "indices.create", "bulk") in the OpenAPI 3.1 YAML spec (`spec.py`:
jsonschema Draft 2020-12, $refs across files resolved by `referencing`; files are loaded on first
use and cached), then applies the rules the spec misses:
at most 5 hybrid sub-queries, hybrid only at the top level, weights in [0, 1] summing to 1 ± 0.01
and one per sub-query, known k-NN space types and engines, k in 1..10000, dimension ≤ 16000,
rank_constant in 1..10000, z_score only with arithmetic_mean, lower/upper bounds only with min_max
and one per sub-query... Failures raise
`BodyValidationError` naming the path of the offending value.

The spec is found at `$CIR_OPENSEARCH_API_SPEC`, else `../shared/opensearch-api-spec` beside the
repository; without it only the strict rules run.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Iterator

from ..errors import BodyValidationError
from ..dialect import Dialect
from .pipelines import COMBINATIONS, NORMALIZATIONS
from .spec import OPERATIONS, find_spec_dir, spec_errors
from .version_rules import version_errors


SPACE_TYPES = ("l2", "cosinesimil", "innerproduct", "hamming", "l1", "linf")
ENGINES = ("faiss", "lucene")  # nmslib is blocked for new indices since OpenSearch 3.0
METHODS = ("hnsw", "ivf")
DATA_TYPES = ("float", "byte", "binary")
COMPRESSION_LEVELS = ("1x", "2x", "4x", "8x", "16x", "32x", "64x")  # k-NN CompressionLevel
MAX_DIMENSION = 16_000
MAX_K = 10_000
MAX_HYBRID_QUERIES = 5
MAX_RANK_CONSTANT = 10_000
WEIGHT_SUM_TOLERANCE = 0.01
BOUND_MODES = ("apply", "clip", "ignore")
MAX_BOUND_SCORE = 10_000

# -- our stricter rules -----------------------------------------------------------------------

def _walk(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_weights(weights: Any, path: str, expected: int | None = None) -> Iterator[str]:
    if not isinstance(weights, list) or not all(_is_number(w) for w in weights):
        yield f"{path}: weights must be a list of finite numbers"
        return
    for index, weight in enumerate(weights):
        if not 0.0 <= weight <= 1.0:
            yield f"{path}[{index}]: weight {weight} is outside [0, 1]"
    if weights and abs(sum(weights) - 1.0) > WEIGHT_SUM_TOLERANCE:
        yield f"{path}: weights sum to {sum(weights):.4f}, must be 1 ± {WEIGHT_SUM_TOLERANCE}"
    if expected is not None and len(weights) != expected:
        yield f"{path}: {len(weights)} weights for {expected} hybrid sub-queries (need one per sub-query)"


def _check_bounds(bounds: Any, path: str, score_key: str, expected: int | None) -> Iterator[str]:
    """min_max lower_bounds (3.0+) / upper_bounds (3.2+): [{mode: apply|clip|ignore, min_score|max_score}]."""
    if not isinstance(bounds, list) or not 1 <= len(bounds) <= MAX_HYBRID_QUERIES:
        yield f"{path}: must be a list of 1..{MAX_HYBRID_QUERIES} bounds"
        return
    for index, bound in enumerate(bounds):
        if not isinstance(bound, dict):
            yield f"{path}[{index}]: each bound must be an object"
            continue
        if bound.get("mode", "apply") not in BOUND_MODES:
            yield f"{path}[{index}].mode: {bound.get('mode')!r} is not one of {BOUND_MODES}"
        score = bound.get(score_key)
        if score is not None and not (_is_number(score) and -MAX_BOUND_SCORE <= score <= MAX_BOUND_SCORE):
            yield f"{path}[{index}].{score_key}: must be a number in [-{MAX_BOUND_SCORE}, {MAX_BOUND_SCORE}]"
    if expected is not None and len(bounds) != expected:
        yield f"{path}: {len(bounds)} bounds for {expected} hybrid sub-queries (need one per sub-query)"


def _check_vector_query(clause: Any, path: str, name: str) -> Iterator[str]:
    if not isinstance(clause, dict) or len(clause) != 1:
        yield f"{path}: a {name} query names exactly one field"
        return
    field, params = next(iter(clause.items()))
    path = f"{path}.{field}"
    if not isinstance(params, dict):
        yield f"{path}: expected an object"
        return
    limits = [key for key in ("k", "min_score", "max_distance") if key in params]
    if len(limits) != 1:
        yield f"{path}: exactly one of k, min_score, max_distance is required (got {limits or 'none'})"
    if "k" in params and not (isinstance(params["k"], int) and 1 <= params["k"] <= MAX_K):
        yield f"{path}.k: k must be an integer in 1..{MAX_K}, got {params['k']!r}"
    if name == "knn":
        vector = params.get("vector")
        if not isinstance(vector, list) or not vector or not all(_is_number(v) for v in vector):
            yield f"{path}.vector: must be a non-empty list of finite numbers"
        elif len(vector) > MAX_DIMENSION:
            yield f"{path}.vector: {len(vector)} dimensions, more than {MAX_DIMENSION}"
        if "rescore" in params:
            yield from _check_rescore(params, f"{path}.rescore")
    if name == "neural" and "query_text" not in params and "query_image" not in params:
        yield f"{path}: a neural query needs query_text and/or query_image"
    if name == "neural" and "model_id" not in params:
        yield f"{path}: a neural query needs model_id (or a default model on the index)"


def _check_rescore(params: dict, path: str) -> Iterator[str]:
    """k-NN KNNQueryBuilderParser / RescoreParser: a boolean or {oversample_factor in [1, 100]}, not with radial search."""
    rescore = params["rescore"]
    if any(key in params for key in ("min_score", "max_distance")):
        yield f"{path}: rescore cannot be combined with min_score / max_distance"
    if isinstance(rescore, bool):
        return
    if not isinstance(rescore, dict) or set(rescore) - {"oversample_factor"}:
        yield f"{path}: must be a boolean or {{\"oversample_factor\": number}}"
        return
    factor = rescore.get("oversample_factor", 1.0)
    if not (_is_number(factor) and 1.0 <= factor <= 100.0):
        yield f"{path}.oversample_factor: must be a number in [1, 100], got {factor!r}"


def _is_clause(value: Any, keys: tuple[str, ...]) -> bool:
    """`{field: {params}}` whose params have one of `keys` (so a field merely named "knn" is not a clause)."""
    return (
        isinstance(value, dict)
        and len(value) >= 1
        and all(isinstance(params, dict) for params in value.values())
        and any(key in params for params in value.values() for key in keys)
    )


def _check_query_tree(query: Any, path: str) -> Iterator[str]:
    for sub_path, node in _walk(query, path):
        if not isinstance(node, dict):
            continue
        if _is_clause(node.get("knn"), ("vector", "k", "min_score", "max_distance")):
            yield from _check_vector_query(node["knn"], f"{sub_path}.knn", "knn")
        if _is_clause(node.get("neural"), ("query_text", "query_image", "model_id", "k")):
            yield from _check_vector_query(node["neural"], f"{sub_path}.neural", "neural")
        if isinstance(node.get("hybrid"), dict) and "queries" in node["hybrid"]:
            yield f"{sub_path}.hybrid: a hybrid query must be the top-level query"


def _search_errors(body: Any, pipeline: dict | None = None) -> Iterator[str]:
    if not isinstance(body, dict):
        yield "$: a search body must be an object"
        return
    query = body.get("query")
    if isinstance(query, dict) and "hybrid" in query:
        hybrid = query["hybrid"]
        if len(query) != 1:
            yield "$.query: hybrid must be the only top-level query clause"
        queries = hybrid.get("queries") if isinstance(hybrid, dict) else None
        if not isinstance(queries, list) or not 1 <= len(queries) <= MAX_HYBRID_QUERIES:
            count = len(queries) if isinstance(queries, list) else "no"
            yield f"$.query.hybrid.queries: a hybrid query takes 1..{MAX_HYBRID_QUERIES} sub-queries, got {count}"
            queries = queries if isinstance(queries, list) else []
        if hybrid.get("boost", 1) != 1:
            yield "$.query.hybrid.boost: OpenSearch rejects a boost other than 1 on hybrid queries"
        if body.get("from", 0) and "pagination_depth" not in hybrid:
            yield "$.query.hybrid: from > 0 needs pagination_depth"
        depth = hybrid.get("pagination_depth")
        if depth is not None and not (isinstance(depth, int) and 1 <= depth <= MAX_K):
            yield f"$.query.hybrid.pagination_depth: must be an integer in 1..{MAX_K}"
        for index, sub_query in enumerate(queries):
            yield from _check_query_tree(sub_query, f"$.query.hybrid.queries[{index}]")
        if "filter" in hybrid:
            yield from _check_query_tree(hybrid["filter"], "$.query.hybrid.filter")
        if pipeline is not None:
            yield from _search_pipeline_errors(pipeline, sub_queries=len(queries))
    elif query is not None:
        yield from _check_query_tree(query, "$.query")
    size = body.get("size")
    if size is not None and not (isinstance(size, int) and 0 <= size <= MAX_K):
        yield f"$.size: must be an integer in 0..{MAX_K}"


def _search_pipeline_errors(body: Any, sub_queries: int | None = None) -> Iterator[str]:
    processors = body.get("phase_results_processors", []) if isinstance(body, dict) else []
    for index, processor in enumerate(processors):
        path = f"$.phase_results_processors[{index}]"
        if not isinstance(processor, dict):
            continue
        if "normalization-processor" in processor:
            config = processor["normalization-processor"] or {}
            path += ".normalization-processor"
            technique = (config.get("normalization") or {}).get("technique", "min_max")
            combination = config.get("combination") or {}
            combine = combination.get("technique", "arithmetic_mean")
            if technique not in NORMALIZATIONS:
                yield f"{path}.normalization.technique: {technique!r} is not one of {NORMALIZATIONS}"
            if combine not in COMBINATIONS:
                yield f"{path}.combination.technique: {combine!r} is not one of {COMBINATIONS}"
            if technique == "z_score" and combine != "arithmetic_mean":
                yield f"{path}: z_score normalisation works only with arithmetic_mean (got {combine})"
            parameters = (config.get("normalization") or {}).get("parameters") or {}
            for key, score_key in (("lower_bounds", "min_score"), ("upper_bounds", "max_score")):
                if key in parameters:
                    if technique != "min_max":
                        yield f"{path}.normalization.parameters.{key}: bounds work only with min_max"
                    yield from _check_bounds(parameters[key], f"{path}.normalization.parameters.{key}", score_key, sub_queries)
            weights = (combination.get("parameters") or {}).get("weights")
            if weights is not None:
                yield from _check_weights(weights, f"{path}.combination.parameters.weights", sub_queries)
        elif "score-ranker-processor" in processor:
            combination = (processor["score-ranker-processor"] or {}).get("combination") or {}
            path += ".score-ranker-processor.combination"
            if combination.get("technique") != "rrf":
                yield f"{path}.technique: only 'rrf' is supported"
            rank_constant = combination.get("rank_constant", 60)
            if not (isinstance(rank_constant, int) and 1 <= rank_constant <= MAX_RANK_CONSTANT):
                yield f"{path}.rank_constant: must be an integer in 1..{MAX_RANK_CONSTANT}, got {rank_constant!r}"
            weights = (combination.get("parameters") or {}).get("weights")
            if weights is not None:
                yield from _check_weights(weights, f"{path}.parameters.weights", sub_queries)


def _knn_enabled(settings: Any) -> bool:
    if not isinstance(settings, dict):
        return False
    index = settings.get("index")
    nested = index.get("knn") if isinstance(index, dict) else None
    return settings.get("index.knn", nested) in (True, "true")


def _mapping_errors(mappings: Any, path: str, settings: Any = None, check_settings: bool = True) -> Iterator[str]:
    found_knn = False
    for sub_path, node in _walk(mappings, path):
        if not (isinstance(node, dict) and node.get("type") == "knn_vector"):
            continue
        found_knn = True
        dimension = node.get("dimension")
        if not (isinstance(dimension, int) and 1 <= dimension <= MAX_DIMENSION):
            yield f"{sub_path}.dimension: must be an integer in 1..{MAX_DIMENSION}, got {dimension!r}"
        data_type = node.get("data_type", "float")
        if data_type not in DATA_TYPES:
            yield f"{sub_path}.data_type: {data_type!r} is not one of {DATA_TYPES}"
        method = node.get("method") or {}
        space_type = node.get("space_type", method.get("space_type", "hamming" if data_type == "binary" else "l2"))
        if space_type not in SPACE_TYPES:
            yield f"{sub_path}.space_type: {space_type!r} is not one of {SPACE_TYPES}"
        if (space_type == "hamming") != (data_type == "binary"):
            yield f"{sub_path}: hamming space goes with data_type binary (and only it)"
        if data_type == "binary" and isinstance(dimension, int) and dimension % 8:
            yield f"{sub_path}.dimension: a binary vector's dimension must be a multiple of 8, got {dimension}"
        if data_type != "float" and ("mode" in node or "compression_level" in node):
            yield f"{sub_path}: mode / compression_level apply to data_type float only"
        if node.get("mode", "in_memory") not in ("in_memory", "on_disk"):
            yield f"{sub_path}.mode: {node.get('mode')!r} is not one of ('in_memory', 'on_disk')"
        if node.get("compression_level", "1x") not in COMPRESSION_LEVELS:
            yield f"{sub_path}.compression_level: {node.get('compression_level')!r} is not one of {COMPRESSION_LEVELS}"
        if method:
            if method.get("name") not in METHODS:
                yield f"{sub_path}.method.name: {method.get('name')!r} is not one of {METHODS}"
            if method.get("engine", "faiss") not in ENGINES:
                yield f"{sub_path}.method.engine: {method.get('engine')!r} is not one of {ENGINES} (nmslib is blocked for new indices)"
            for key, value in (method.get("parameters") or {}).items():
                if key in ("m", "ef_construction", "ef_search", "nlist", "nprobes") and not (
                    isinstance(value, int) and value >= 1
                ):
                    yield f"{sub_path}.method.parameters.{key}: must be a positive integer"
    if found_knn and check_settings and not _knn_enabled(settings):
        yield f"{path}: knn_vector fields need the index setting index.knn: true"


def _bulk_errors(lines: Any) -> Iterator[str]:
    if not isinstance(lines, list):
        yield "$: a bulk body is a list of action/source lines"
        return
    index = 0
    while index < len(lines):
        action = lines[index]
        if not (isinstance(action, dict) and len(action) == 1):
            yield f"$[{index}]: expected an action line with exactly one of index/create/update/delete"
            return
        verb = next(iter(action))
        if verb not in ("index", "create", "update", "delete"):
            yield f"$[{index}]: unknown bulk action {verb!r}"
            return
        if verb == "delete":
            index += 1
            continue
        if index + 1 >= len(lines) or not isinstance(lines[index + 1], dict):
            yield f"$[{index}]: a {verb} action must be followed by a source object"
            return
        for field in ("image_vector", "caption_vector"):
            vector = lines[index + 1].get(field)
            if vector is not None and not (
                isinstance(vector, list) and vector and all(_is_number(v) for v in vector)
            ):
                yield f"$[{index + 1}].{field}: must be a non-empty list of finite numbers"
        index += 2


def _ingest_pipeline_errors(body: Any) -> Iterator[str]:
    for index, processor in enumerate(body.get("processors", []) if isinstance(body, dict) else []):
        config = processor.get("text_image_embedding") if isinstance(processor, dict) else None
        if config is None:
            continue
        path = f"$.processors[{index}].text_image_embedding"
        for key in ("model_id", "embedding", "field_map"):
            if not config.get(key):
                yield f"{path}.{key}: required"
        field_map = config.get("field_map") or {}
        if not set(field_map) <= {"text", "image"} or not field_map:
            yield f"{path}.field_map: keys must be 'text' and/or 'image', got {sorted(field_map)}"


def _connector_errors(body: Any) -> Iterator[str]:
    actions = body.get("actions", []) if isinstance(body, dict) else []
    predict = [a for a in actions if isinstance(a, dict) and a.get("action_type") == "predict"]
    if not predict:
        yield "$.actions: a connector for embeddings needs a 'predict' action"
    for index, action in enumerate(actions):
        url = action.get("url", "") if isinstance(action, dict) else ""
        if not url.startswith(("http://", "https://")):
            yield f"$.actions[{index}].url: must be an http(s) URL, got {url!r}"
        request_body = action.get("request_body") if isinstance(action, dict) else None
        if request_body is not None:
            try:
                json.loads(request_body)
            except (TypeError, json.JSONDecodeError) as exc:
                yield f"$.actions[{index}].request_body: not a JSON template ({exc})"


def _register_model_errors(body: Any) -> Iterator[str]:
    if isinstance(body, dict) and body.get("function_name") == "remote" and not body.get("connector_id"):
        yield "$.connector_id: a remote model needs connector_id"


def _template_errors(body: Any) -> Iterator[str]:
    template = body.get("template", {}) if isinstance(body, dict) else {}
    if not body.get("index_patterns"):
        yield "$.index_patterns: required"
    yield from _mapping_errors(template.get("mappings", {}), "$.template.mappings", template.get("settings"))


_STRICT: dict[str, Callable[..., Iterator[str]]] = {
    "search": _search_errors,
    "count": lambda body: _check_query_tree((body or {}).get("query"), "$.query"),
    "search_pipeline.put": _search_pipeline_errors,
    "indices.create": lambda body: _mapping_errors(body.get("mappings", {}), "$.mappings", body.get("settings")),
    "indices.put_index_template": _template_errors,
    "indices.put_mapping": lambda body: _mapping_errors(body, "$", check_settings=False),
    "bulk": _bulk_errors,
    "ingest.put_pipeline": _ingest_pipeline_errors,
    "ml.create_connector": _connector_errors,
    "ml.register_model": _register_model_errors,
}


def validate_request(
    kind: str,
    body: Any,
    *,
    pipeline: dict | None = None,
    spec_dir: str | os.PathLike | None = None,
    dialect: Dialect | None = None,
) -> None:
    """Raise BodyValidationError unless `body` is a valid request body of operation `kind`.

    kind: one of OPERATIONS ("search", "bulk", "indices.create", "search_pipeline.put", ...).
    pipeline: for a hybrid search, the search pipeline body it runs with (weights are checked
    against the number of sub-queries).
    dialect: also check the body against that version's rules (`dsl.version_rules`).
    """
    if kind not in OPERATIONS:
        raise ValueError(f"unknown request kind {kind!r}; known: {sorted(OPERATIONS)}")
    problems: list[str] = []
    spec_root = find_spec_dir(spec_dir)
    if spec_root is not None:
        problems.extend(spec_errors(kind, body, spec_root))
    strict = _STRICT.get(kind)
    if kind != "bulk" and not isinstance(body, dict):
        problems.append(f"$: a {kind} body must be a JSON object, got {type(body).__name__}")
    elif strict is not None:
        problems.extend(strict(body, pipeline) if kind == "search" else strict(body))
    if dialect is not None:
        problems.extend(version_errors(kind, body, dialect))
    if problems:
        raise BodyValidationError(f"invalid {kind} body: " + "; ".join(problems))
