"""Query-vector composition: pure numpy functions, one per strategy.

Notation: i = E_I(I_ref) (reference image vector), t = E_T(T) (modification text vector),
c = E_T(caption_ref) (reference caption vector), norm(x) = x / ||x||. All inputs are L2-normalised
float vectors of the same dimension; every function returns an L2-normalised float32 vector
(except `caption_aware_scores`, which returns scores). How a strategy becomes OpenSearch query DSL
is decided in `opensearch_cir.compose.query`; these functions only do the maths.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

_EPS = 1e-12


def normalize(vector: np.ndarray) -> np.ndarray:
    """norm(x) = x / ||x||₂ (float32). Raises InputError on a zero vector (nothing to search with)."""
    vector = np.asarray(vector, dtype=np.float32)
    length = float(np.linalg.norm(vector))
    if length < _EPS or not np.isfinite(length):
        raise InputError("the composed query vector is zero or not finite; the inputs cancel each other out")
    return vector / length


def mean_vector(vectors: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Several reference images: q = norm(Σ vᵢ / n)."""
    stacked = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if stacked.shape[0] == 0:
        raise InputError("no vectors to combine")
    return normalize(stacked.mean(axis=0))


def image_only(image: np.ndarray) -> np.ndarray:
    """q = norm(i)."""
    return normalize(image)


def text_only(text: np.ndarray) -> np.ndarray:
    """q = norm(t)."""
    return normalize(text)


def weighted_fusion(image: np.ndarray, text: np.ndarray, alpha: float) -> np.ndarray:
    """Weighted fusion (WeiMoCIR): q = norm((1 − α)·i + α·t), α ∈ [0, 1]; α = 0.5 is the plain sum."""
    _check_unit_interval("alpha", alpha)
    return normalize((1.0 - alpha) * np.asarray(image, np.float32) + alpha * np.asarray(text, np.float32))


def slerp(image: np.ndarray, text: np.ndarray, lam: float) -> np.ndarray:
    """Spherical interpolation: θ = arccos(i·t), q = (sin((1−λ)θ)·i + sin(λθ)·t) / sin θ, λ ∈ [0, 1].

    λ = 0 gives i, λ = 1 gives t; when i ∥ t (sin θ ≈ 0) it falls back to linear interpolation.
    """
    _check_unit_interval("lam", lam)
    a = normalize(image)
    b = normalize(text)
    theta = float(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0)))
    if np.sin(theta) < 1e-6:
        return normalize((1.0 - lam) * a + lam * b)
    return normalize((np.sin((1.0 - lam) * theta) * a + np.sin(lam * theta) * b) / np.sin(theta))


def prompt_directional_vector(
    image: np.ndarray,
    caption: np.ndarray,
    caption_with_modification: np.ndarray,
    *,
    alpha_text: float,
    alpha_image: float,
    beta: float,
) -> np.ndarray:
    """Prompt directional vector (PDV, arXiv 2502.07215).

    Δ = E_T(caption_ref + T) − E_T(caption_ref); q_T = c + α_T·Δ; q_I = i + α_I·Δ;
    q = norm(β·q_I + (1 − β)·q_T). `caption_with_modification` is E_T(caption_ref + T).
    """
    _check_unit_interval("beta", beta)
    c = np.asarray(caption, np.float32)
    delta = np.asarray(caption_with_modification, np.float32) - c
    composed_text = c + alpha_text * delta
    composed_image = np.asarray(image, np.float32) + alpha_image * delta
    return normalize(beta * composed_image + (1.0 - beta) * composed_text)


def weighted_sum(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted query (Marqo-style): q = norm(Σ wᵢ·vᵢ); a negative wᵢ pushes away from vᵢ."""
    if len(vectors) != len(weights) or not vectors:
        raise InputError(f"need one weight per vector (got {len(vectors)} vectors, {len(weights)} weights)")
    stacked = np.asarray(vectors, dtype=np.float32)
    return normalize(np.tensordot(np.asarray(weights, np.float32), stacked, axes=1))


def with_negative(query: np.ndarray, negative: np.ndarray, weight: float) -> np.ndarray:
    """Negative text ("without a hood"): q' = norm(q − w·E_T(negative)), w ≥ 0."""
    if weight < 0:
        raise InputError(f"negative weight must be ≥ 0 (it is subtracted), got {weight}")
    return weighted_sum([query, negative], [1.0, -weight])


def caption_aware_scores(
    query: np.ndarray, image_vectors: np.ndarray, caption_vectors: np.ndarray, beta: float
) -> np.ndarray:
    """Caption-aware scoring (WeiMoCIR): s_n = (1 − β)·cos(q, v_n) + β·mean_k cos(q, E_T(c_n,k)).

    `caption_vectors` is [N, D] (one caption vector per item, already the mean over its captions,
    as the index stores it) or [N, K, D] (K captions each). This is the reference formula; a query
    realises it as a second k-NN sub-query on `caption_vector` with weight β inside the `hybrid`
    query, where the search pipeline normalises each sub-query's scores before the weighted mean.
    """
    _check_unit_interval("beta", beta)
    q = np.asarray(query, np.float32)
    image_scores = np.asarray(image_vectors, np.float32) @ q
    captions = np.asarray(caption_vectors, np.float32)
    caption_scores = captions @ q if captions.ndim == 2 else (captions @ q).mean(axis=1)
    return (1.0 - beta) * image_scores + beta * caption_scores


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{name} must be in [0, 1], got {value}")
