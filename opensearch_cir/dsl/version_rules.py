"""What a body asks of a cluster's version: `version_errors(kind, body, dialect)` lists every feature
of `opensearch_cir.dialect.FEATURES` that `body` uses and `dialect` lacks, plus the places where a
version reads a field differently (RRF's rank_constant). `validate_request(..., dialect=)` runs it,
and the loopback stand-in cluster of the tests answers 400 with the same messages.

It reads bodies, independently of the builders that write them, so a builder that forgets to ask
the dialect is caught by the render-every-body tests.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..dialect import Dialect


def version_errors(kind: str, body: Any, dialect: Dialect) -> list[str]:
    """Messages for each part of `body` (request `kind`) the `dialect`'s version rejects or ignores."""
    check = _CHECKS.get(kind)
    if check is None or not isinstance(body, dict):
        return []
    return list(check(body, dialect))


def _lacks(dialect: Dialect, feature: str, path: str) -> Iterator[str]:
    if not dialect.supports(feature):
        yield f"{path}: {dialect.refusal(feature)}"


def _nodes(node: Any, path: str = "$") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, f"{path}[{index}]")


def _search(body: dict, dialect: Dialect) -> Iterator[str]:
    for path, node in _nodes(body.get("query"), "$.query"):
        hybrid = node.get("hybrid")
        if isinstance(hybrid, dict) and "queries" in hybrid:
            if "filter" in hybrid:
                yield from _lacks(dialect, "hybrid_filter", f"{path}.hybrid.filter")
            if "pagination_depth" in hybrid:
                yield from _lacks(dialect, "pagination_depth", f"{path}.hybrid.pagination_depth")
        for name in ("knn", "neural"):
            clause = node.get(name)
            if not (isinstance(clause, dict) and all(isinstance(v, dict) for v in clause.values())):
                continue
            for field, params in clause.items():
                where = f"{path}.{name}.{field}"
                if "method_parameters" in params:
                    yield from _lacks(dialect, "knn_method_parameters", f"{where}.method_parameters")
                if "rescore" in params:
                    yield from _lacks(dialect, "knn_rescore", f"{where}.rescore")
                if name == "neural" and "query_image" in params and "query_text" not in params:
                    yield from _lacks(dialect, "neural_query_image", f"{where}.query_image")


def _search_pipeline(body: dict, dialect: Dialect) -> Iterator[str]:
    for index, processor in enumerate(body.get("phase_results_processors") or []):
        if not isinstance(processor, dict):
            continue
        for name, config in processor.items():
            path = f"$.phase_results_processors[{index}].{name}"
            config = config if isinstance(config, dict) else {}
            combination = config.get("combination") or {}
            parameters = combination.get("parameters") or {}
            if name == "score-ranker-processor":
                yield from _rrf(combination, parameters, dialect, f"{path}.combination")
            elif name == "normalization-processor":
                normalization = config.get("normalization") or {}
                if normalization.get("technique") == "z_score":
                    yield from _lacks(dialect, "z_score", f"{path}.normalization.technique")
                bounds = normalization.get("parameters") or {}
                if "lower_bounds" in bounds:
                    yield from _lacks(dialect, "min_max_lower_bounds", f"{path}.normalization.parameters.lower_bounds")
                if "upper_bounds" in bounds:
                    yield from _lacks(dialect, "min_max_upper_bounds", f"{path}.normalization.parameters.upper_bounds")


def _rrf(combination: dict, parameters: dict, dialect: Dialect, path: str) -> Iterator[str]:
    """RRFProcessorFactory: 2.19/3.0 read `parameters` as the rank normaliser's (rank_constant only);
    3.1+ read `rank_constant` beside `technique` and `parameters` as the combination's (weights only)."""
    yield from _lacks(dialect, "rrf", path)
    if dialect.supports("rrf_weights"):
        if "rank_constant" in parameters:
            yield (f"{path}.parameters.rank_constant: rejected since OpenSearch 3.1 (parameters take only "
                   "weights); put rank_constant beside technique")
        return
    if "weights" in parameters:
        yield from _lacks(dialect, "rrf_weights", f"{path}.parameters.weights")
    if "rank_constant" in combination:
        yield (f"{path}.rank_constant: ignored before OpenSearch 3.1 (this cluster is {dialect}); "
               "put it in combination.parameters")


def _ingest_pipeline(body: dict, dialect: Dialect) -> Iterator[str]:
    for index, processor in enumerate(body.get("processors") or []):
        config = processor.get("text_image_embedding") if isinstance(processor, dict) else None
        if isinstance(config, dict) and "skip_existing" in config:
            yield from _lacks(dialect, "skip_existing", f"$.processors[{index}].text_image_embedding.skip_existing")


def _mappings(body: dict, dialect: Dialect) -> Iterator[str]:
    root = body.get("template", body)
    for path, node in _nodes(root.get("mappings") if isinstance(root, dict) else None, "$.mappings"):
        if node.get("type") == "knn_vector" and "space_type" in node:
            yield from _lacks(dialect, "knn_top_level_space_type", f"{path}.space_type")
        if node.get("type") == "knn_vector":
            data_type = node.get("data_type")
            if data_type in ("byte", "binary"):
                yield from _lacks(dialect, f"knn_{data_type}_vector", f"{path}.data_type")
            if data_type == "binary" and (node.get("method") or {}).get("engine") == "lucene":
                yield from _lacks(dialect, "knn_binary_lucene", f"{path}.method.engine")
            for key in ("mode", "compression_level"):
                if key in node:
                    yield from _lacks(dialect, "knn_disk_mode", f"{path}.{key}")
        method = node.get("method") if node.get("type") == "knn_vector" else None
        if isinstance(method, dict) and method.get("engine") == "nmslib" and dialect.supports("nmslib_blocked"):
            yield f"{path}.method.engine: nmslib cannot be used for new indices since OpenSearch 3.0"


_CHECKS = {
    "search": _search,
    "search_pipeline.put": _search_pipeline,
    "ingest.put_pipeline": _ingest_pipeline,
    "indices.create": _mappings,
    "indices.put_index_template": _mappings,
}
