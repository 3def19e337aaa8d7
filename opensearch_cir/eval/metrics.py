"""Retrieval metrics, as the CIR protocols define them. Pure functions over ranked id lists.

A ranking is the list of result ids of one query, best first (the reference already removed);
`relevant` is the set of ids that count as hits for that query.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np


def first_hit_rank(ranking: Sequence[str], relevant: Collection[str]) -> float:
    """1-based rank of the first relevant id; `inf` when none is in the ranking."""
    for position, item in enumerate(ranking, start=1):
        if item in relevant:
            return float(position)
    return math.inf


def recall_at_k(rankings: Sequence[Sequence[str]], relevants: Sequence[Collection[str]], k: int) -> float:
    """Fraction of queries with at least one relevant id in the top k (CIRR / FashionIQ / Fashion200k)."""
    _check(rankings, relevants)
    return float(np.mean([first_hit_rank(r[:k], rel) <= k for r, rel in zip(rankings, relevants)]))


def median_rank(rankings: Sequence[Sequence[str]], relevants: Sequence[Collection[str]]) -> float:
    """Median over queries of the first relevant rank (1-based); `inf` counts when a query has none."""
    _check(rankings, relevants)
    return float(np.median([first_hit_rank(r, rel) for r, rel in zip(rankings, relevants)]))


def average_precision_at_k(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """CIRCO's AP@K = Σ_{i≤K} P@i · rel_i / min(K, |GT|) (0 when there is no ground truth)."""
    if not relevant:
        return 0.0
    hits = 0
    total = 0.0
    for position, item in enumerate(ranking[:k], start=1):
        if item in relevant:
            hits += 1
            total += hits / position
    return total / min(k, len(relevant))


def map_at_k(rankings: Sequence[Sequence[str]], relevants: Sequence[Collection[str]], k: int) -> float:
    """Mean of `average_precision_at_k` over queries."""
    _check(rankings, relevants)
    return float(np.mean([average_precision_at_k(r, rel, k) for r, rel in zip(rankings, relevants)]))


def recall_subset_at_k(
    rankings: Sequence[Sequence[str]],
    targets: Sequence[str],
    subsets: Sequence[Collection[str]],
    k: int,
) -> float:
    """CIRR Recall_subset@K: the ranking restricted to the query's image set (reference removed),
    hit when the target is within its first k. Each ranking must hold every subset member in its
    full-ranking order (the whole ranking, or the members alone): a truncated top-50 list would
    miss members ranked deeper (SEARLE `validate.py` masks the full sorted gallery)."""
    if not len(rankings) == len(targets) == len(subsets) or not rankings:
        raise ValueError("need the same, non-zero number of rankings, targets and subsets")
    hits = []
    for ranking, target, subset in zip(rankings, targets, subsets):
        restricted = [item for item in ranking if item in subset]
        hits.append(target in restricted[:k])
    return float(np.mean(hits))


def _check(rankings: Sequence, relevants: Sequence) -> None:
    if len(rankings) != len(relevants) or not rankings:
        raise ValueError(f"need the same, non-zero number of rankings and relevant sets ({len(rankings)} vs {len(relevants)})")
