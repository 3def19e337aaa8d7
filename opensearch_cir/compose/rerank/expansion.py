"""`expansion` (SuperGlobal-style): refine the query with its nearest neighbours, then rerank.

SuperGlobal ("Global Features are All You Need for Image Retrieval and Reranking", ICCV 2023)
reranks the top-K with global features after refining the query descriptor by its top neighbours,
weighted by similarity. Here, with the current top `m`
candidates (the incoming order) as neighbours and w_j = max(cos(q, v_j), 0)^p:

    q' = norm(q + Σ_j w_j·v_j / Σ_j w_j)        (and the same for q_c with the neighbours' c_j)

then the candidates are rescored with `exact`'s caption-aware score using q' and q_c'. SuperGlobal's
database-side refinement (each candidate's descriptor averaged with its own neighbours) is not done:
it would need the neighbours of every candidate (K more searches).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import InputError
from .. import strategies as S
from .base import CAPTION_VECTOR_FIELD, IMAGE_FIELD, Candidate, RerankContext, Reranker, caption_aware, stacked
from .exact import caption_share


def expand(query: np.ndarray | None, neighbours: np.ndarray, present: np.ndarray, power: float) -> np.ndarray | None:
    """q' = norm(q + Σ w_j·n_j / Σ w_j), w_j = max(cos(q, n_j), 0)^power over the present neighbours."""
    if query is None or not present.any():
        return query
    q = S.normalize(query)
    rows = neighbours[present]
    weights = np.maximum(rows @ q, 0.0) ** power
    if weights.sum() <= 1e-12:
        return q
    return S.normalize(q + (weights[:, None] * rows).sum(axis=0) / weights.sum())


class Expansion(Reranker):
    """Neighbour-weighted query refinement, then exact rescoring (module docstring)."""

    name = "expansion"

    def __init__(self, *, blend: float | None = None, neighbours: int = 5, power: float = 3.0):
        super().__init__(blend=blend)
        if neighbours < 1:
            raise InputError(f"rerank expansion: neighbours must be ≥ 1, got {neighbours}")
        self.neighbours, self.power = int(neighbours), float(power)

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        top = list(candidates[: self.neighbours])
        images, image_present = stacked(top, IMAGE_FIELD)
        captions, caption_present = stacked(top, CAPTION_VECTOR_FIELD)
        image_query = expand(context.composed_vector(), images, image_present, self.power)
        caption_query = expand(context.caption_query(), captions, caption_present, self.power)
        return caption_aware(image_query, caption_query, candidates, caption_share(context))
