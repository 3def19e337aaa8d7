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
    phase: bool = True  # False: a pipeline without a phase results processor


NORMALIZATION_TECHNIQUES = ("min_max", "l2", "z_score")
COMBINATION_TECHNIQUES = ("arithmetic_mean", "geometric_mean", "harmonic_mean")
WEIGHTS_SUM_DELTA = 0.01  # neural-search ScoreCombinationUtil.DELTA_FOR_WEIGHTS_ASSERTION


def _invalid(message: str) -> EngineError:
    return EngineError(message, 400, "illegal_argument_exception")


def _weights(parameters: dict) -> list[float] | None:
    """Validated `weights` (neural-search ScoreCombinationUtil): numbers in [0, 1] summing to 1."""
    unknown = set(parameters) - {"weights"}
    if unknown:
        raise _invalid("provided parameter for combination technique is not supported. supported parameters are [weights]")
    if "weights" not in parameters:
        return None
    weights = parameters["weights"]
    if not isinstance(weights, list) or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise _invalid("parameter [weights] must be a collection of numbers")
    if any(not 0.0 <= w <= 1.0 for w in weights):
        raise _invalid(f"all weights must be in range [0.0 ... 1.0], submitted weights: {weights}")
    if abs(sum(weights) - 1.0) > WEIGHTS_SUM_DELTA:
        raise _invalid(f"sum of weights for combination must be equal to 1.0, submitted weights: {weights}")
    return [float(w) for w in weights]


def _rank_constant(combination: dict) -> int:
    value = combination.get("rank_constant", 60)
    try:
        value = int(str(value))
    except ValueError:
        raise _invalid("parameter [rank_constant] must be an integer") from None
    if not 1 <= value <= 10_000:
        raise _invalid(f"rank constant must be in the interval between 1 and 10000, submitted rank constant: {value}")
    return value


