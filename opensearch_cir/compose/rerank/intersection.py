"""`intersection` (SETR-style): keep the candidates both modalities agree on, then rank by the composed score.

SETR retrieves candidates with the reference image and with the modification text separately and
keeps those both sides agree on (their intersection) before a multimodal LLM re-ranks them. Here,
within the K first-stage candidates: the image side ranks them by cos(E_I(ref), v_n), the text side
by cos(q_text, c_n) (q_text = E_T(rewritten caption), else E_T(T); `image_vector` when a candidate has
no caption vector). A candidate is *agreed* when it is in the top `keep`·K of both sides. Own score
= agreed (1 or 0) + min-max(composed caption-aware score, as `exact`): agreed candidates first, each
group in composed-score order. Nothing is dropped (a demoted candidate can still count for R@50).
A query without a reference image or without a text has one side only: the order is the composed score.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import InputError
from .base import CAPTION_VECTOR_FIELD, IMAGE_FIELD, Candidate, RerankContext, Reranker, caption_aware, cosine, minmax
from .exact import caption_share


def agreement(image_scores: np.ndarray, text_scores: np.ndarray, keep: int) -> np.ndarray:
    """1.0 where a candidate is within the top `keep` of both score lists (NaN never qualifies)."""
    def top(scores: np.ndarray) -> np.ndarray:
        order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
        mask = np.zeros(len(scores), bool)
        mask[order[:keep]] = True
        return mask & np.isfinite(scores)
    return (top(image_scores) & top(text_scores)).astype(np.float64)


class Intersection(Reranker):
    """SETR-style agreement filter, then the composed score (module docstring)."""

    name = "intersection"

    def __init__(self, *, blend: float | None = None, keep: float = 0.5):
        super().__init__(blend=blend)
        if not 0.0 < keep <= 1.0:
            raise InputError(f"rerank intersection: keep must be in (0, 1], got {keep}")
        self.keep = float(keep)

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        composed = caption_aware(context.composed_vector(), context.caption_query(), candidates, caption_share(context))
        prepared = context.prepared
        text_query = context.text_side()
        if prepared.image is None or text_query is None:
            return composed
        image_side = cosine(prepared.image, candidates, IMAGE_FIELD)
        text_side = cosine(text_query, candidates, CAPTION_VECTOR_FIELD)
        text_side = np.where(np.isfinite(text_side), text_side, cosine(text_query, candidates, IMAGE_FIELD))
        keep = max(1, int(round(self.keep * len(candidates))))
        return agreement(image_side, text_side, keep) + minmax(composed)
