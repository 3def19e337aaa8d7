"""The `knn` clause (k-NN plugin semantics): top-k, radial (min_score / max_distance) and
filtered search over one knn_vector field, with `rescore` (k-NN KNNQueryBuilderParser,
RescoreParser, RescoreContext at 2.19.0.0 / 3.3.0.0)."""

from __future__ import annotations

import numpy as np

from ....errors import EngineError, UnsupportedQueryError
from .. import data_types
from ..quantize import MAX_OVERSAMPLE, MIN_OVERSAMPLE, default_oversample, first_pass_size
from .dsl import Scored, check_params, field_and_params

MAX_KNN_K = 10_000


class KnnClauses:
    """Mixin of `Executor`: k-NN execution."""

    def _query_knn(self, body, restrict) -> Scored:
        field, params = field_and_params("knn", body, "vector", {"k", "filter", "method_parameters", "min_score", "max_distance", "rescore", "expand_nested_docs"})
        if "expand_nested_docs" in params:
            raise UnsupportedQueryError("[knn] expand_nested_docs is not supported by the embedded engine")
        spec = self._spec(field)
        if spec is None or spec.type != "knn_vector":
            raise EngineError(f"field [{field}] is not a knn_vector field", 400, "query_shard_exception")
        modes = [key for key in ("k", "min_score", "max_distance") if params.get(key) is not None]
        if len(modes) != 1:
            raise EngineError("[knn] requires exactly one of k, distance or score to be set", 400, "illegal_argument_exception")
        for exclusive in ("max_distance", "min_score"):
            if params.get("rescore") is not None and params.get(exclusive) is not None:
                raise EngineError(f"The following fields are not allowed together: [rescore, {exclusive}]", 400, "parsing_exception")
        method = params.get("method_parameters") or {}
        check_params("knn.method_parameters", method, {"ef_search"})
        try:
            vector = np.asarray(params["vector"], dtype=np.float32)
        except (TypeError, ValueError):
            raise EngineError("[knn] vector must be an array of numbers", 400, "parsing_exception") from None
        field_store = self.store.vector_fields[field]
        given = (vector.shape[-1] if vector.ndim else 0) * (8 if field_store.data_type == "binary" else 1)
        if vector.ndim != 1 or given != field_store.dim:
            raise EngineError(f"Query vector has invalid dimension: {given}. Dimension should be: {field_store.dim}", 400, "illegal_argument_exception")
        if field_store.data_type != "float":
            vector = data_types.parse(vector.tolist(), field_store.data_type, field_store.dim, "illegal_argument_exception")
        if field_store.space == "cosinesimil" and not vector.any():
            raise EngineError("zero vector is not supported when space type is [cosinesimil]", 400, "illegal_argument_exception")
        column = self._column(field)
        has_vector = self.store.ords_mask((field, "#present"), column.present, self.n) if column else np.zeros(self.n, bool)
        candidates = self.live & has_vector
        filtered = params.get("filter") is not None
        if filtered:
            candidates &= self.matches(params["filter"])
        if "k" in modes:
            k = int(params["k"])
            if not 1 <= k <= MAX_KNN_K:
                raise EngineError(f"[knn] requires k to be in the range (0, {MAX_KNN_K}]", 400, "illegal_argument_exception")
            ef = int(method.get("ef_search", _default_ef_search(spec, self.store.settings)))
            ords, scores = field_store.search(
                vector, k, candidates, n_rows=self.n, ef_search=ef, hnsw_threshold=self.hnsw_threshold, filtered=filtered,
                first_pass=_first_pass(params.get("rescore"), k, field_store, spec, self.store.settings),
            )
        else:  # radial search, exact
            if field_store.data_type == "binary":
                raise UnsupportedQueryError("Binary data type does not support radial search")
            if field_store.compression != "1x":
                raise UnsupportedQueryError("Radial search is not supported for indices which have quantization enabled")
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


def _first_pass(rescore, k: int, field_store, spec, settings: dict) -> int | None:
    """Candidates to rescore, or None for none: the query's `rescore` (an object with
    `oversample_factor`, true = factor 1.0, false = off), else the field's default. Lucene fields
    ignore it as k-NN's LuceneEngineKnnVectorQuery does."""
    if rescore is False or _engine(spec) == "lucene":
        return None
    if rescore is None:
        factor, user_provided = default_oversample(field_store.compression, field_store.mode, field_store.dim), False
        if factor is None:
            return None
    elif rescore is True:
        factor, user_provided = 1.0, False  # RescoreContext.getDefault()
    elif isinstance(rescore, dict):
        for unknown in sorted(set(rescore) - {"oversample_factor"}):
            raise EngineError(f"[rescore] unknown field [{unknown}]", 400, "x_content_parse_exception")
        factor, user_provided = rescore.get("oversample_factor", 1.0), True
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise EngineError("[rescore] oversample_factor doesn't support values of type: VALUE_STRING", 400, "x_content_parse_exception")
        for bad, bound, word in ((factor < MIN_OVERSAMPLE, MIN_OVERSAMPLE, "less"), (factor > MAX_OVERSAMPLE, MAX_OVERSAMPLE, "more")):
            if bad:
                raise EngineError(f"[knn] errors in rescore parameter [Validation Failed: 1: Oversample factor [{factor:f}] "
                                  f"cannot be {word} than [{bound:f}];]", 400, "illegal_argument_exception")
    else:
        raise EngineError("[knn] rescore must be an object or a boolean", 400, "parsing_exception")
    disabled = str(settings.get("index.knn.disk.vector.shard_level_rescoring_disabled", "false")).lower() == "true"
    return first_pass_size(k, float(factor), field_store.dim, user_provided=user_provided,
                           shard_level_rescoring_disabled=disabled)


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
