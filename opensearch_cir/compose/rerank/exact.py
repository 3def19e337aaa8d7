"""`exact`: rescore the top-K exactly with the composed vector and the stored vectors.

The first stage ranks with HNSW (approximate) and, for `hybrid`, normalises each sub-query over its
own candidates. This reranker recomputes, for each of the K candidates, WeiMoCIR's caption-aware
score s_n = (1 − β)·cos(q, v_n) + β·cos(q_c, c_n) with the exact stored vectors (no graph error):
q = the strategy's composed vector, q_c = the vector the strategy compares with `caption_vector`
(E_T(rewritten caption) for hybrid, else q), β = the caption share (module `base`: `caption_aware`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Candidate, RerankContext, Reranker, caption_aware


def caption_share(context: RerankContext) -> float:
    """β: the hybrid's caption_knn share of its two k-NN sub-queries, else `weights.beta`."""
    weights = context.weights
    if context.strategy == "hybrid":
        total = weights.image + weights.caption
        return weights.caption / total if total > 0 else 0.5
    return weights.beta


class Exact(Reranker):
    """Exact caption-aware rescoring of the top-K (module docstring); `beta` overrides β."""

    name = "exact"

    def __init__(self, *, blend: float | None = None, beta: float | None = None):
        super().__init__(blend=blend)
        self.beta = beta

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        beta = caption_share(context) if self.beta is None else float(self.beta)
        return caption_aware(context.composed_vector(), context.caption_query(), candidates, beta)
