"""Search pipeline bodies: the named ones shipped in `index_templates/search_pipelines/` and
builders for ad-hoc weights (a hybrid query needs one weight per sub-query).

    PIPELINES["cir-min-max"]   min_max + arithmetic_mean, weights [0.2, 0.5, 0.3]
    PIPELINES["cir-l2"]        l2 + arithmetic_mean
    PIPELINES["cir-z-score"]   z_score + arithmetic_mean (OpenSearch 3.0+)
    PIPELINES["cir-rrf"]       score-ranker-processor, rrf, rank_constant 60
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from ..resources import index_templates_dir

SEARCH_PIPELINES_DIR = "search_pipelines"
DEFAULT_PIPELINE = "cir-min-max"

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
) -> dict:
    """A `normalization-processor` pipeline body; `weights` (one per sub-query) are optional.

    lower_bounds / upper_bounds (min_max only, OpenSearch 3.0+ / 3.2+): one per sub-query,
    `{"mode": "apply"|"clip"|"ignore", "min_score": x}` / `{"mode": ..., "max_score": x}`.
    """
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
    rank_constant: int = 60, weights: Sequence[float] | None = None, *, description: str | None = None
) -> dict:
    """A `score-ranker-processor` (reciprocal rank fusion) pipeline body."""
    combination: dict = {"technique": "rrf", "rank_constant": int(rank_constant)}
    if weights is not None:
        combination["parameters"] = {"weights": [float(w) for w in weights]}
    return {
        "description": description or f"opensearch-cir: rrf, rank_constant {rank_constant}",
        "phase_results_processors": [{"score-ranker-processor": {"combination": combination}}],
    }


def pipeline_id(body: dict, prefix: str = "cir-adhoc-") -> str:
    """A stable id for a pipeline body (same body, same id), for registering ad-hoc weightings once."""
    processors = json.dumps(body.get("phase_results_processors", []), sort_keys=True, separators=(",", ":"))
    return prefix + hashlib.sha256(processors.encode()).hexdigest()[:16]
