"""Hybrid-query score combination (neural-search `processor/combination/*`) and RRF rank scores."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

COMBINATION_TECHNIQUES = ("arithmetic_mean", "geometric_mean", "harmonic_mean", "rrf")
WEIGHTS_SUM_TOLERANCE = 0.01
MIN_RANK_CONSTANT, MAX_RANK_CONSTANT = 1, 10_000


def validate_weights(weights: Sequence[float] | None, n_subqueries: int, *, technique: str) -> np.ndarray:
    """Weights as a float32 array (all 1.0 when none are given); each in [0, 1], summing to 1 ± 0.01."""
    if not weights:
        return np.ones(n_subqueries, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    if len(w) != n_subqueries:
        raise ValueError(
            f"number of weights [{len(w)}] must match number of sub-queries [{n_subqueries}] in hybrid query"
        )
    if np.any(w < 0) or np.any(w > 1):
        raise ValueError("all weights must be in range [0.0 ... 1.0]")
    if technique != "rrf" and abs(float(w.astype(np.float64).sum()) - 1.0) > WEIGHTS_SUM_TOLERANCE:
        raise ValueError(f"sum of weights for combination must be equal to 1.0, got {float(w.sum())}")
    return w


def combine(technique: str, scores: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Combine normalised scores [n_docs, n_subqueries] into one score per document.

    A document a sub-query did not return has 0.0 there: arithmetic_mean counts it with full weight,
    geometric_mean and harmonic_mean skip it (they use only scores > 0). `rrf` sums Σ wᵢ·sᵢ.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    w = validate_weights(weights, scores.shape[1], technique=technique)
    if technique in ("arithmetic_mean", "rrf"):
        used = scores >= 0
        total = np.where(used, scores * w, 0).sum(axis=1, dtype=np.float32)
        weight_sum = np.where(used, w, 0).sum(axis=1, dtype=np.float32)
        if technique == "rrf":
            return np.where(weight_sum > 0, total, 0).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(weight_sum > 0, total / weight_sum, 0).astype(np.float32)
    used = scores > 0
    weight_sum = np.where(used, w, 0).sum(axis=1, dtype=np.float32)
    safe = np.where(used, scores, 1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if technique == "geometric_mean":
            log_sum = np.where(used, w * np.log(safe), 0).sum(axis=1)
            combined = np.exp(log_sum / weight_sum)
        elif technique == "harmonic_mean":
            combined = weight_sum / np.where(used, w / safe, 0).sum(axis=1)
        else:
            raise ValueError(f"unknown combination technique {technique!r}; expected one of {COMBINATION_TECHNIQUES}")
    return np.where(weight_sum > 0, combined, 0).astype(np.float32)


def rrf_rank_scores(n: int, rank_constant: int = 60) -> np.ndarray:
    """1 / (rank_constant + rank) for ranks 1..n, rounded to 10 decimals HALF_UP, as float32."""
    if not MIN_RANK_CONSTANT <= int(rank_constant) <= MAX_RANK_CONSTANT:
        raise ValueError(
            f"rank constant must be in the interval between 1 and 10000, submitted rank constant: {rank_constant}"
        )
    quantum = Decimal("1e-10")
    return np.array(
        [float((Decimal(1) / Decimal(rank_constant + rank)).quantize(quantum, ROUND_HALF_UP)) for rank in range(1, n + 1)],
        dtype=np.float32,
    )
