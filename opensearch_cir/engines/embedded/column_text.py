"""BM25 over a text field kept in an in-memory `Column` (a text field mapped after the index was
created, e.g. a dynamic string's `text` mapping): Lucene's BM25Similarity with the field's own
statistics (docCount, sumTotalTermFreq) over the live documents, like the tantivy path."""

from __future__ import annotations

import numpy as np

from ...scoring import BM25_B, BM25_K1, LEGACY_BM25_FACTOR, bm25_idf
from ...scoring.bm25 import byte4_to_int, int_to_byte4


def _quantised(lengths: np.ndarray) -> np.ndarray:
    """Lucene's one-byte norm round trip for each document length."""
    unique, inverse = np.unique(lengths.astype(np.int64), return_inverse=True)
    table = np.array([byte4_to_int(int_to_byte4(int(v))) for v in unique], dtype=np.float32)
    return table[inverse]


def column_bm25(store, live: np.ndarray, field: str, tokens: list[str], *, legacy: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ordinals ascending, summed scores, number of query tokens matched) for the documents that
    contain at least one of `tokens` (one SHOULD clause per token, duplicates included, as
    Lucene's match query builds it)."""
    column = store.columns.get(field)
    n = len(live)
    if column is None or not tokens:
        return np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int32)
    doc_ords = store.ords_array((field, "#ords"), column.num_ords)
    doc_lengths = np.frombuffer(column.num_vals, dtype=np.float64) if len(column.num_vals) else np.empty(0)
    keep = live[doc_ords]
    doc_count = int(keep.sum())
    if doc_count == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int32)
    avgdl = np.float32(doc_lengths[keep].sum() / doc_count)
    lengths = np.zeros(n, dtype=np.float32)
    lengths[doc_ords[keep]] = _quantised(doc_lengths[keep])
    totals = np.zeros(n, dtype=np.float64)
    matched = np.zeros(n, dtype=np.int32)
    f32 = np.float32
    for token in tokens:
        postings = column.postings.get(token)
        if postings is None:
            continue
        ords = store.ords_array((field, token), postings)
        ords = ords[live[ords]]
        if len(ords) == 0:
            continue
        docs, freqs = np.unique(ords, return_counts=True)
        weight = f32(bm25_idf(doc_count, len(docs)))
        norm_inverse = f32(1.0) / (f32(BM25_K1) * ((f32(1.0) - f32(BM25_B)) + f32(BM25_B) * lengths[docs] / avgdl))
        scores = weight - weight / (f32(1.0) + freqs.astype(np.float32) * norm_inverse)
        if legacy:
            scores = scores * f32(LEGACY_BM25_FACTOR)
        totals[docs] += scores
        matched[docs] += 1
    hit = np.flatnonzero(matched).astype(np.int64)
    return hit, totals[hit].astype(np.float32), matched[hit]
