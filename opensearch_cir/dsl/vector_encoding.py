"""Float embeddings as the values a `knn_vector` field of each `data_type` takes.

OpenSearch quantizes nothing for `byte` and `binary` fields: the client sends int8 values (k-NN
`VectorDataType`, `KNNValidationUtil.validateByteVectorValue`). We encode documents (`cir ingest`)
and query vectors (compose, the service) the same way, so their similarities stay comparable:

- `byte`: round(x * s) clipped to [-128, 127] with one fixed scale per dimension,
  s = 127 * sqrt(D) / BYTE_CLIP_SIGMAS: a unit vector's components have a standard deviation of
  1 / sqrt(D), so only components beyond BYTE_CLIP_SIGMAS of them saturate (the 40k benchmark's
  largest CLIP component is 5.2 of them). One scale for every vector keeps inner products and L2
  distances proportional to the float ones, up to rounding.
- `binary`: one sign bit per dimension (x > 0), packed 8 to a byte, most significant bit first
  (numpy `packbits`), each byte sent as the signed int8 OpenSearch expects; Hamming distance
  between sign codes estimates the angle between the vectors.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

DATA_TYPES = ("float", "byte", "binary")
BYTE_CLIP_SIGMAS = 6.0


def byte_scale(dimension: int) -> float:
    return 127.0 * math.sqrt(dimension) / BYTE_CLIP_SIGMAS


def encode(vectors: np.ndarray | Sequence[float], data_type: str = "float") -> np.ndarray:
    """Rows [N, D] (or one vector [D]) as `data_type` values: float32, int8 [.., D] or int8 [.., D/8]."""
    array = np.asarray(vectors, dtype=np.float32)
    if data_type == "float":
        return array
    if data_type == "byte":
        return np.clip(np.rint(array * byte_scale(array.shape[-1])), -128, 127).astype(np.int8)
    if data_type == "binary":
        if array.shape[-1] % 8:
            raise ValueError(f"a binary field needs a dimension that is a multiple of 8, got {array.shape[-1]}")
        return np.packbits(array > 0, axis=-1).view(np.int8)
    raise ValueError(f"unknown data_type {data_type!r}; expected one of {DATA_TYPES}")


def decode(values: Sequence[float], data_type: str = "float") -> np.ndarray:
    """A stored vector (a document's `_source` values of a `data_type` field) as float32 on the float
    vectors' scale: byte values divided by the scale, binary sign bits as ±1/sqrt(D) (`encode`'s inverse
    up to rounding; the sign code's best estimate)."""
    array = np.asarray(values, dtype=np.float32)
    if data_type == "float":
        return array
    if data_type == "byte":
        return array / byte_scale(array.shape[-1])
    if data_type == "binary":
        bits = np.unpackbits(np.asarray(values, dtype=np.int8).view(np.uint8)).astype(np.float32)
        return (bits * 2 - 1) / math.sqrt(len(bits))
    raise ValueError(f"unknown data_type {data_type!r}; expected one of {DATA_TYPES}")


def encode_list(vector: np.ndarray | Sequence[float], data_type: str = "float") -> list:
    """One vector as the JSON list a document or a knn query sends (ints for byte / binary)."""
    encoded = encode(vector, data_type).reshape(-1)
    return [float(v) for v in encoded] if data_type == "float" else [int(v) for v in encoded]


def field_data_types(mapping: dict) -> dict[str, str]:
    """`{field: data_type}` of the top-level knn_vector fields of one index's mapping (a
    `get_mapping` answer for one index, or its `mappings` object)."""
    mappings = mapping.get("mappings", mapping)
    properties: dict[str, Any] = mappings.get("properties") or {}
    return {name: spec.get("data_type", "float") for name, spec in properties.items()
            if isinstance(spec, dict) and spec.get("type") == "knn_vector"}


def index_data_types(client: Any, index: str) -> dict[str, str]:
    """`field_data_types` of an existing index (by name or alias); {} (all float) when the client
    cannot tell (no such index yet, a test double without `get_mapping`)."""
    get_mapping = getattr(getattr(client, "indices", None), "get_mapping", None)
    if get_mapping is None:
        return {}
    try:
        response = get_mapping(index=index)
    except Exception:  # noqa: BLE001 - not created yet: the caller's documents decide nothing here
        return {}
    if not isinstance(response, dict) or not response:
        return {}
    return field_data_types(response.get(index) or next(iter(response.values())))


def known_data_types(client: Any, index: str) -> dict[str, str]:
    """`index_data_types`, asked once per client and index (remembered on the client like its dialect)."""
    known = getattr(client, "cir_vector_types", None)
    if not isinstance(known, dict):
        known = {}
        try:
            client.cir_vector_types = known
        except AttributeError:
            pass
    if index not in known:
        found = index_data_types(client, index)
        if not found:
            return found  # not remembered: the index may not exist yet
        known[index] = found
    return known[index]
