"""What every reranker shares: the candidates, the query context, and the blend with the incoming order.

A reranker sees the top-K candidates of the previous stage (the first-stage search, or the previous
reranker of a chain), each with its score and its stored vectors, and returns them re-scored:

    final_n = (1 − γ)·minmax(incoming_n) + γ·minmax(own_n)

γ = `blend` (1: the reranker's own score alone; 0: no change). Min-max runs over the K candidates, so
scores of different scales (BM25 + k-NN hybrid scores, cosines) combine. Candidates a reranker cannot
score (a missing vector) keep the lowest own score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import InputError
from .. import strategies as S
from ..query import CAPTION_VECTOR_FIELD, IMAGE_FIELD

VECTOR_FIELDS = (IMAGE_FIELD, CAPTION_VECTOR_FIELD)


@dataclass
class Candidate:
    """One candidate: its id, current score, and what the engine returned for it."""

    id: str
    score: float
    caption: Any = None
    image_uri: str | None = None
    metadata: dict = field(default_factory=dict)
    image_vector: np.ndarray | None = None
    caption_vector: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)  # each reranker's own score, for explain


@dataclass
class RerankContext:
    """The query side: the prepared query, its strategy and weights, and the encoder (for new texts)."""

    prepared: Any  # compose.query.PreparedQuery
    strategy: str
    weights: Any  # compose.query.Weights
    encoder: Any = None
    encoded: dict[str, np.ndarray] = field(default_factory=dict)  # texts encoded for this query (reused on re-runs)

    def encode_texts(self, texts: Sequence[str]) -> list[np.ndarray]:
        """E_T of `texts`, each encoded once per query however often the chain or an evaluation asks."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.encoded]
        if missing:
            self.encoded.update(zip(missing, self.encoder.encode_texts(missing)))
        return [self.encoded[t] for t in texts]

    def composed_vector(self) -> np.ndarray | None:
        """The query's composed image-side vector (what its strategy searches `image_vector` with);
        for `caption_aware` the fusion vector, for `hybrid` its composed vector, for `bm25` E_T(r)."""
        prepared = self.prepared
        if self.strategy == "hybrid":
            return prepared._hybrid_vector(self.weights)
        if self.strategy == "bm25":
            return None if prepared.rewritten is None else prepared._negated(prepared.rewritten, self.weights)
        return prepared.vector(self.strategy, self.weights)

    def caption_query(self) -> np.ndarray | None:
        """The vector compared with `caption_vector`: E_T(rewritten caption) for hybrid/bm25 (what the
        hybrid's caption_knn uses), else the composed vector (WeiMoCIR's caption-aware score)."""
        prepared = self.prepared
        if self.strategy in ("hybrid", "bm25") and prepared.rewritten is not None:
            return prepared._negated(prepared.rewritten, self.weights)
        return self.composed_vector()

    def text_side(self) -> np.ndarray | None:
        """The text-side query alone: E_T(rewritten caption) when there is one, else E_T(T)."""
        prepared = self.prepared
        vector = prepared.rewritten if prepared.rewritten is not None else prepared.text
        return None if vector is None else prepared._negated(vector, self.weights)


class Reranker:
    """Base class: subclasses set `name` and implement `own_scores`; `blend` is γ (module docstring)."""

    name = "reranker"
    default_blend = 1.0

    def __init__(self, *, blend: float | None = None):
        self.blend = self.default_blend if blend is None else float(blend)
        if not 0.0 <= self.blend <= 1.0:
            raise InputError(f"rerank {self.name}: blend must be in [0, 1], got {self.blend}")

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        """One score per candidate (higher is better); NaN where the candidate cannot be scored."""
        raise NotImplementedError

    def __call__(self, context: RerankContext, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates re-scored (module docstring's rule) and sorted best first (stable on ties)."""
        if not candidates:
            return candidates
        own = np.asarray(self.own_scores(context, candidates), np.float64)
        if own.shape != (len(candidates),):
            raise InputError(f"rerank {self.name}: expected {len(candidates)} scores, got shape {own.shape}")
        for candidate, value in zip(candidates, own):
            candidate.scores[self.name] = None if np.isnan(value) else float(value)
        incoming = np.asarray([c.score for c in candidates], np.float64)
        final = (1.0 - self.blend) * minmax(incoming) + self.blend * minmax(own)
        for candidate, value in zip(candidates, final):
            candidate.score = float(value)
        order = sorted(range(len(candidates)), key=lambda i: -final[i])
        return [candidates[i] for i in order]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(blend={self.blend})"


def minmax(values: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min) over the finite values; NaN → 0; all equal → 1 (no information)."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    low, high = values[finite].min(), values[finite].max()
    scaled = np.ones_like(values) if high - low < 1e-12 else (values - low) / (high - low)
    return np.where(finite, scaled, 0.0)


def stacked(candidates: Sequence[Candidate], attribute: str) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' `attribute` vectors as one [N, D] matrix (zeros where missing) and a mask of present ones."""
    present = np.asarray([getattr(c, attribute) is not None for c in candidates])
    if not present.any():
        return np.zeros((len(candidates), 0), np.float32), present
    dim = next(len(getattr(c, attribute)) for c in candidates if getattr(c, attribute) is not None)
    matrix = np.zeros((len(candidates), dim), np.float32)
    for row, candidate in enumerate(candidates):
        if present[row]:
            matrix[row] = getattr(candidate, attribute)
    return matrix, present


def cosine(query: np.ndarray | None, candidates: Sequence[Candidate], attribute: str) -> np.ndarray:
    """cos(query, candidate vector) per candidate (stored vectors are unit length); NaN where missing."""
    result = np.full(len(candidates), np.nan)
    if query is None:
        return result
    matrix, present = stacked(candidates, attribute)
    if present.any():
        result[present] = matrix[present] @ S.normalize(query)
    return result


def caption_aware(image_query: np.ndarray | None, caption_query: np.ndarray | None,
                  candidates: Sequence[Candidate], beta: float) -> np.ndarray:
    """WeiMoCIR's s_n = (1 − β)·cos(q, v_n) + β·cos(q_c, c_n); a side a candidate lacks is left out."""
    image = cosine(image_query, candidates, IMAGE_FIELD)
    caption = cosine(caption_query, candidates, CAPTION_VECTOR_FIELD)
    both = np.isfinite(image) & np.isfinite(caption)
    return np.where(both, (1 - beta) * image + beta * caption, np.where(np.isfinite(image), image, caption))
