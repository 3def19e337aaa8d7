"""`clauses` (NDCR-style): split the modification into clauses and combine each clause's evidence.

NDCR (neural divide-and-conquer reasoning for complex modification texts) decomposes the text into
propositions, scores each against the candidates and combines them. Here:

1. The modification is split into clauses on ",", ";", "and", "but", "also" (the caption rewriter's
   split: "in red and without the hood" → "in red", "without the hood").
2. A clause is *negated* when it starts with without / no / not / remove / minus / take off / drop /
   lose / don't want; its proposition is the thing named ("the hood"). A positive clause's proposition
   is the reference caption rewritten with that clause alone ("Puma Men's Red T-shirt"), or the clause
   itself when there is no caption.
3. Evidence e_j(n) = cos(E_T(proposition_j), c_n) (the candidate's caption vector; its image vector
   when it has none), min-max normalised over the K candidates per clause.
4. **Rule**: own_n = mean over positive clauses of e_j(n) − mean over negated clauses of e_j(n)
   (a candidate that matches a negated clause loses), blended with the incoming score by γ.
A query without text has no clauses: the order is left unchanged.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..rewrite import rewrite_caption, split_clauses
from .base import CAPTION_VECTOR_FIELD, IMAGE_FIELD, Candidate, RerankContext, Reranker, cosine, minmax

_NEGATION = re.compile(r"^(?:without|no|not|remove|minus|take\s+off|drop|lose|don'?t\s+want|do\s+not\s+want)\s+(.+)$", re.I)


def propositions(caption: str | None, modification: str) -> list[tuple[str, bool]]:
    """[(proposition, negated)] of `modification` (module docstring, steps 1–2)."""
    result = []
    for clause in split_clauses(modification):
        negated = _NEGATION.match(clause)
        if negated:
            result.append((re.sub(r"^(?:a|an|the|any)\s+", "", negated.group(1), flags=re.I), True))
        elif caption:
            result.append((rewrite_caption(caption, clause).text or clause, False))
        else:
            result.append((clause, False))
    return result


def combine(evidence: np.ndarray, negated: Sequence[bool]) -> np.ndarray:
    """The module's rule over [clauses, candidates] evidence: mean(positive) − mean(negated)."""
    negated = np.asarray(negated, bool)
    total = np.zeros(evidence.shape[1])
    if (~negated).any():
        total += evidence[~negated].mean(axis=0)
    if negated.any():
        total -= evidence[negated].mean(axis=0)
    return total


class Clauses(Reranker):
    """Clause-wise evidence (module docstring); needs the encoder for the propositions."""

    name = "clauses"
    default_blend = 0.5

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        prepared = context.prepared
        parts = propositions(prepared.caption, prepared.query.text)
        if not parts or context.encoder is None:
            return np.zeros(len(candidates))
        vectors = context.encode_texts([text for text, _ in parts])
        evidence = []
        for vector in vectors:
            scores = cosine(vector, candidates, CAPTION_VECTOR_FIELD)
            scores = np.where(np.isfinite(scores), scores, cosine(vector, candidates, IMAGE_FIELD))
            evidence.append(minmax(scores))
        return combine(np.asarray(evidence), [negated for _, negated in parts])
