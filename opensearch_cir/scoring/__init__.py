"""OpenSearch scoring as pure functions: k-NN scores, Lucene BM25, hybrid normalisation and fusion.

Every function mirrors the upstream code named in `docs/opensearch-semantics.md` (k-NN `SpaceType`,
Lucene `BM25Similarity` / `SmallFloat`, neural-search normalization and combination techniques),
including float32 arithmetic where the Java code uses `float`.
"""

from .bm25 import (
    BM25_B,
    BM25_K1,
    LEGACY_BM25_FACTOR,
    bm25_idf,
    bm25_score,
    byte4_to_int,
    int_to_byte4,
)
from .combination import COMBINATION_TECHNIQUES, combine, rrf_rank_scores
from .knn import SPACE_TYPES, knn_score, raw_similarity
from .normalization import NORMALIZATION_TECHNIQUES, l2, min_max, normalize, z_score

__all__ = [
    "BM25_B",
    "BM25_K1",
    "COMBINATION_TECHNIQUES",
    "LEGACY_BM25_FACTOR",
    "NORMALIZATION_TECHNIQUES",
    "SPACE_TYPES",
    "bm25_idf",
    "bm25_score",
    "byte4_to_int",
    "combine",
    "int_to_byte4",
    "knn_score",
    "l2",
    "min_max",
    "normalize",
    "raw_similarity",
    "rrf_rank_scores",
    "z_score",
]
