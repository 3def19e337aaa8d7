"""Vector maths of each composition strategy, and CompositeQuery rendering + search end to end."""

import numpy as np
import pytest

from opensearch_cir.compose import strategies as S
from opensearch_cir.errors import InputError

I = np.array([1.0, 0.0, 0.0], np.float32)
T = np.array([0.0, 1.0, 0.0], np.float32)
C = np.array([0.0, 0.0, 1.0], np.float32)


def test_normalize_and_zero_vector():
    assert np.allclose(S.normalize([3.0, 4.0]), [0.6, 0.8])
    with pytest.raises(InputError):
        S.normalize([0.0, 0.0])


def test_single_modalities_and_mean():
    assert np.allclose(S.image_only(2 * I), I)
    assert np.allclose(S.text_only(T), T)
    assert np.allclose(S.mean_vector([I, T]), [2**-0.5, 2**-0.5, 0])


def test_weighted_fusion():
    q = S.weighted_fusion(I, T, 0.8)  # norm(0.2 i + 0.8 t)
    assert np.allclose(q, np.array([0.2, 0.8, 0]) / np.hypot(0.2, 0.8))
    assert np.allclose(S.weighted_fusion(I, T, 0.0), I)
    with pytest.raises(InputError):
        S.weighted_fusion(I, T, 1.5)


def test_slerp_walks_the_great_circle():
    q = S.slerp(I, T, 1 / 3)  # 90° apart: a third of the way is 30°
    assert np.allclose(q, [np.cos(np.pi / 6), np.sin(np.pi / 6), 0], atol=1e-6)
    assert np.allclose(S.slerp(I, T, 0.0), I) and np.allclose(S.slerp(I, T, 1.0), T)
    assert np.allclose(S.slerp(I, I, 0.5), I)  # parallel inputs fall back to lerp


def test_prompt_directional_vector():
    composed_caption = S.normalize(C + T)  # E_T(caption + T)
    delta = composed_caption - C
    expected = S.normalize(0.3 * (I + 2.0 * delta) + 0.7 * (C + 1.5 * delta))
    q = S.prompt_directional_vector(I, C, composed_caption, alpha_text=1.5, alpha_image=2.0, beta=0.3)
    assert np.allclose(q, expected)
    # beta = 1, alpha_image = 0 is the image alone
    assert np.allclose(S.prompt_directional_vector(I, C, composed_caption, alpha_text=1, alpha_image=0, beta=1), I)


def test_weighted_sum_and_negative():
    assert np.allclose(S.weighted_sum([I, T], [1.0, -0.5]), np.array([1, -0.5, 0]) / np.hypot(1, 0.5))
    q = S.with_negative(S.normalize(I + T), T, 0.5)
    assert np.dot(q, T) < np.dot(S.normalize(I + T), T)
    with pytest.raises(InputError):
        S.with_negative(I, T, -1)
    with pytest.raises(InputError):
        S.weighted_sum([I], [1, 2])


def test_caption_aware_scores():
    images = np.stack([I, T])
    captions = np.stack([T, I])
    # s = 0.9·cos(q, v) + 0.1·cos(q, c) with q = I: doc0 0.9, doc1 0.1
    assert np.allclose(S.caption_aware_scores(I, images, captions, 0.1), [0.9, 0.1])
    per_caption = np.stack([np.stack([T, I]), np.stack([I, I])])  # [N=2, K=2, D]
    assert np.allclose(S.caption_aware_scores(I, images, per_caption, 0.5), [0.5 * 1 + 0.5 * 0.5, 0.5 * 0 + 0.5 * 1])
