"""The `hybrid` query and the search pipelines that combine its sub-queries (neural-search).

Each sub-query (with the hybrid `filter` pushed down: into a knn's own filter, else as a bool
filter) keeps its top `pagination_depth` (or from + size) documents; a `normalization-processor`
normalises each list and combines per document, or a `score-ranker-processor` fuses ranks (RRF).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import EngineError, UnsupportedQueryError
from ...scoring import combine, normalize, rrf_rank_scores
from .query import Executor

MAX_SUB_QUERIES = 5
PHASE_PROCESSORS = ("normalization-processor", "score-ranker-processor")
RESPONSE_PROCESSORS = ("hybrid_score_explanation",)


@dataclass
class Pipeline:
    """What a search pipeline asks of a hybrid query."""

    normalization: str | None  # None for RRF
    normalization_parameters: dict
    combination: str
    weights: list[float] | None
    rank_constant: int = 60
    explain_processor: bool = False


def parse_pipeline(pipeline_id: str, body: dict) -> Pipeline:
    """Validate a search pipeline body; raise on any processor the embedded engine cannot run."""
    unknown = set(body) - {"description", "phase_results_processors", "response_processors", "request_processors", "version"}
    if unknown:
        raise EngineError(f"search pipeline [{pipeline_id}]: unknown key(s) {sorted(unknown)}", 400, "parse_exception")
    if body.get("request_processors"):
        raise UnsupportedQueryError(f"search pipeline [{pipeline_id}]: request_processors are not supported by the embedded engine")
    explain = False
    for processor in body.get("response_processors", []):
        (name, _config), = processor.items()
        if name not in RESPONSE_PROCESSORS:
            raise UnsupportedQueryError(f"search pipeline [{pipeline_id}]: response processor [{name}] is not supported by the embedded engine")
        explain = True
    phase = body.get("phase_results_processors", [])
    if len(phase) != 1:
        raise UnsupportedQueryError(f"search pipeline [{pipeline_id}]: exactly one phase results processor is supported, got {len(phase)}")
    (name, config), = phase[0].items()
    if name not in PHASE_PROCESSORS:
        raise UnsupportedQueryError(f"search pipeline [{pipeline_id}]: processor [{name}] is not supported by the embedded engine")
    extra = set(config) - {"normalization", "combination", "tag", "description", "ignore_failure"}
    if extra:
        raise EngineError(f"processor [{name}] doesn't support parameter(s) {sorted(extra)}", 400, "parse_exception")
    combination = config.get("combination", {})
    parameters = combination.get("parameters", {}) or {}
    if set(parameters) - {"weights"}:
        raise EngineError(f"unsupported combination parameter(s) {sorted(set(parameters) - {'weights'})}", 400, "illegal_argument_exception")
    if name == "score-ranker-processor":
        technique = combination.get("technique", "rrf")
        if technique != "rrf" or "normalization" in config:
            raise EngineError(f"score-ranker-processor supports only the rrf technique, got [{technique}]", 400, "illegal_argument_exception")
        return Pipeline(None, {}, "rrf", parameters.get("weights"), int(combination.get("rank_constant", 60)), explain)
    normalization = config.get("normalization", {})
    technique = normalization.get("technique", "min_max")
    combination_technique = combination.get("technique", "arithmetic_mean")
    if technique == "z_score" and combination_technique != "arithmetic_mean":
        raise EngineError("z_score needs combination technique [arithmetic_mean]", 400, "illegal_argument_exception")
    if technique == "rrf" or combination_technique == "rrf":
        raise EngineError("rrf belongs in a score-ranker-processor", 400, "illegal_argument_exception")
    return Pipeline(technique, normalization.get("parameters", {}) or {}, combination_technique, parameters.get("weights"), 60, explain)


@dataclass
class HybridHit:
    ordinal: int
    score: float
    raw: list[float | None] = field(default_factory=list)  # per sub-query, None where absent
    normalized: list[float | None] = field(default_factory=list)


def _push_filter(query: dict, filter_clause: dict | None) -> dict:
    if filter_clause is None:
        return query
    (name, body), = query.items()
    if name == "knn":
        (vector_field, params), = body.items()
        params = dict(params)
        existing = params.get("filter")
        params["filter"] = filter_clause if existing is None else {"bool": {"filter": [existing, filter_clause]}}
        return {"knn": {vector_field: params}}
    return {"bool": {"must": [query], "filter": [filter_clause]}}


def run_hybrid(executor: Executor, hybrid: dict, pipeline: Pipeline, *, from_: int, size: int) -> tuple[list[HybridHit], int]:
    """All combined hits (best first) and the total (documents returned by any sub-query)."""
    if not isinstance(hybrid, dict):
        raise EngineError("[hybrid] query malformed", 400, "parsing_exception")
    extra = set(hybrid) - {"queries", "pagination_depth", "filter", "boost", "_name"}
    if extra:
        raise UnsupportedQueryError(f"[hybrid] parameter(s) {sorted(extra)} are not supported by the embedded engine")
    if float(hybrid.get("boost", 1.0)) != 1.0:
        raise EngineError("[hybrid] query does not support [boost]", 400, "parsing_exception")
    queries = hybrid.get("queries") or []
    if not 1 <= len(queries) <= MAX_SUB_QUERIES:
        raise EngineError(f"[hybrid] number of sub-queries must be between 1 and {MAX_SUB_QUERIES}", 400, "parsing_exception")
    depth = hybrid.get("pagination_depth")
    if depth is None:
        if from_ > 0:
            raise EngineError("pagination_depth is missing in the search request", 400, "illegal_argument_exception")
        depth = from_ + size
    depth = int(depth)
    if not 1 <= depth <= 10_000:
        raise EngineError("pagination_depth should be in the range of 1 to 10000", 400, "illegal_argument_exception")
    if from_ >= depth:
        raise EngineError("Reached end of search result, increase pagination_depth value to see more results", 400, "illegal_argument_exception")
    lists = [executor.top(_push_filter(q, hybrid.get("filter")), depth, count=False)[0] for q in queries]
    n_sub = len(lists)
    if pipeline.weights is not None and len(pipeline.weights) != n_sub:
        raise EngineError(f"number of weights [{len(pipeline.weights)}] must match number of sub-queries [{n_sub}] in hybrid query", 400, "illegal_argument_exception")
    if pipeline.normalization is None:
        normalized = [rrf_rank_scores(len(lst.ords), pipeline.rank_constant) for lst in lists]
    else:
        try:
            normalized = normalize(pipeline.normalization, [lst.scores for lst in lists], pipeline.normalization_parameters)
        except ValueError as exc:
            raise EngineError(str(exc), 400, "illegal_argument_exception") from None
    all_ords = np.unique(np.concatenate([lst.ords for lst in lists])) if lists else np.empty(0, np.int64)
    position = {int(o): i for i, o in enumerate(all_ords)}
    table = np.zeros((len(all_ords), n_sub), dtype=np.float32)
    raw: list[list[float | None]] = [[None] * n_sub for _ in all_ords]
    norm: list[list[float | None]] = [[None] * n_sub for _ in all_ords]
    for j, (lst, values) in enumerate(zip(lists, normalized)):
        for o, r, v in zip(lst.ords, lst.scores, values):
            i = position[int(o)]
            table[i, j] = v
            raw[i][j], norm[i][j] = float(r), float(v)
    try:
        combined = combine(pipeline.combination, table, pipeline.weights)
    except ValueError as exc:
        raise EngineError(str(exc), 400, "illegal_argument_exception") from None
    order = np.lexsort((all_ords, -combined))
    hits = [HybridHit(int(all_ords[i]), float(combined[i]), raw[i], norm[i]) for i in order]
    return hits, len(all_ords)


def explanation(hit: HybridHit, pipeline: Pipeline) -> dict:
    """`_explanation` shaped like neural-search's hybrid_score_explanation response processor:
    combination → one detail per sub-query that returned the document → its raw score."""
    if pipeline.normalization is None:
        weights = f", weights {pipeline.weights}" if pipeline.weights else ""
        top = f"rrf{weights} combination of:"
        norm_desc = f"rrf, rank_constant [{pipeline.rank_constant}] normalization of:"
    else:
        weights = f", weights {pipeline.weights}" if pipeline.weights else ""
        top = f"{pipeline.combination}{weights} combination of:"
        norm_desc = f"{pipeline.normalization} normalization of:"
    details = []
    for j, (raw, norm) in enumerate(zip(hit.raw, hit.normalized)):
        if raw is None:
            continue
        details.append(
            {
                "value": norm,
                "description": norm_desc,
                "details": [{"value": raw, "description": f"sub-query [{j}] raw score", "details": []}],
            }
        )
    return {"value": hit.score, "description": top, "details": details}
