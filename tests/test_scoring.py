"""Scoring functions against the golden values of docs/opensearch-semantics.md (upstream unit tests)."""

import math

import numpy as np
import pytest

from opensearch_cir.scoring import (
    bm25_idf,
    bm25_score,
    byte4_to_int,
    combine,
    int_to_byte4,
    knn_score,
    l2,
    min_max,
    normalize,
    raw_similarity,
    rrf_rank_scores,
    z_score,
)

QUERY = np.array([1.0, 0.5, 0.0], dtype=np.float32)
DOCS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)


@pytest.mark.parametrize(
    "space, expected",
    [
        ("l2", [0.8, 0.4444, 0.8]),
        ("cosinesimil", [0.9472, 0.7236, 0.9743]),
        ("innerproduct", [2.0, 1.5, 2.5]),
    ],
)
def test_knn_scores_match_lucene_on_three_vectors(space, expected):
    scores = knn_score(raw_similarity(QUERY, DOCS, space), space)
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_knn_score_edge_cases():
    assert knn_score(-1.0, "innerproduct") == pytest.approx(0.5)  # 1 / (1 - dot)
    assert knn_score(-1.0, "cosinesimil") == 0.0  # (1 + cos) / 2 floored at 0
    assert knn_score(3.0, "hamming") == pytest.approx(0.25)
    bits = raw_similarity(np.array([0b1010_0000], np.uint8), np.array([[0b0110_0000]], np.uint8), "hamming")
    assert bits[0] == 2
    with pytest.raises(ValueError):
        knn_score(1.0, "manhattan")


def test_combination_golden_values_with_missing_subquery():
    scores = np.array([[1.0, 0.0, 0.6]])
    weights = [0.45, 0.15, 0.4]
    assert combine("arithmetic_mean", scores, weights)[0] == pytest.approx(0.69, abs=1e-4)
    assert combine("geometric_mean", scores, weights)[0] == pytest.approx(0.7863, abs=1e-4)
    assert combine("harmonic_mean", scores, weights)[0] == pytest.approx(0.7611, abs=1e-4)


def test_combination_golden_values_all_present():
    # upstream GeometricMean/HarmonicMean tests use weights [.45, .15, .4] here (the semantics doc
    # says "equal weights"; with equal weights the means would be 0.5313 and 0.4737).
    scores = np.array([[1.0, 0.5, 0.3]])
    weights = [0.45, 0.15, 0.4]
    assert combine("geometric_mean", scores, weights)[0] == pytest.approx(0.5567, abs=1e-4)
    assert combine("harmonic_mean", scores, weights)[0] == pytest.approx(0.48, abs=1e-4)
    assert combine("arithmetic_mean", np.array([[1.0, 0.5, 0.3]]))[0] == pytest.approx(0.6, abs=1e-6)


def test_combination_rejects_bad_weights():
    with pytest.raises(ValueError, match="sum of weights"):
        combine("arithmetic_mean", np.array([[1.0, 0.5]]), [0.5, 0.6])
    with pytest.raises(ValueError, match="number of weights"):
        combine("arithmetic_mean", np.array([[1.0, 0.5]]), [1.0])
    with pytest.raises(ValueError, match="range"):
        combine("harmonic_mean", np.array([[1.0, 0.5]]), [1.5, -0.5])


def test_rrf_rank_scores_are_rounded_half_up_to_ten_decimals():
    scores = rrf_rank_scores(3, 60)
    np.testing.assert_allclose(scores, [0.0163934426, 0.0161290323, 0.0158730159], rtol=0, atol=1e-9)
    # 1/8 = 0.125 exactly; 1/3 rounds down at the 10th decimal, 2/3-like values round up
    assert rrf_rank_scores(1, 2)[0] == np.float32(0.3333333333)
    fused = combine("rrf", np.array([[scores[0], scores[2]], [0.0, scores[0]]]), [1.0, 0.5])
    np.testing.assert_allclose(fused, [scores[0] + 0.5 * scores[2], 0.5 * scores[0]], rtol=1e-6)
    with pytest.raises(ValueError):
        rrf_rank_scores(3, 0)


def test_min_max_basic_and_edge_cases():
    out = min_max([np.array([0.5, 0.2, 0.1]), np.array([0.7]), np.array([])])
    np.testing.assert_allclose(out[0], [1.0, 0.25, 0.001], atol=1e-6)  # exact 0 becomes 0.001
    assert out[1][0] == 1.0  # a single score normalises to 1
    assert out[2].size == 0


