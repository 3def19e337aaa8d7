"""`sort` and `min_score` of a search body, as OpenSearch applies them on one shard.

Sort keys: `_score` (default desc), `_doc`, and keyword / numeric / boolean fields (default asc;
a multi-valued field sorts by its min for asc, max for desc, or `mode` min / max; `missing` is
`_last` or `_first`). Numbers are kept as float64: longs beyond 2^53 sort in order but their sort
values are rounded.
Ties fall back to the document order, like Lucene's doc id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import EngineError, UnsupportedQueryError
from .mapping import COLUMN_NUMBER_TYPES, INTEGER_TYPES


@dataclass
class SortKey:
    field: str
    descending: bool
    missing_first: bool
    mode: str = ""  # "min" | "max" | "" (min for asc, max for desc)


def parse_sort(spec) -> list[SortKey]:
    """The `sort` body value (a string, an object or a list of them) as sort keys."""
    items = spec if isinstance(spec, list) else [spec]
    keys = []
    for item in items:
        if isinstance(item, str):
            field, options = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            (field, options), = item.items()
            options = {"order": options} if isinstance(options, str) else options
        else:
            raise EngineError(f"malformed sort {item!r}", 400, "parsing_exception")
        if not isinstance(options, dict) or set(options) - {"order", "missing", "unmapped_type", "mode"}:
            raise EngineError(f"[{field}] sort options {options!r} are not supported", 400, "parsing_exception")
        order = str(options.get("order", "desc" if field == "_score" else "asc")).lower()
        if order not in ("asc", "desc"):
            raise EngineError(f"[sort] unknown order [{order}]", 400, "parsing_exception")
        missing = str(options.get("missing", "_last"))
        if missing not in ("_last", "_first"):
            raise EngineError("[sort] only missing: _last or _first is supported", 400, "illegal_argument_exception")
        mode = str(options.get("mode", ""))
        if mode not in ("", "min", "max"):
            raise UnsupportedQueryError(f"sort mode [{mode}] is not supported by the embedded engine (min, max are)")
        keys.append(SortKey(field, order == "desc", missing == "_first", mode))
    return keys


def _field_values(store, key: SortKey, n: int) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(numeric sort value per ordinal, present mask, labels for keyword ranks or None)."""
    spec = store.mapping.fields.get(key.field)
    column = store.columns.get(key.field)
    use_max = (key.mode or ("max" if key.descending else "min")) == "max"
    values = np.full(n, -np.inf if use_max else np.inf)
    if spec is None or column is None:
        return values, np.zeros(n, dtype=bool), None
    reduce = np.maximum if use_max else np.minimum
    if spec.type in ("keyword", "boolean"):
        labels = sorted(column.postings, key=lambda v: (str(v) if spec.type == "keyword" else int(v)))
        for rank, label in enumerate(labels):
            reduce.at(values, store.ords_array((key.field, label), column.postings[label]), float(rank))
        return values, np.isfinite(values), labels
    if spec.type in COLUMN_NUMBER_TYPES:
        ords = store.ords_array((key.field, "#ords"), column.num_ords)
        vals = np.frombuffer(column.num_vals, dtype=np.float64) if len(column.num_vals) else np.empty(0)
        reduce.at(values, ords, vals)
        return values, np.isfinite(values), None
    raise EngineError(
        f"Text fields are not optimised for operations that require per-document field data like aggregations and sorting, "
        f"so these operations are disabled by default. Please use a keyword field instead [{key.field}]"
        if spec.type == "text" else f"field [{key.field}] of type [{spec.type}] does not support sorting",
        400, "illegal_argument_exception")


def sort_hits(store, ords: np.ndarray, scores: np.ndarray, keys: list[SortKey]) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """(ordinals, scores, sort values per hit) in sort order."""
    n = store.n_ords
    columns, renderers = [], []
    for key in keys:
        if key.field == "_score":
            column = scores.astype(np.float64)
            renderers.append(lambda i, c=column: float(np.float32(c[i])))
        elif key.field == "_doc":
            column = ords.astype(np.float64)
            renderers.append(lambda i, c=column: int(c[i]))
        else:
            values, present, labels = _field_values(store, key, n)
            column, has = values[ords], present[ords]
            spec = store.mapping.fields.get(key.field)
            integer = spec is not None and (spec.type in INTEGER_TYPES or spec.type == "date")

            def render(i, c=column, h=has, labels=labels, integer=integer):
                if not h[i]:
                    return None
                if labels is not None:
                    return labels[int(c[i])]
                return int(c[i]) if integer else float(c[i])

            renderers.append(render)
            last = np.inf if not key.descending else -np.inf
            column = np.where(has, column, -last if key.missing_first else last)
        columns.append(-column if key.descending else column)
    order = np.lexsort([ords] + columns[::-1])
    sort_values = [[render(i) for render in renderers] for i in order]
    return ords[order], scores[order], sort_values
