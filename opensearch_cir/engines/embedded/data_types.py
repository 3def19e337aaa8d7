"""The three `knn_vector` data types: how a value is checked, stored and compared.

| data_type | JSON value                           | stored per document   | spaces                          |
|-----------|--------------------------------------|-----------------------|---------------------------------|
| float     | `dimension` finite numbers           | float32 (`.f32`)      | l2, cosinesimil, innerproduct   |
| byte      | `dimension` integers in [-128, 127]  | int8 (`.i8`)          | l2, cosinesimil, innerproduct   |
| binary    | `dimension / 8` integers in [-128, 127], each 8 packed bits | the bytes (`.bits`) | hamming |

Checks and messages follow k-NN's `KNNValidationUtil` (validateFloatVectorValue,
validateByteVectorValue, validateVectorDimension) and `PerDimensionValidator` at 2.19.0.0: the
user (or `cir ingest`) quantizes, the engine only checks. Byte values are compared as the integers
they are (Lucene `KnnByteVectorField`, faiss `SQ8_direct_signed`), binary ones by Hamming distance.
"""

from __future__ import annotations

import numpy as np

from ...errors import EngineError

STORAGE = {"float": (np.float32, "f32"), "byte": (np.int8, "i8"), "binary": (np.uint8, "bits")}
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def width(data_type: str, dimension: int) -> int:
    """Numbers per document vector in JSON (and stored values per row): dimension / 8 for binary."""
    return dimension // 8 if data_type == "binary" else dimension


def parse(value, data_type: str, dimension: int, status_type: str = "mapper_parsing_exception") -> np.ndarray:
    """A JSON vector checked like k-NN does for `data_type`, as float32 (exact for byte values)."""
    try:
        vector = np.asarray(value, dtype=np.float32) if isinstance(value, list) else None
    except (TypeError, ValueError):  # strings, nested or ragged lists
        vector = None
    if vector is None or vector.ndim != 1:
        raise EngineError("KNN vector must be an array of numbers", 400, status_type)
    given = len(vector) * 8 if data_type == "binary" else len(vector)
    if given != dimension:
        if data_type == "binary":
            message = ("The dimension of the binary vector must be 8 times the length of the provided vector. "
                       f"Expected: {dimension}, Given: {given}")
        else:
            message = f"Vector dimension mismatch. Expected: {dimension}, Given: {given}"
        raise EngineError(message, 400, status_type)
    if np.isnan(vector).any():
        raise EngineError("KNN vector values cannot be NaN", 400, status_type)
    if np.isinf(vector).any():
        raise EngineError("KNN vector values cannot be infinity", 400, status_type)
    if data_type != "float":
        if (vector % 1 != 0).any():
            raise EngineError(f"[data_type] field was set as [{data_type}] in index mapping. But, KNN vector values "
                              "are floats instead of byte integers", 400, status_type)
        if (vector < -128).any() or (vector > 127).any():
            raise EngineError(f"[data_type] field was set as [{data_type}] in index mapping. But, KNN vector values "
                              "are not within in the byte range [-128, 127]", 400, status_type)
    return vector


def to_storage(rows: np.ndarray, data_type: str) -> np.ndarray:
    """Parsed rows [m, width] (float32) -> the stored dtype (binary: the int8 values' bits as uint8)."""
    if data_type == "float":
        return np.ascontiguousarray(rows, dtype=np.float32)
    packed = np.asarray(rows).astype(np.int8)
    return packed.view(np.uint8) if data_type == "binary" else packed


def to_source(row: np.ndarray, data_type: str) -> list:
    """A stored row as the JSON numbers the user sent."""
    if data_type == "float":
        return np.asarray(row).tolist()
    return np.asarray(row).view(np.int8).astype(int).tolist()


def hamming(query_bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Differing bits between one packed query [B] (uint8) and packed rows [N, B]."""
    return POPCOUNT[np.bitwise_xor(rows, query_bits)].sum(axis=1, dtype=np.int32).astype(np.float32)