def test_min_max_lower_bounds_modes():
    scores = [np.array([0.9, 0.5, 0.1])]
    # apply: the bound replaces min for scores above it; scores below keep the real min
    applied = min_max(scores, lower_bounds=[{"mode": "apply", "min_score": 0.2}])[0]
    np.testing.assert_allclose(applied, [(0.9 - 0.2) / 0.7, (0.5 - 0.2) / 0.7, 0.001], atol=1e-6)
    # clip: scores under the bound become 0.001, the rest use the bound as min
    clipped = min_max(scores, lower_bounds=[{"mode": "clip", "min_score": 0.3}])[0]
    np.testing.assert_allclose(clipped, [1.0, (0.5 - 0.3) / 0.6, 0.001], atol=1e-6)
    ignored = min_max(scores, lower_bounds=[{"mode": "ignore", "min_score": 0.3}])[0]
    np.testing.assert_allclose(ignored, [1.0, 0.5, 0.001], atol=1e-6)


def test_min_max_upper_bounds_modes():
    scores = [np.array([0.9, 0.5, 0.1])]
    applied = min_max(scores, upper_bounds=[{"mode": "apply", "max_score": 0.6}])[0]
    np.testing.assert_allclose(applied, [1.0, (0.5 - 0.1) / 0.5, 0.001], atol=1e-6)
    clipped = min_max(scores, upper_bounds=[{"mode": "clip", "max_score": 0.6}])[0]
    np.testing.assert_allclose(clipped, [1.0, (0.5 - 0.1) / 0.5, 0.001], atol=1e-6)
    with pytest.raises(ValueError, match="mismatch"):
        min_max(scores, upper_bounds=[{}, {}])
    with pytest.raises(ValueError, match="invalid mode"):
        min_max(scores, lower_bounds=[{"mode": "squash"}])


def test_l2_normalisation():
    out = l2([np.array([3.0, 4.0]), np.array([0.0])])
    np.testing.assert_allclose(out[0], [0.6, 0.8], atol=1e-6)
    assert out[1][0] == 0.0


def test_z_score_and_its_upstream_quirks():
    scores = np.array([1.0, 2.0, 4.0])
    mean, std = scores.mean(), scores.std(ddof=1)
    out = z_score([scores])[0]
    assert out[2] == pytest.approx((4 - mean) / std, abs=1e-5)
    assert out[0] == pytest.approx(0.001) and out[1] == pytest.approx(0.001)  # <= 0 → 0.001
    # s == mean → the sub-query's max raw score
    np.testing.assert_allclose(z_score([np.array([1.0, 2.0, 3.0])])[0], [0.001, 3.0, 1.0], atol=1e-6)
    # std == 0 (one result or identical scores): s == mean → max raw score
    assert z_score([np.array([0.7])])[0][0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="no parameters"):
        normalize("z_score", [scores], {"lower_bounds": []})


def test_smallfloat_byte4_roundtrip_matches_lucene():
    assert [int_to_byte4(i) for i in range(24)] == list(range(24))
    assert int_to_byte4(100) == 57 and byte4_to_int(57) == 96
    assert byte4_to_int(255) == 24 + (15 << 27)  # the largest encodable length
    for b in range(256):
        assert int_to_byte4(byte4_to_int(b)) == b
    for i in range(2000):
        assert byte4_to_int(int_to_byte4(i)) <= i
        assert int_to_byte4(i) <= int_to_byte4(i + 1)


def test_bm25_matches_formula_and_legacy_is_2_2_times():
    idf = math.log(1 + (10 - 3 + 0.5) / (3 + 0.5))
    assert bm25_idf(10, 3) == pytest.approx(idf, rel=1e-6)
    expected = idf * 2 / (2 + 1.2 * (0.25 + 0.75 * 5 / 4.0))
    score = bm25_score(2, 5, doc_count=10, doc_freq=3, avg_doc_length=4.0)
    assert score == pytest.approx(expected, rel=1e-6)
    assert bm25_score(2, 5, doc_count=10, doc_freq=3, avg_doc_length=4.0, legacy=True) == pytest.approx(2.2 * expected, rel=1e-6)
    # document lengths are quantised: 100 tokens count as 96
    quantised = idf * 1 / (1 + 1.2 * (0.25 + 0.75 * 96 / 50.0))
    assert bm25_score(1, 100, doc_count=10, doc_freq=3, avg_doc_length=50.0) == pytest.approx(quantised, rel=1e-6)
