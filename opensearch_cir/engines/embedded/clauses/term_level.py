"""Term-level clauses on keyword, numeric, boolean and `_id` fields: `term`, `terms`, `range`,
`exists`, `prefix`, `ids` (constant score, except 2.x-mode keyword `term`: BM25)."""

from __future__ import annotations

import numpy as np

from ....errors import EngineError, UnsupportedQueryError
from ....scoring import bm25_score
from ..store import tantivy_name
from ..dates import bound_millis, check_format, to_millis
from ..mapping import COLUMN_NUMBER_TYPES
from .dsl import Scored, check_params, field_and_params, in_range


class TermLevelClauses:
    """Mixin of `Executor`: term-level clause execution over the in-memory columns."""

    def _coerce(self, spec, value, clause: str):
        if spec.type == "keyword":
            return value if isinstance(value, str) else ("true" if value is True else "false" if value is False else str(value))
        if spec.type == "boolean":
            if value in (True, "true"):
                return True
            if value in (False, "false"):
                return False
            raise EngineError(f"[{clause}] can't parse [{value}] as boolean", 400, "query_shard_exception")
        if spec.type == "date":
            return to_millis(value, spec.path)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise EngineError(f"[{clause}] failed to parse [{value}] for field [{spec.path}] of type [{spec.type}]", 400, "query_shard_exception") from None

    def _value_mask(self, field: str, values: list, clause: str) -> np.ndarray:
        if field == "_id":  # OpenSearch's _id field answers term/terms/match like `ids`
            return self._filter_ids({"values": [str(v) for v in values]})
        spec = self._spec(field)
        column = self._column(field)
        mask = np.zeros(self.n, dtype=bool)
        if spec is None or column is None:
            return mask
        if spec.type == "text":
            for value in values:
                mask[self._text_term(field, str(value)).ords] = True
            return mask
        if spec.type == "knn_vector":
            raise EngineError(f"field [{field}] of type [knn_vector] does not support term queries", 400, "query_shard_exception")
        for value in values:
            coerced = self._coerce(spec, value, clause)
            if spec.type in ("keyword", "boolean"):
                postings = column.postings.get(coerced)
                if postings is not None:
                    mask[self.store.ords_array((field, coerced), postings)] = True
            else:
                ords, vals = self._numeric(field, column)
                mask[ords[vals == coerced]] = True
        return mask

    def _numeric(self, field, column):
        return (
            self.store.ords_array((field, "#ords"), column.num_ords),
            np.frombuffer(column.num_vals, dtype=np.float64) if len(column.num_vals) else np.empty(0),
        )

    def _filter_terms(self, body) -> np.ndarray:
        if not isinstance(body, dict):
            raise EngineError("[terms] query malformed", 400, "parsing_exception")
        check_params("terms", {k: v for k, v in body.items() if not isinstance(v, list)}, {"boost", "_name"})
        fields = [k for k, v in body.items() if isinstance(v, list)]
        if len(fields) != 1:
            raise EngineError(f"[terms] query requires exactly one field with an array of values, got {sorted(body)}", 400, "parsing_exception")
        return self._value_mask(fields[0], body[fields[0]], "terms")

    def _filter_range(self, body) -> np.ndarray:
        field, params = field_and_params("range", body, "gte", {"gt", "lt", "lte", "format", "relation"}, required=False)
        params = {k: v for k, v in params.items() if k not in ("boost", "_name")}
        if params.get("relation", "intersects").lower() != "intersects":
            raise UnsupportedQueryError("[range] relation is not supported by the embedded engine")
        bounds = {k: v for k, v in params.items() if k in ("gt", "gte", "lt", "lte") and v is not None}
        spec, column = self._spec(field), self._column(field)
        mask = np.zeros(self.n, dtype=bool)
        if spec is None or column is None:
            return mask
        if spec.type == "keyword":
            for value, postings in column.postings.items():
                if in_range(value, {k: str(v) for k, v in bounds.items()}):
                    mask[self.store.ords_array((field, value), postings)] = True
            return mask
        if spec.type not in COLUMN_NUMBER_TYPES:
            raise UnsupportedQueryError(f"[range] on field [{field}] of type [{spec.type}] is not supported by the embedded engine")
        if "format" in params:
            if spec.type != "date":
                raise EngineError(f"[range] format is only supported on date fields, not [{field}]", 400, "query_shard_exception")
            check_format(field, params["format"])
        ords, vals = self._numeric(field, column)
        keep = np.ones(len(vals), dtype=bool)
        for op, bound in bounds.items():
            if spec.type == "date":  # date math rounds up for gt / lte, down for gte / lt
                b = bound_millis(bound, round_up=op in ("gt", "lte"))
            else:
                b = self._coerce(spec, bound, "range")
            keep &= {"gt": vals > b, "gte": vals >= b, "lt": vals < b, "lte": vals <= b}[op]
        mask[ords[keep]] = True
        return mask

    def _filter_exists(self, body) -> np.ndarray:
        check_params("exists", body, {"field", "boost", "_name"})
        field = body.get("field")
        if not isinstance(field, str):
            raise EngineError("[exists] must be provided with a [field]", 400, "parsing_exception")
        if field in ("_id", "_index", "_seq_no", "_version", "_primary_term"):  # every document has them
            return self.live.copy()
        if field == "_source":
            raise EngineError("Field [_source] of type [_source] does not support exists queries", 400, "query_shard_exception")
        if field == "_routing":
            raise UnsupportedQueryError("routing is not supported by the embedded engine")
        mask = np.zeros(self.n, dtype=bool)
        for path, column in self.store.columns.items():
            if path == field or path.startswith(field + ".") and field not in self.store.mapping.fields:
                mask |= self.store.ords_mask((path, "#present"), column.present, self.n)
        return mask

    def _filter_prefix(self, body) -> np.ndarray:
        """`prefix` (constant score): ids, keyword values, or the indexed tokens of a text field."""
        field, params = field_and_params("prefix", body, "value", {"case_insensitive", "rewrite"})
        prefix = str(params["value"])
        insensitive = str(params.get("case_insensitive", False)).lower() == "true"

        def starts(value) -> bool:
            text = str(value)
            return text.lower().startswith(prefix.lower()) if insensitive else text.startswith(prefix)

        if field == "_id":
            return self._filter_ids({"values": [i for i in self.store.id_to_ord if starts(i)]})
        spec, column = self._spec(field), self._column(field)
        mask = np.zeros(self.n, dtype=bool)
        if spec is None or column is None:
            return mask
        if spec.type == "text" and not self.store.is_column_text(field):
            import regex
            import tantivy

            pattern = ("(?i)" if insensitive else "") + regex.escape(prefix, special_only=False) + ".*"
            mask[self._text_hits(tantivy.Query.regex_query(self.store.text_schema, tantivy_name(field), pattern)).ords] = True
            return mask
        if spec.type not in ("keyword", "text"):
            raise EngineError(f"Can only use prefix queries on keyword and text fields - not on [{field}] which is of type [{spec.type}]", 400, "query_shard_exception")
        for value, postings in column.postings.items():
            if starts(value):
                mask[self.store.ords_array((field, value), postings)] = True
        return mask

    def _filter_ids(self, body) -> np.ndarray:
        check_params("ids", body, {"values", "boost", "_name"})
        ords = [self.store.current(str(v)) for v in body.get("values", [])]
        return self._mask_of(np.array([o for o in ords if o is not None], dtype=np.int64))

    def _query_term(self, body, restrict) -> Scored:
        field, params = field_and_params("term", body, "value", {"case_insensitive"})
        if params.get("case_insensitive"):
            raise UnsupportedQueryError("[term] case_insensitive is not supported by the embedded engine")
        boost = float(params.get("boost", 1.0))
        spec = self._spec(field)
        if spec is not None and spec.type == "text":
            hits = self._text_term(field, str(params["value"]), restrict)
            return Scored(hits.ords, hits.scores * np.float32(boost))
        mask = self._value_mask(field, [params["value"]], "term") & self.live
        if spec is None or spec.type != "keyword" or not self.legacy_bm25:
            # numeric/boolean/_id term queries are constant score; since OpenSearch 3.0 keyword ones too
            # (opensearch-project/OpenSearch#17823); 2.x scores a keyword term with BM25
            return Scored.constant(mask, boost)
        return Scored.constant(mask, self._keyword_bm25(field, int(mask.sum()), boost))

    def _keyword_bm25(self, field: str, doc_freq: int, boost: float) -> float:
        """Lucene BM25 for a keyword term (norms off → length 1, freq 1; avgdl = postings / docs)."""
        column = self._column(field)
        live = self.live
        present = self.store.ords_array((field, "#present"), column.present)
        doc_count = int(live[present].sum())
        total_postings = sum(int(live[self.store.ords_array((field, v), p)].sum()) for v, p in column.postings.items())
        score = bm25_score(1, 1, doc_count=doc_count, doc_freq=doc_freq, avg_doc_length=total_postings / max(doc_count, 1), boost=boost, legacy=self.legacy_bm25)
        return score
