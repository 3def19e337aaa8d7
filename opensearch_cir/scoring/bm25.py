"""Lucene `BM25Similarity` (OpenSearch 3.x) and the legacy ×(k1+1) form (OpenSearch 2.x), with
Lucene's one-byte `SmallFloat` document-length encoding. Float32 arithmetic like Lucene's."""

from __future__ import annotations

import math

import numpy as np

BM25_K1 = 1.2
BM25_B = 0.75
LEGACY_BM25_FACTOR = BM25_K1 + 1.0  # LegacyBM25Similarity = BM25Similarity × (k1 + 1)


def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    encoded = (i >> shift) & 0x07  # the leading one bit is implicit
    return encoded | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)


def int_to_byte4(i: int) -> int:
    """Lucene `SmallFloat.intToByte4`: a document length encoded in one (unsigned) byte."""
    if i < 0:
        raise ValueError("length must be non-negative")
    if i < _NUM_FREE_VALUES:
        return i
    return _NUM_FREE_VALUES + _long_to_int4(i - _NUM_FREE_VALUES)


def byte4_to_int(b: int) -> int:
    """Lucene `SmallFloat.byte4ToInt`: the (lossy) length a byte from `int_to_byte4` stands for."""
    if b < _NUM_FREE_VALUES:
        return b
    return min(_NUM_FREE_VALUES + _int4_to_long(b - _NUM_FREE_VALUES), 2**31 - 1)


def bm25_idf(doc_count: int, doc_freq: int) -> float:
    """ln(1 + (N − n + 0.5) / (n + 0.5)), as float32."""
    return float(np.float32(math.log(1 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5))))


def bm25_score(
    freq: float,
    doc_length: int,
    *,
    doc_count: int,
    doc_freq: int,
    avg_doc_length: float,
    boost: float = 1.0,
    k1: float = BM25_K1,
    b: float = BM25_B,
    legacy: bool = False,
) -> float:
    """One term's BM25 score for one document, as Lucene computes it.

    `doc_length` is the true token count; it is quantised with `int_to_byte4`/`byte4_to_int`.
    `legacy=True` gives OpenSearch 2.x's `LegacyBM25Similarity` (× (k1 + 1)).
    """
    f32 = np.float32
    weight = f32(boost) * f32(bm25_idf(doc_count, doc_freq))
    length = f32(byte4_to_int(int_to_byte4(int(doc_length))))
    norm_inverse = f32(1.0) / (f32(k1) * ((f32(1.0) - f32(b)) + f32(b) * length / f32(avg_doc_length)))
    score = weight - weight / (f32(1.0) + f32(freq) * norm_inverse)
    return float(score * f32(LEGACY_BM25_FACTOR)) if legacy else float(score)
