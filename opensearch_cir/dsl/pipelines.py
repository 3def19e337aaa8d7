"""Search pipeline bodies: the named ones shipped in `index_templates/search_pipelines/` and
builders for ad-hoc weights (a hybrid query needs one weight per sub-query).

    PIPELINES["cir-min-max"]   min_max + arithmetic_mean, weights [0.2, 0.5, 0.3]
    PIPELINES["cir-l2"]        l2 + arithmetic_mean
    PIPELINES["cir-z-score"]   z_score + arithmetic_mean (OpenSearch 3.0+)
    PIPELINES["cir-rrf"]       score-ranker-processor, rrf (rank_constant: the default, 60)

The builders take the cluster's `Dialect` (default: the latest version's rules) and emit the body
that version accepts, or raise `UnsupportedFeatureError` naming the first version with the feature.
`for_dialect(PIPELINES, dialect)` is what `cir setup` puts: the bodies a version accepts, and why
the others are skipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from ..dialect import Dialect, UnsupportedFeatureError, latest
from ..resources import index_templates_dir

SEARCH_PIPELINES_DIR = "search_pipelines"
DEFAULT_PIPELINE = "cir-min-max"
DEFAULT_RANK_CONSTANT = 60
EQUAL_WEIGHT_TOLERANCE = 1e-3  # weights rounded to 4 decimals summing to 1 (1/3 -> 0.3333, 0.3334)

NORMALIZATIONS = ("min_max", "l2", "z_score")
COMBINATIONS = ("arithmetic_mean", "geometric_mean", "harmonic_mean")


def load_search_pipelines(folder: Path | None = None) -> dict[str, dict]:
    """Every `*.json` in `index_templates/search_pipelines/`, keyed by file stem (the pipeline id)."""
    folder = folder or index_templates_dir() / SEARCH_PIPELINES_DIR
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


PIPELINES: dict[str, dict] = load_search_pipelines()


def normalization_pipeline(
    normalization: str = "min_max",
    combination: str = "arithmetic_mean",
    weights: Sequence[float] | None = None,
    *,
    lower_bounds: Sequence[dict] | None = None,
    upper_bounds: Sequence[dict] | None = None,
    description: str | None = None,
    dialect: Dialect | None = None,
) -> dict:
    """A `normalization-processor` pipeline body; `weights` (one per sub-query) are optional and
    kept for every technique (z_score combines with a weighted arithmetic mean on 3.x too).

    lower_bounds / upper_bounds (min_max only, OpenSearch 3.0+ / 3.2+): one per sub-query,
    `{"mode": "apply"|"clip"|"ignore", "min_score": x}` / `{"mode": ..., "max_score": x}`.
    """
    dialect = dialect or latest()
    if normalization == "z_score":
        dialect.require("z_score")
    if lower_bounds is not None:
        dialect.require("min_max_lower_bounds")
    if upper_bounds is not None:
        dialect.require("min_max_upper_bounds")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if combination not in COMBINATIONS:
        raise ValueError(f"combination must be one of {COMBINATIONS}, got {combination!r}")
    combination_body: dict = {"technique": combination}
    if weights is not None:
        combination_body["parameters"] = {"weights": [float(w) for w in weights]}
    normalization_body: dict = {"technique": normalization}
    bounds = {"lower_bounds": lower_bounds, "upper_bounds": upper_bounds}
    if any(value is not None for value in bounds.values()):
        normalization_body["parameters"] = {key: list(value) for key, value in bounds.items() if value is not None}
    processor = {"normalization": normalization_body, "combination": combination_body}
    return {
        "description": description or f"opensearch-cir: {normalization} + {combination}",
        "phase_results_processors": [{"normalization-processor": processor}],
    }


def rrf_pipeline(
    rank_constant: int | None = None,
    weights: Sequence[float] | None = None,
    *,
    description: str | None = None,
    dialect: Dialect | None = None,
) -> dict:
    """A `score-ranker-processor` (reciprocal rank fusion) pipeline body, as the dialect reads it.

    rank_constant None leaves the cluster's default (60), a body every version reads alike.
    3.1+: `combination.rank_constant` and `combination.parameters.weights`. 2.19 and 3.0 read
    rank_constant only from `combination.parameters` and reject weights there; equal weights are
    plain RRF and are dropped, unequal ones are refused (neural-search RRFProcessorFactory.java).
    """
    dialect = dialect or latest()
    combination: dict = {"technique": "rrf"}
    if weights is not None and max(weights) - min(weights) <= EQUAL_WEIGHT_TOLERANCE and not dialect.supports("rrf_weights"):
        weights = None  # equal weights (up to rounding to a unit sum): the unweighted sum 2.19/3.0 compute anyway
    if weights is not None:
        dialect.require("rrf_weights", "weighted RRF (unequal sub-query weights with rrf)")
    if dialect.supports("rrf_weights"):
        if rank_constant is not None:
            combination["rank_constant"] = int(rank_constant)
        if weights is not None:
            combination["parameters"] = {"weights": [float(w) for w in weights]}
    elif rank_constant is not None:
        combination["parameters"] = {"rank_constant": int(rank_constant)}
    return {
        "description": description or f"opensearch-cir: rrf, rank_constant {rank_constant or DEFAULT_RANK_CONSTANT}",
        "phase_results_processors": [{"score-ranker-processor": {"combination": combination}}],
    }


def for_dialect(pipelines: dict[str, dict], dialect: Dialect) -> tuple[dict[str, dict], dict[str, str]]:
    """(the pipelines `dialect` accepts, re-rendered where needed; {id: why skipped} for the others)."""
    accepted: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for name, body in pipelines.items():
        try:
            accepted[name] = _rerender(body, dialect)
        except UnsupportedFeatureError as exc:
            skipped[name] = str(exc)
    return accepted, skipped


def _rerender(body: dict, dialect: Dialect) -> dict:
    """`body` built again with the dialect's builder (same technique, weights, bounds, rank constant)."""
    (name, config), = body["phase_results_processors"][0].items()
    combination = config.get("combination", {})
    parameters = combination.get("parameters") or {}
    if name == "score-ranker-processor":
        rank_constant = combination.get("rank_constant", parameters.get("rank_constant"))
        return rrf_pipeline(rank_constant, parameters.get("weights"), description=body.get("description"),
                            dialect=dialect)
    normalization = config.get("normalization", {})
    bounds = normalization.get("parameters") or {}
    return normalization_pipeline(
        normalization.get("technique", "min_max"), combination.get("technique", "arithmetic_mean"),
        parameters.get("weights"), lower_bounds=bounds.get("lower_bounds"), upper_bounds=bounds.get("upper_bounds"),
        description=body.get("description"), dialect=dialect,
    )


def pipeline_id(body: dict, prefix: str = "cir-adhoc-") -> str:
    """A stable id for a pipeline body (same body, same id), for registering ad-hoc weightings once."""
    processors = json.dumps(body.get("phase_results_processors", []), sort_keys=True, separators=(",", ":"))
    return prefix + hashlib.sha256(processors.encode()).hexdigest()[:16]
