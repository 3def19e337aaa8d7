"""The `knn` clause (k-NN plugin semantics): top-k, radial (min_score / max_distance) and
filtered search over one knn_vector field."""

from __future__ import annotations

import numpy as np

from ....errors import EngineError, UnsupportedQueryError
from .dsl import Scored, check_params, field_and_params

MAX_KNN_K = 10_000


class KnnClauses:
    """Mixin of `Executor`: k-NN execution."""

    def _query_knn(self, body, restrict) -> Scored:
        field, params = field_and_params("knn", body, "vector", {"k", "filter", "method_parameters", "min_score", "max_distance", "rescore", "expand_nested_docs"})
        for unsupported in ("rescore", "expand_nested_docs"):
            if unsupported in params:
                raise UnsupportedQueryError(f"[knn] {unsupported} is not supported by the embedded engine")
        spec = self._spec(field)
        if spec is None or spec.type != "knn_vector":
            raise EngineError(f"field [{field}] is not a knn_vector field", 400, "query_shard_exception")
        modes = [key for key in ("k", "min_score", "max_distance") if params.get(key) is not None]
        if len(modes) != 1:
            raise EngineError("[knn] requires exactly one of k, distance or score to be set", 400, "illegal_argument_exception")
        method = params.get("method_parameters") or {}
        check_params("knn.method_parameters", method, {"ef_search"})
        try:
            vector = np.asarray(params["vector"], dtype=np.float32)
        except (TypeError, ValueError):
            raise EngineError("[knn] vector must be an array of numbers", 400, "parsing_exception") from None
        field_store = self.store.vector_fields[field]
        if vector.ndim != 1 or vector.shape[0] != field_store.dim:
            raise EngineError(f"Query vector has invalid dimension: {vector.shape[-1] if vector.ndim else 0}. Dimension should be: {field_store.dim}", 400, "illegal_argument_exception")
        if field_store.space == "cosinesimil" and not vector.any():
            raise EngineError("zero vector is not supported when space type is [cosinesimil]", 400, "illegal_argument_exception")
        candidates = self.live.copy()
        column = self._column(field)
        has_vector = self._mask_of(self.store.ords_array((field, "#present"), column.present)) if column else np.zeros(self.n, bool)
        candidates &= has_vector
        filtered = params.get("filter") is not None
        if filtered:
            candidates &= self.matches(params["filter"])
        if "k" in modes:
            k = int(params["k"])
            if not 1 <= k <= MAX_KNN_K:
                raise EngineError(f"[knn] requires k to be in the range (0, {MAX_KNN_K}]", 400, "illegal_argument_exception")
            ef = int(method.get("ef_search", _default_ef_search(spec, self.store.settings)))
            ords, scores = field_store.search(
                vector, k, candidates, n_rows=self.n, ef_search=ef, hnsw_threshold=self.hnsw_threshold, filtered=filtered
            )
        else:  # radial search, exact
            ords, scores = field_store.exact(vector, int(candidates.sum()), candidates, self.n)
            threshold = params.get("min_score")
            if threshold is None:
                distance = float(params["max_distance"])
                if distance < 0 and field_store.space != "innerproduct":
                    raise EngineError(f"[knn] requires distance to be non-negative for space type: {field_store.space}", 400, "illegal_argument_exception")
                threshold = _distance_to_score(distance, field_store.space, _engine(spec))
            elif float(threshold) > 1 and field_store.space != "innerproduct":
                raise EngineError(f"[knn] requires score to be in the range [0, 1] for space type: {field_store.space}", 400, "illegal_argument_exception")
            keep = scores >= np.float32(threshold)
            ords, scores = ords[keep], scores[keep]
        scores = scores * np.float32(params.get("boost", 1.0))
        order = np.argsort(ords, kind="stable")
        return Scored(ords[order], scores[order]).restrict(restrict)


def _engine(spec) -> str:
    return (spec.params.get("method") or {}).get("engine", "faiss")


def _distance_to_score(distance: float, space: str, engine: str = "faiss") -> float:
    """k-NN's max_distance → min_score conversion for a space type and engine (Lucene.java
    DISTANCE_TRANSLATIONS: on a Lucene innerproduct field the distance is the inner product)."""
    from ....scoring import knn_score

    if space == "l2":
        return float(knn_score(distance, "l2"))
    if space == "innerproduct":
        if engine == "lucene":
            return 1 / (1 - distance) if distance <= 0 else distance + 1
        return float(knn_score(-distance, "innerproduct"))
    if space == "cosinesimil":
        return float(knn_score(1 - distance, "cosinesimil"))
    raise UnsupportedQueryError(f"[knn] max_distance for space_type {space}")


def _default_ef_search(spec, settings: dict) -> int:
    """ef_search when the query does not set it: the field's `method.parameters.ef_search` (faiss,
    k-NN FaissHNSWMethod), the index setting `index.knn.algo_param.ef_search` only on nmslib fields
    (k-NN IndexUtil), else 100."""
    mapped = spec.params.get("method", {}).get("parameters", {}).get("ef_search")
    if mapped is not None:
        return int(mapped)
    if _engine(spec) == "nmslib":
        return int(settings.get("index.knn.algo_param.ef_search", 100))
    return 100
