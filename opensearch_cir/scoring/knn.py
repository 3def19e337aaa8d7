"""k-NN scores from raw distances, per space type (k-NN `SpaceType.java`, `KNNVectorSimilarityFunction`)."""

from __future__ import annotations

import numpy as np

SPACE_TYPES = ("l2", "cosinesimil", "innerproduct", "hamming")


def raw_similarity(query: np.ndarray, vectors: np.ndarray, space_type: str) -> np.ndarray:
    """The raw quantity each space type scores: squared L2 distance, cosine, dot product, or differing bits.

    `query` is [D]; `vectors` is [N, D] (for `hamming`, packed uint8 bits).
    """
    query = np.asarray(query)
    if space_type == "innerproduct":
        return vectors @ query.astype(np.float32)
    if space_type == "l2":
        diff = vectors - query.astype(np.float32)
        return np.einsum("ij,ij->i", diff, diff)
    if space_type == "cosinesimil":
        dots = vectors @ query.astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1) * np.float32(np.linalg.norm(query))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(norms > 0, dots / norms, 0.0).astype(np.float32)
    if space_type == "hamming":
        xor = np.bitwise_xor(vectors.astype(np.uint8), query.astype(np.uint8))
        return np.unpackbits(xor, axis=1).sum(axis=1).astype(np.float32)
    raise ValueError(f"unknown space_type {space_type!r}; expected one of {SPACE_TYPES}")


def knn_score(raw, space_type: str) -> np.ndarray:
    """OpenSearch's k-NN `_score` from `raw_similarity` values.

    l2: 1/(1+d²); cosinesimil: max(0, (1+cos)/2); innerproduct: dot+1 if dot ≥ 0 else 1/(1−dot);
    hamming: 1/(1+bits).
    """
    raw = np.asarray(raw, dtype=np.float32)
    one = np.float32(1.0)
    if space_type in ("l2", "hamming"):
        return one / (one + raw)
    if space_type == "cosinesimil":
        return np.maximum((one + raw) / np.float32(2.0), np.float32(0.0))
    if space_type == "innerproduct":
        return np.where(raw >= 0, raw + one, one / (one - np.minimum(raw, 0))).astype(np.float32)
    raise ValueError(f"unknown space_type {space_type!r}; expected one of {SPACE_TYPES}")