def _check_normalization(technique: str, parameters: dict) -> None:
    if technique not in NORMALIZATION_TECHNIQUES:
        raise _invalid("provided normalization technique is not supported")
    bounds = parameters.get("lower_bounds") or parameters.get("upper_bounds") or [{}]
    try:  # a dry run over one dummy list per bound validates parameters and bounds
        normalize(technique, [np.array([1.0, 0.5], dtype=np.float32)] * len(bounds), parameters or None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise _invalid(str(exc)) from None


def parse_pipeline(pipeline_id: str, body: dict) -> Pipeline:
    """Validate a search pipeline body as neural-search's processor factories do (400
    illegal_argument_exception); raise UnsupportedQueryError on processors the engine cannot run."""
    if not isinstance(body, dict):
        raise EngineError(f"search pipeline [{pipeline_id}]: body must be an object", 400, "parse_exception")
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
    if len(phase) > 1:
        raise UnsupportedQueryError(f"search pipeline [{pipeline_id}]: at most one phase results processor is supported, got {len(phase)}")
    if not phase:
        return Pipeline("min_max", {}, "arithmetic_mean", None, 60, explain, phase=False)
    (name, config), = phase[0].items()
    if name not in PHASE_PROCESSORS:
        raise UnsupportedQueryError(f"search pipeline [{pipeline_id}]: processor [{name}] is not supported by the embedded engine")
    extra = set(config) - {"normalization", "combination", "tag", "description", "ignore_failure"}
    if extra:
        raise EngineError(f"processor [{name}] doesn't support parameter(s) {sorted(extra)}", 400, "parse_exception")
    combination = config.get("combination", {}) or {}
    parameters = combination.get("parameters", {}) or {}
    if name == "score-ranker-processor":
        technique = combination.get("technique", "rrf")
        if technique != "rrf" or "normalization" in config:
            raise _invalid(f"score-ranker-processor supports only the rrf technique, got [{technique}]")
        return Pipeline(None, {}, "rrf", _weights(parameters), _rank_constant(combination), explain)
    normalization = config.get("normalization", {}) or {}
    technique = normalization.get("technique", "min_max")
    combination_technique = combination.get("technique", "arithmetic_mean")
    if combination_technique not in COMBINATION_TECHNIQUES:
        raise _invalid("provided combination technique is not supported")
    norm_parameters = normalization.get("parameters", {}) or {}
    _check_normalization(technique, norm_parameters)
    if technique == "z_score" and combination_technique != "arithmetic_mean":
        raise _invalid("z_score needs combination technique [arithmetic_mean]")
    return Pipeline(technique, norm_parameters, combination_technique, _weights(parameters), 60, explain)


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


def run_hybrid(executor: Executor, hybrid: dict, pipeline: Pipeline, *, from_: int, size: int, max_result_window: int = 10_000,
               count: bool = True) -> tuple[list[HybridHit], int | None]:
    """The first `from_ + size` (at least 1) combined hits, best first, of the top
    `pagination_depth` of each sub-query, and the total (every document any sub-query matches;
    None without `count`, as for `track_total_hits: false`)."""
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
    if depth < 0:  # HybridQueryBuilder / HybridQuery validation
        raise _invalid("pagination_depth should be greater than 0")
    if depth == 0:
        raise _invalid("pagination_depth must not be zero")
    if depth > max_result_window:
        raise _invalid("pagination_depth should be less than or equal to index.max_result_window setting")
    sub_queries = [_push_filter(q, hybrid.get("filter")) for q in queries]
    lists = [executor.top(q, depth, count=False)[0] for q in sub_queries]
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
    shape = (len(all_ords), n_sub)
    raw, norm, present = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    for j, (lst, values) in enumerate(zip(lists, normalized)):
        rows = np.searchsorted(all_ords, lst.ords)
        raw[rows, j], norm[rows, j], present[rows, j] = lst.scores, values, True
    try:
        combined = combine(pipeline.combination, norm.astype(np.float32), pipeline.weights)
    except ValueError as exc:
        raise EngineError(str(exc), 400, "illegal_argument_exception") from None
    order = np.lexsort((all_ords, -combined))
    if from_ > len(order):  # neural-search NormalizationProcessorWorkflow
        raise EngineError("Reached end of search result, increase pagination_depth value to see more results", 400, "illegal_argument_exception")
    hits = [HybridHit(int(all_ords[i]), float(combined[i]), _cells(raw[i], present[i]), _cells(norm[i], present[i]))
            for i in order[:max(from_ + size, 1)]]  # the page (and the best hit, for max_score)
    if not count:
        return hits, None
    complete = [lst.ords if len(lst.ords) < depth or _knn_within(query, depth) else None for lst, query in zip(lists, sub_queries)]
    return hits, _total_matches(executor, sub_queries, complete)


def _cells(values: np.ndarray, present: np.ndarray) -> list[float | None]:
    """Per sub-query values of one hit, None where the sub-query did not return it."""
    return [float(v) if p else None for v, p in zip(values, present)]


def _knn_within(query: dict, depth: int) -> bool:
    """Whether a knn sub-query's top `depth` are all its matches (its k results)."""
    (name, body), = query.items()
    if name != "knn":
        return False
    (_, params), = body.items()
    return "k" in params and int(params["k"]) <= depth


def _total_matches(executor: Executor, sub_queries: list[dict], complete: list[np.ndarray | None]) -> int:
    """`hits.total` of a hybrid query: every document some sub-query matches (a knn sub-query
    matches its k results), not only those within pagination_depth. A sub-query whose top results
    are all its matches (`complete`) is not run again; text sub-queries are counted by tantivy
    (their union, corrected for the other sub-queries' few matches) instead of scoring every match,
    which took ~25 ms of a 1 ms hybrid query on 40k captions."""
    texts, others = {}, np.zeros(executor.n, dtype=bool)  # texts: {index of a text sub-query: its tantivy query}
    for j, (query, ords) in enumerate(zip(sub_queries, complete)):
        if ords is not None:
            others[ords] = True
        elif (text_query := executor.text_query(query)) is not None:
            texts[j] = text_query
        else:
            others |= executor.matches(query)
    if texts:
        total = executor.text_union_count(list(texts.values()), others)
        if total is not None:
            return total
    for j in texts:
        others |= executor.matches(sub_queries[j])
    return int(others.sum())


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
