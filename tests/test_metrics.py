"""Metrics against hand-computed values."""

import math

import pytest

from opensearch_cir.eval.metrics import (
    average_precision_at_k,
    first_hit_rank,
    map_at_k,
    median_rank,
    recall_at_k,
    recall_subset_at_k,
)

RANKINGS = [["a", "b", "c", "d"], ["x", "y", "z", "w"], ["p", "q", "r", "s"]]
RELEVANT = [{"c"}, {"x"}, {"nope"}]


def test_first_hit_rank():
    assert first_hit_rank(["a", "b", "c"], {"c", "b"}) == 2
    assert first_hit_rank(["a"], {"z"}) == math.inf


@pytest.mark.parametrize("k, expected", [(1, 1 / 3), (2, 1 / 3), (3, 2 / 3), (4, 2 / 3)])
def test_recall_at_k(k, expected):
    assert recall_at_k(RANKINGS, RELEVANT, k) == pytest.approx(expected)


def test_median_rank_counts_misses_as_infinite():
    # ranks 3, 1, inf -> median 3
    assert median_rank(RANKINGS, RELEVANT) == 3
    assert median_rank(RANKINGS[:2], RELEVANT[:2]) == 2  # (3 + 1) / 2


def test_average_precision_circo_definition():
    # hits at ranks 1 and 3 of K=5, 3 ground truths: (1/1 + 2/3) / min(5, 3)
    assert average_precision_at_k(["g1", "n", "g2", "n2", "n3"], {"g1", "g2", "g3"}, 5) == pytest.approx((1 + 2 / 3) / 3)
    # K smaller than |GT|: divide by K. hit at rank 2 only: (1/2) / 2
    assert average_precision_at_k(["n", "g1", "n2"], {"g1", "g2", "g3"}, 2) == pytest.approx(0.25)
    assert average_precision_at_k(["n"], set(), 5) == 0.0


def test_map_at_k():
    rankings = [["g", "n"], ["n", "g"]]
    relevant = [{"g"}, {"g"}]
    assert map_at_k(rankings, relevant, 2) == pytest.approx((1 + 0.5) / 2)


def test_recall_subset():
    rankings = [["o1", "t", "s1", "s2"], ["s1", "s2", "o", "t"]]
    targets = ["t", "t"]
    subsets = [{"t", "s1", "s2"}, {"t", "s1", "s2"}]
    assert recall_subset_at_k(rankings, targets, subsets, 1) == pytest.approx(0.5)  # first: t is 1st in subset
    assert recall_subset_at_k(rankings, targets, subsets, 3) == pytest.approx(1.0)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        recall_at_k(RANKINGS, RELEVANT[:1], 1)
