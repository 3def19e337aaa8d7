"""Hybrid-query score normalisation (neural-search `processor/normalization/*`).

Each function takes one array of raw scores per sub-query (the documents that sub-query returned)
and returns the normalised arrays in the same order. Arithmetic is float32, as upstream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NORMALIZATION_TECHNIQUES = ("min_max", "l2", "z_score")
BOUND_MODES = ("apply", "clip", "ignore")
MIN_NORMALIZED_SCORE = np.float32(0.001)
_MAX_BOUND = 10_000.0
_f32 = np.float32


class _Bound:
    """LowerBound.java / UpperBound.java: an optional per-sub-query bound on min_max."""

    def __init__(self, spec: Mapping | None, *, lower: bool):
        self.enabled = spec is not None
        self.lower = lower
        spec = spec or {}
        unknown = set(spec) - {"mode", "min_score" if lower else "max_score"}
        if unknown:
            raise ValueError(f"unsupported {'lower' if lower else 'upper'} bound parameter(s) {sorted(unknown)}")
        mode = str(spec.get("mode") or "apply").lower()
        if mode not in BOUND_MODES:
            raise ValueError(f"invalid mode: {mode}, valid values are: {', '.join(BOUND_MODES)}")
        self.mode = mode
        key = "min_score" if lower else "max_score"
        self.score = _f32(float(spec.get(key, 0.0 if lower else 1.0)))
        if not -_MAX_BOUND <= float(self.score) <= _MAX_BOUND:
            raise ValueError(f"{key} must be between -10000.0 and 10000.0")

    def effective(self, score, lo, hi):
        if not self.enabled or self.mode == "ignore":
            return lo if self.lower else hi
        if self.lower:
            if self.mode == "apply":
                return self.score if (hi > self.score and score > self.score) else lo
            return lo if hi < self.score else self.score  # clip
        if self.mode == "apply":
            return self.score if (lo < self.score and score < self.score) else hi
        return hi if lo > self.score else self.score  # clip

    def clips(self, score, effective) -> bool:
        if not (self.enabled and self.mode == "clip"):
            return False
        return score < effective if self.lower else score > effective


def _bounds(specs: Sequence[Mapping] | None, n: int, *, lower: bool) -> list[_Bound]:
    if specs is None:
        return [_Bound(None, lower=lower) for _ in range(n)]
    if len(specs) != n:
        raise ValueError(
            f"expected bounds array to contain {n} elements matching the number of sub-queries, but found a mismatch"
        )
    return [_Bound(spec, lower=lower) for spec in specs]


def min_max(
    score_lists: Sequence[np.ndarray],
    lower_bounds: Sequence[Mapping] | None = None,
    upper_bounds: Sequence[Mapping] | None = None,
) -> list[np.ndarray]:
    """(s − min)/(max − min) per sub-query; a single distinct score gives 1.0; an exact 0 gives 0.001.

    `lower_bounds` / `upper_bounds`: one `{"mode": apply|clip|ignore, "min_score"|"max_score": x}` per
    sub-query (MinMaxScoreNormalizationTechnique with LowerBound / UpperBound).
    """
    lows = _bounds(lower_bounds, len(score_lists), lower=True)
    highs = _bounds(upper_bounds, len(score_lists), lower=False)
    out = []
    for scores, low, high in zip(score_lists, lows, highs):
        scores = np.asarray(scores, dtype=np.float32)
        if scores.size == 0:
            out.append(scores)
            continue
        lo, hi = scores.min(), scores.max()
        if not (low.enabled or high.enabled):  # the common case, vectorised
            if hi == lo:
                out.append(np.ones_like(scores))
            else:
                values = (scores - lo) / (hi - lo)
                out.append(np.where(values == 0, MIN_NORMALIZED_SCORE, values).astype(np.float32))
            continue
        normalized = np.empty_like(scores)
        for i, s in enumerate(scores):
            if hi == lo and hi == s:
                normalized[i] = 1.0
                continue
            eff_lo, eff_hi = low.effective(s, lo, hi), high.effective(s, lo, hi)
            if low.clips(s, eff_lo):
                normalized[i] = MIN_NORMALIZED_SCORE
            elif high.clips(s, eff_hi):
                normalized[i] = 1.0
            elif eff_hi == eff_lo:
                normalized[i] = 1.0
            else:
                value = (s - _f32(eff_lo)) / (_f32(eff_hi) - _f32(eff_lo))
                normalized[i] = MIN_NORMALIZED_SCORE if value == 0.0 else value
        out.append(normalized)
    return out


def l2(score_lists: Sequence[np.ndarray]) -> list[np.ndarray]:
    """s / sqrt(Σ s²) per sub-query; 0 where the norm is 0."""
    out = []
    for scores in score_lists:
        scores = np.asarray(scores, dtype=np.float32)
        norm = _f32(np.sqrt(np.sum(scores.astype(np.float64) ** 2)))
        out.append(scores / norm if norm > 0 else np.zeros_like(scores))
    return out


def z_score(score_lists: Sequence[np.ndarray]) -> list[np.ndarray]:
    """(s − mean)/std with the sample std (n−1), with the upstream quirks.

    s == mean → that sub-query's max raw score; std == 0 → its min raw score; a result ≤ 0 → 0.001.
    """
    out = []
    for scores in score_lists:
        scores = np.asarray(scores, dtype=np.float32)
        if scores.size == 0:
            out.append(scores)
            continue
        values = scores.astype(np.float64)
        mean = _f32(values.mean())
        std = _f32(values.std(ddof=1)) if values.size > 1 else _f32(0.0)
        normalized = np.empty_like(scores)
        for i, s in enumerate(scores):
            if s == mean:
                normalized[i] = _f32(values.max())
            elif std == 0:
                normalized[i] = _f32(values.min())
            else:
                value = (s - mean) / std
                normalized[i] = MIN_NORMALIZED_SCORE if value <= 0 else value
        out.append(normalized)
    return out


def normalize(technique: str, score_lists: Sequence[np.ndarray], parameters: Mapping | None = None) -> list[np.ndarray]:
    """Dispatch on the `normalization.technique` name of a normalization-processor."""
    parameters = dict(parameters or {})
    if technique == "min_max":
        unknown = set(parameters) - {"lower_bounds", "upper_bounds"}
        if unknown:
            raise ValueError(f"unsupported min_max parameter(s) {sorted(unknown)}")
        return min_max(score_lists, parameters.get("lower_bounds"), parameters.get("upper_bounds"))
    if parameters:
        raise ValueError(f"normalization technique {technique!r} takes no parameters, got {sorted(parameters)}")
    if technique == "l2":
        return l2(score_lists)
    if technique == "z_score":
        return z_score(score_lists)
    raise ValueError(f"unknown normalization technique {technique!r}; expected one of {NORMALIZATION_TECHNIQUES}")
