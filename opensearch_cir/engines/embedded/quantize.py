"""Compressed vector codes for `knn_vector` fields with `compression_level` (k-NN's on-disk mode).

k-NN's faiss path quantizes float vectors per segment and rescores the first-pass candidates with
the full-precision vectors read from disk. The levels and their codes (k-NN `CompressionLevel`,
`OneBitScalarQuantizer`, `MultiBitScalarQuantizer`):

| level | bits / dim | code                                                                 |
|-------|------------|----------------------------------------------------------------------|
| 1x    | 32         | the float32 rows themselves                                          |
| 2x    | 16         | float16                                                              |
| 4x    | 8          | per-dimension min/max scalar quantization to uint8 (faiss SQ8)       |
| 8x    | 4          | 4 thresholds per dimension at mean + (−1 + 2(i+1)/5)·std, one bit each |
| 16x   | 2          | 2 thresholds per dimension at mean ± std/3                           |
| 32x   | 1          | 1 threshold per dimension at its mean                                |

Binary codes (8x–32x) are compared by Hamming distance: with thresholds per dimension the bits
are a thermometer code, so Hamming distance is the L1 distance between quantization levels.
Codes are first-pass scores only; rescoring re-ranks `first_pass_size` candidates exactly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

LEVELS = {"1x": 32, "2x": 16, "4x": 8, "8x": 4, "16x": 2, "32x": 1}  # bits per dimension
# k-NN CompressionLevel's default oversample factors in `mode: on_disk` (4x since 3.1.0)
DEFAULT_OVERSAMPLE = {"4x": 1.0, "8x": 2.0, "16x": 3.0, "32x": 3.0}
DIMENSION_THRESHOLD = 1000  # RescoreContext.DIMENSION_THRESHOLD: at or below it, 8x-32x oversample 5.0
OVERSAMPLE_BELOW_THRESHOLD = 5.0
MIN_FIRST_PASS = 100  # RescoreContext.MIN_FIRST_PASS_RESULTS
MAX_FIRST_PASS = 10_000  # RescoreContext.MAX_FIRST_PASS_RESULTS
MIN_OVERSAMPLE, MAX_OVERSAMPLE = 1.0, 100.0  # RescoreContext.MIN/MAX_OVERSAMPLE_FACTOR (2.19+)
TRAINING_SAMPLE = 100_000
WIDEN_BLOCK = 4096
"""Rows of 2x / 4x codes widened to float32 at once in a first pass: 4 MiB at 256-d stays in cache
(40k × 256-d 4x codes: 12.6–16.6 instead of 27.2–37.6 ms for innerproduct, 20–21 instead of 46–48
for l2; 2x gains 10–13 %, its float16 conversion being the cost)."""

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def default_oversample(level: str, mode: str, dimension: int) -> float | None:
    """The field's own rescoring when the query has no `rescore` (k-NN 3.3
    `CompressionLevel.getDefaultRescoreContext`): None (no rescoring) unless `mode: on_disk`
    with 4x-32x; 4x keeps 1.0, 8x-32x take 5.0 up to 1000-d, their level default above."""
    if mode != "on_disk" or level not in DEFAULT_OVERSAMPLE:
        return None
    if level != "4x" and dimension <= DIMENSION_THRESHOLD:
        return OVERSAMPLE_BELOW_THRESHOLD
    return DEFAULT_OVERSAMPLE[level]


def first_pass_size(k: int, oversample: float, dimension: int, *, user_provided: bool,
                    shard_level_rescoring_disabled: bool = False) -> int:
    """Candidates the first pass keeps (k-NN `RescoreContext.getFirstPassK`): k x factor within
    [100, 10000]; a default factor becomes 1/2/3 by dimension (>= 1000, >= 768, below) when
    `index.knn.disk.vector.shard_level_rescoring_disabled` is true."""
    if shard_level_rescoring_disabled and not user_provided:
        oversample = 1.0 if dimension >= 1000 else 2.0 if dimension >= 768 else 3.0
    return min(MAX_FIRST_PASS, max(MIN_FIRST_PASS, math.ceil(k * oversample)))


def bytes_per_vector(level: str, dimension: int) -> int:
    """Memory of one code (what stays in RAM; the float32 rows stay on disk for rescoring)."""
    return math.ceil(dimension * LEVELS[level] / 8)


class Codebook:
    """The trained quantizer of one field at one compression level."""

    def __init__(self, level: str, params: dict[str, np.ndarray]):
        if level not in LEVELS:
            raise ValueError(f"unknown compression level {level!r}; expected one of {list(LEVELS)}")
        self.level = level
        self.bits = LEVELS[level]
        self.params = params

    @classmethod
    def train(cls, level: str, rows: np.ndarray, seed: int = 0) -> "Codebook":
        """Fit on up to TRAINING_SAMPLE rows (k-NN trains on a reservoir sample per segment)."""
        rows = np.asarray(rows, dtype=np.float32)
        if len(rows) > TRAINING_SAMPLE:
            rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), TRAINING_SAMPLE, replace=False))]
        bits = LEVELS[level]
        if bits == 8:
            low, high = rows.min(axis=0), rows.max(axis=0)
            return cls(level, {"low": low, "scale": np.maximum(high - low, 1e-12) / 255.0})
        if bits <= 4:
            mean, std = rows.mean(axis=0), rows.std(axis=0)
            coefficients = [0.0] if bits == 1 else [-1 + 2 * (i + 1) / (bits + 1) for i in range(bits)]
            return cls(level, {"thresholds": np.stack([mean + c * std for c in coefficients]).astype(np.float32)})
        return cls(level, {})

    def save(self, path: Path) -> "Codebook":
        """Write the codebook once (the first writer wins, as persisted codes depend on it) and
        return the one on disk."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **self.params)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return Codebook.load(self.level, path)

    @classmethod
    def load(cls, level: str, path: Path) -> "Codebook":
        with np.load(path) as saved:
            return cls(level, {key: saved[key] for key in saved.files})

    def encode(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float32)
        if self.bits == 32:
            return rows
        if self.bits == 16:
            return rows.astype(np.float16)
        if self.bits == 8:
            return np.clip(np.rint((rows - self.params["low"]) / self.params["scale"]), 0, 255).astype(np.uint8)
        bits = rows[:, None, :] > self.params["thresholds"][None, :, :]  # [N, bits, D]
        return np.packbits(bits.reshape(len(rows), -1), axis=1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 rows back from 1x / 2x / 4x codes (the first pass scores these; bit codes have no rows)."""
        if self.bits >= 16:
            return codes.astype(np.float32, copy=False)
        if self.bits == 8:
            return codes * self.params["scale"] + self.params["low"]
        raise ValueError(f"{self.level} codes are bits compared by Hamming distance, not rows")

    def first_pass(self, query: np.ndarray, codes: np.ndarray, space: str) -> np.ndarray:
        """Approximate similarity of `query` to every code row: higher is closer for every space."""
        from ...scoring import raw_similarity

        if self.bits <= 4:
            differing = _POPCOUNT[np.bitwise_xor(codes, self.encode(query[None, :])[0])].sum(axis=1, dtype=np.int32)
            return -differing.astype(np.float32)
        similarity = np.empty(len(codes), np.float32)
        for start in range(0, len(codes), WIDEN_BLOCK):  # widened a block at a time, in cache
            raw = raw_similarity(query, self.decode(codes[start:start + WIDEN_BLOCK]), space)
            similarity[start:start + len(raw)] = -raw if space == "l2" else raw
        return similarity
