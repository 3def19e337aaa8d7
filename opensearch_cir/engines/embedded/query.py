"""Query DSL execution over an `IndexStore`, with OpenSearch's matching and scoring rules.

Two contexts, as in OpenSearch: `matches(clause)` (filter context: a bool mask over ordinals) and
`scored(clause)` (query context: every matching ordinal with its score). Text clauses run on
tantivy (its BM25 ÷ 2.2 = Lucene's BM25Similarity; `legacy_bm25` keeps tantivy's ×2.2 form),
keyword / numeric / boolean clauses on in-memory columns, `knn` on the vector files.
Anything not implemented raises UnsupportedQueryError naming the clause or parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ...errors import EngineError, UnsupportedQueryError
from ...scoring import LEGACY_BM25_FACTOR, bm25_score
from .column_text import column_bm25
from .store import ORD_FIELD, IndexStore, tantivy_name

MAX_KNN_K = 10_000
# A restriction mask this small is pushed into tantivy as a term set on `_ord`.
TEXT_PUSHDOWN_MAX = 4_096


@dataclass
class Scored:
    """Matching ordinals (ascending) and their scores."""

    ords: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> "Scored":
        return cls(np.empty(0, np.int64), np.empty(0, np.float32))

    @classmethod
    def constant(cls, mask: np.ndarray, score: float) -> "Scored":
        ords = np.flatnonzero(mask).astype(np.int64)
        return cls(ords, np.full(len(ords), score, dtype=np.float32))

    def restrict(self, mask: np.ndarray | None) -> "Scored":
        if mask is None:
            return self
        keep = mask[self.ords]
        return Scored(self.ords[keep], self.scores[keep])

    def ranked(self, n: int | None = None) -> "Scored":
        """Best first (score descending, then ordinal ascending like Lucene's doc id tie-break)."""
        order = np.lexsort((self.ords, -self.scores))
        if n is not None:
            order = order[:n]
        return Scored(self.ords[order], self.scores[order])


def _single(clause, what: str = "query") -> tuple[str, object]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise EngineError(f"[{what}] malformed query, expected an object with exactly one clause, got {clause!r}", 400, "parsing_exception")
    return next(iter(clause.items()))


def _check_params(clause: str, params: dict, allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise UnsupportedQueryError(f"[{clause}] parameter(s) {sorted(unknown)} are not supported by the embedded engine")


def _field_and_params(clause: str, body, value_key: str, allowed: set[str], *, required: bool = True) -> tuple[str, dict]:
    if not isinstance(body, dict):
        raise EngineError(f"[{clause}] query malformed", 400, "parsing_exception")
    extra = {k: v for k, v in body.items() if k in ("boost", "_name")}
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise EngineError(f"[{clause}] query doesn't support multiple fields, found {fields}", 400, "parsing_exception")
    field = fields[0]
    params = body[field]
    params = dict(params) if isinstance(params, dict) else {value_key: params}
    params.update(extra)
    _check_params(clause, params, allowed | {value_key, "boost", "_name"})
    if required and value_key not in params:
        raise EngineError(f"[{clause}] query on [{field}] has no [{value_key}]", 400, "parsing_exception")
    return field, params


def minimum_should_match(spec, n_optional: int) -> int:
    """OpenSearch's `minimum_should_match`: integer, negative integer, or (negative) percentage."""
    if spec is None:
        return 0
    text = str(spec).strip()
    if not re.fullmatch(r"-?\d+%?", text):
        raise UnsupportedQueryError(f"minimum_should_match {spec!r} (combinations are not supported)")
    if text.endswith("%"):
        pct = int(text[:-1])
        value = int(math.floor(n_optional * abs(pct) / 100.0))
        result = n_optional - value if pct < 0 else value
    else:
        number = int(text)
        result = n_optional + number if number < 0 else number
    return max(0, min(result, n_optional)) if result >= 0 else 0


class Executor:
    """Runs clauses against one consistent view of an index (refreshed by the caller)."""

    def __init__(self, store: IndexStore, *, legacy_bm25: bool = False, hnsw_threshold: int = 50_000):
        self.store = store
        self.legacy_bm25 = legacy_bm25
        self.hnsw_threshold = hnsw_threshold
        self.live = store.live()
        self.n = store.n_ords
        self._searcher = None

    # --- entry points ------------------------------------------------------------------------------
    def matches(self, clause) -> np.ndarray:
        """Filter context: a bool mask over ordinals (always within live documents)."""
        name, body = _single(clause)
        handler = getattr(self, f"_filter_{name}", None)
        if handler is not None:
            return handler(body) & self.live
        mask = np.zeros(self.n, dtype=bool)
        mask[self.scored(clause).ords] = True
        return mask

    def scored(self, clause, restrict: np.ndarray | None = None) -> Scored:
        """Query context: matching live ordinals with their scores. `restrict` is an optional mask
        the caller will intersect with anyway (it only lets text clauses skip work)."""
        name, body = _single(clause)
        if name == "hybrid":
            raise EngineError("[hybrid] query must be a top level query and cannot be wrapped into other queries", 400, "illegal_argument_exception")
        handler = getattr(self, f"_query_{name}", None)
        if handler is not None:
            return handler(body, restrict)
        if hasattr(self, f"_filter_{name}"):
            return Scored.constant(self.matches({name: body}), _clause_boost(body))
        raise UnsupportedQueryError(f"query clause [{name}] is not supported by the embedded engine")

    def top(self, clause, n: int, *, count: bool = True) -> tuple[Scored, int | None]:
        """The best `n` matches, ranked, and the number of matches (None when `count` is False).

        Text clauses (`match` / `term` on a text field) ask tantivy for its top hits directly instead
        of scoring every match (without counting, tantivy can skip blocks that cannot make the top
        n); everything else is scored in full and ranked.
        """
        name, body = _single(clause)
        if name in ("match", "term") and n > 0:
            query, boost = self._text_clause(name, body)
            if query is not None:
                return self._text_top(query, n, boost, count)
        scored = self.scored(clause)
        return scored.ranked(n), len(scored.ords)

    def _text_clause(self, name: str, body):
        """(tantivy query, boost) when a match/term clause targets a text field, else (None, 1)."""
        if name == "match":
            _, params, query = self._match_query(body)
            return query, float(params.get("boost", 1.0))
        field, params = _field_and_params("term", body, "value", {"case_insensitive"})
        spec = self._spec(field)
        if spec is None or spec.type != "text" or params.get("case_insensitive") or self.store.is_column_text(field):
            return None, 1.0
        return self._text_term_query(field, str(params["value"])), float(params.get("boost", 1.0))

    def _text_top(self, query, n: int, boost: float, count: bool) -> tuple[Scored, int | None]:
        searcher = self.store.text_index.searcher()
        limit = n + 16  # slack so that ties at the cut are re-ranked by ordinal like Lucene
        while True:
            result = searcher.search(query, limit, count=count)
            hits = result.hits
            ords = self.store.text_ordinals(searcher, hits)
            scores = np.fromiter((score for score, _ in hits), dtype=np.float32, count=len(hits))
            visible = ords < self.n
            visible[visible] = self.live[ords[visible]]
            if visible.all() or len(hits) < limit:
                break
            limit *= 4  # invisible (uncommitted or deleted) hits took places: fetch deeper
        ords, scores = ords[visible], self._lucene_scale(scores[visible]) * np.float32(boost)
        if not count:
            total = None
        else:
            total = result.count - int((~visible).sum()) if len(hits) < limit else result.count
        return Scored(ords, scores).ranked(n), total

    def _lucene_scale(self, scores: np.ndarray) -> np.ndarray:
        if self.legacy_bm25:
            return scores
        return (scores.astype(np.float64) / LEGACY_BM25_FACTOR).astype(np.float32)

    # --- field helpers -----------------------------------------------------------------------------
    def _spec(self, field: str):
        return self.store.mapping.fields.get(field)

    def _column(self, field: str):
        return self.store.columns.get(field)

    def _mask_of(self, ords: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[ords] = True
        return mask

    def _coerce(self, spec, value, clause: str):
        if spec.type == "keyword":
            return value if isinstance(value, str) else ("true" if value is True else "false" if value is False else str(value))
        if spec.type == "boolean":
            if value in (True, "true"):
                return True
            if value in (False, "false"):
                return False
            raise EngineError(f"[{clause}] can't parse [{value}] as boolean", 400, "query_shard_exception")
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

    # --- filter-context clauses (constant score 1.0 × boost in query context) ---------------------
    def _filter_match_all(self, body) -> np.ndarray:
        _check_params("match_all", body or {}, {"boost", "_name"})
        return np.ones(self.n, dtype=bool)

    def _filter_match_none(self, body) -> np.ndarray:
        return np.zeros(self.n, dtype=bool)

    def _filter_terms(self, body) -> np.ndarray:
        if not isinstance(body, dict):
            raise EngineError("[terms] query malformed", 400, "parsing_exception")
        _check_params("terms", {k: v for k, v in body.items() if not isinstance(v, list)}, {"boost", "_name"})
        fields = [k for k, v in body.items() if isinstance(v, list)]
        if len(fields) != 1:
            raise EngineError(f"[terms] query requires exactly one field with an array of values, got {sorted(body)}", 400, "parsing_exception")
        return self._value_mask(fields[0], body[fields[0]], "terms")

    def _filter_range(self, body) -> np.ndarray:
        field, params = _field_and_params("range", body, "gte", {"gt", "lt", "lte", "format", "relation"}, required=False)
        params = {k: v for k, v in params.items() if k not in ("boost", "_name")}
        if params.get("relation", "intersects").lower() != "intersects" or "format" in params:
            raise UnsupportedQueryError("[range] parameters format/relation are not supported by the embedded engine")
        bounds = {k: v for k, v in params.items() if k in ("gt", "gte", "lt", "lte") and v is not None}
        spec, column = self._spec(field), self._column(field)
        mask = np.zeros(self.n, dtype=bool)
        if spec is None or column is None:
            return mask
        if spec.type == "keyword":
            for value, postings in column.postings.items():
                if _in_range(value, {k: str(v) for k, v in bounds.items()}):
                    mask[self.store.ords_array((field, value), postings)] = True
            return mask
        if spec.type not in ("long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"):
            raise UnsupportedQueryError(f"[range] on field [{field}] of type [{spec.type}] is not supported by the embedded engine")
        ords, vals = self._numeric(field, column)
        keep = np.ones(len(vals), dtype=bool)
        for op, bound in bounds.items():
            b = self._coerce(spec, bound, "range")
            keep &= {"gt": vals > b, "gte": vals >= b, "lt": vals < b, "lte": vals <= b}[op]
        mask[ords[keep]] = True
        return mask

    def _filter_exists(self, body) -> np.ndarray:
        _check_params("exists", body, {"field", "boost", "_name"})
        field = body.get("field")
        if field == "_id":
            return self.live.copy()
        mask = np.zeros(self.n, dtype=bool)
        for path, column in self.store.columns.items():
            if path == field or path.startswith(field + ".") and field not in self.store.mapping.fields:
                mask[self.store.ords_array((path, "#present"), column.present)] = True
        return mask

    def _filter_prefix(self, body) -> np.ndarray:
        """`prefix` (constant score): ids, keyword values, or the indexed tokens of a text field."""
        field, params = _field_and_params("prefix", body, "value", {"case_insensitive", "rewrite"})
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
        _check_params("ids", body, {"values", "boost", "_name"})
        ords = [self.store.current(str(v)) for v in body.get("values", [])]
        return self._mask_of(np.array([o for o in ords if o is not None], dtype=np.int64))

    def _filter_bool(self, body) -> np.ndarray:
        parts = self._bool_parts(body)
        mask = np.ones(self.n, dtype=bool)
        for clause in parts["filter"] + parts["must"]:
            mask &= self.matches(clause)
        for clause in parts["must_not"]:
            mask &= ~self.matches(clause)
        should = parts["should"]
        msm = minimum_should_match(body.get("minimum_should_match"), len(should))
        if should and not (parts["filter"] or parts["must"]) and body.get("minimum_should_match") is None:
            msm = 1
        if msm:
            counts = np.zeros(self.n, dtype=np.int32)
            for clause in should:
                counts += self.matches(clause)
            mask &= counts >= msm
        return mask

    def _filter_constant_score(self, body) -> np.ndarray:
        _check_params("constant_score", body, {"filter", "boost", "_name"})
        return self.matches(body["filter"])

    # --- query-context clauses ---------------------------------------------------------------------
    def _query_term(self, body, restrict) -> Scored:
        field, params = _field_and_params("term", body, "value", {"case_insensitive"})
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

    def _query_match(self, body, restrict) -> Scored:
        field, params, query = self._match_query(body)
        boost = float(params.get("boost", 1.0))
        if query is None:
            spec = self._spec(field)
            if self.store.is_column_text(field):
                return self._column_match(field, params, boost, restrict)
            if field != "_id" and (spec is None or spec.type == "text"):
                return Scored.empty()  # unmapped field, or no tokens left after analysis
            return self._query_term({field: {"value": params["query"], "boost": boost}}, restrict)
        hits = self._text_hits(query, restrict)
        return Scored(hits.ords, hits.scores * np.float32(boost))

    def _match_query(self, body):
        """(field, params, tantivy query) for a `match` clause; the query is None when the field is
        not a text field or analysis leaves no tokens."""
        field, params = _field_and_params("match", body, "query", {"operator", "minimum_should_match", "zero_terms_query"})
        operator = str(params.get("operator", "or")).lower()
        if operator not in ("or", "and"):
            raise EngineError(f"[match] unknown operator [{operator}]", 400, "parsing_exception")
        if params.get("zero_terms_query", "none") != "none":
            raise UnsupportedQueryError("[match] zero_terms_query other than none is not supported by the embedded engine")
        if self.store.is_column_text(field):
            return field, params, None
        spec = self._spec(field)
        if spec is None or spec.type != "text":
            if "minimum_should_match" in params:
                raise UnsupportedQueryError("[match] minimum_should_match on a non-text field")
            return field, params, None
        import tantivy

        tokens = [t for t in self.store.analyzers[field](str(params["query"])) if t]
        if not tokens:
            return field, params, None
        occur = tantivy.Occur.Must if operator == "and" else tantivy.Occur.Should
        clauses = [(occur, self._text_term_query(field, token)) for token in tokens]
        if params.get("minimum_should_match") is None:
            return field, params, tantivy.Query.boolean_query(clauses)
        if operator == "and":
            raise UnsupportedQueryError("[match] minimum_should_match with operator and")
        msm = minimum_should_match(params["minimum_should_match"], len(clauses))
        return field, params, tantivy.Query.boolean_query(clauses, msm) if msm else tantivy.Query.boolean_query(clauses)

    def _query_bool(self, body, restrict) -> Scored:
        parts = self._bool_parts(body)
        boost = np.float32(body.get("boost", 1.0))
        mask = self.live.copy() if restrict is None else (self.live & restrict)
        for clause in parts["filter"]:
            mask &= self.matches(clause)
        for clause in parts["must_not"]:
            mask &= ~self.matches(clause)
        totals = np.zeros(self.n, dtype=np.float32)
        for clause in parts["must"]:
            hits = self.scored(clause, mask).restrict(mask)
            totals[hits.ords] += hits.scores
            mask &= self._mask_of(hits.ords)
        should = parts["should"]
        msm = minimum_should_match(body.get("minimum_should_match"), len(should))
        if should and not (parts["filter"] or parts["must"]) and body.get("minimum_should_match") is None:
            msm = 1
        counts = np.zeros(self.n, dtype=np.int32)
        for clause in should:
            hits = self.scored(clause, mask).restrict(mask)
            totals[hits.ords] += hits.scores
            counts[hits.ords] += 1
        if msm:
            mask &= counts >= msm
        ords = np.flatnonzero(mask).astype(np.int64)
        return Scored(ords, totals[ords] * boost)

    def _query_constant_score(self, body, restrict) -> Scored:
        return Scored.constant(self._filter_constant_score(body) & self.live, float(body.get("boost", 1.0)))

    def _query_knn(self, body, restrict) -> Scored:
        field, params = _field_and_params("knn", body, "vector", {"k", "filter", "method_parameters", "min_score", "max_distance", "rescore", "expand_nested_docs"})
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
        _check_params("knn.method_parameters", method, {"ef_search"})
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
            ef = int(method.get("ef_search", self.store.settings.get("index.knn.algo_param.ef_search", 100)))
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

    # --- text ---------------------------------------------------------------------------------------
    def _text_term(self, field: str, token: str, restrict: np.ndarray | None = None) -> Scored:
        """One exact token on a text field, BM25-scored (tantivy or column-indexed field)."""
        if self.store.is_column_text(field):
            ords, scores, _ = column_bm25(self.store, self.live, field, [token], legacy=self.legacy_bm25)
            return Scored(ords, scores).restrict(restrict)
        return self._text_hits(self._text_term_query(field, token), restrict)

    def _column_match(self, field: str, params: dict, boost: float, restrict) -> Scored:
        """`match` on a column-indexed text field: one SHOULD clause per token (MUST for `and`)."""
        tokens = [t for t in self.store.analyzers[field](str(params["query"])) if t]
        ords, scores, matched = column_bm25(self.store, self.live, field, tokens, legacy=self.legacy_bm25)
        if str(params.get("operator", "or")).lower() == "and":
            required = len(tokens)
        else:
            required = max(1, minimum_should_match(params.get("minimum_should_match"), len(tokens)))
        keep = matched >= required
        return Scored(ords[keep], scores[keep] * np.float32(boost)).restrict(restrict)

    def _text_term_query(self, field: str, token: str):
        import tantivy

        return tantivy.Query.term_query(self.store.text_schema, tantivy_name(field), token)

    def _text_hits(self, query, restrict: np.ndarray | None = None) -> Scored:
        """Every visible document matching a tantivy query, with Lucene BM25 scores."""
        import tantivy

        searcher = self.store.text_index.searcher()
        if restrict is not None:
            allowed = np.flatnonzero(restrict & self.live)
            if len(allowed) == 0:
                return Scored.empty()
            if len(allowed) <= TEXT_PUSHDOWN_MAX:
                ord_filter = tantivy.Query.term_set_query(self.store.text_schema, ORD_FIELD, [int(o) for o in allowed])
                query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, tantivy.Query.const_score_query(ord_filter, 0.0))])
        count = searcher.search(query, 1, count=True).count
        if count == 0:
            return Scored.empty()
        hits = searcher.search(query, count, count=False).hits
        ords = self.store.text_ordinals(searcher, hits)
        scores = np.fromiter((score for score, _ in hits), dtype=np.float32, count=len(hits))
        visible = (ords < self.n)
        ords, scores = ords[visible], scores[visible]
        keep = self.live[ords]
        ords, scores = ords[keep], scores[keep]
        order = np.argsort(ords, kind="stable")
        return Scored(ords[order], self._lucene_scale(scores[order]))

    # --- bool parsing ------------------------------------------------------------------------------
    @staticmethod
    def _bool_parts(body) -> dict[str, list]:
        if not isinstance(body, dict):
            raise EngineError("[bool] query malformed", 400, "parsing_exception")
        _check_params("bool", body, {"must", "should", "filter", "must_not", "minimum_should_match", "boost", "_name", "adjust_pure_negative"})
        parts = {}
        for key in ("must", "should", "filter", "must_not"):
            value = body.get(key, [])
            parts[key] = value if isinstance(value, list) else [value]
        return parts


def _clause_boost(body) -> float:
    """The boost of a filter-like clause: top level (`terms`, `ids`...) or in its one field's object
    (`range`, `prefix`)."""
    if not isinstance(body, dict):
        return 1.0
    if "boost" in body:
        return float(body["boost"])
    fields = [v for k, v in body.items() if k != "_name"]
    if len(fields) == 1 and isinstance(fields[0], dict):
        return float(fields[0].get("boost", 1.0))
    return 1.0


def _in_range(value: str, bounds: dict[str, str]) -> bool:
    return all(
        {"gt": value > b, "gte": value >= b, "lt": value < b, "lte": value <= b}[op] for op, b in bounds.items()
    )


def _engine(spec) -> str:
    return (spec.params.get("method") or {}).get("engine", "faiss")


def _distance_to_score(distance: float, space: str, engine: str = "faiss") -> float:
    """k-NN's max_distance → min_score conversion for a space type and engine (Lucene.java
    DISTANCE_TRANSLATIONS: on a Lucene innerproduct field the distance is the inner product)."""
    from ...scoring import knn_score

    if space == "l2":
        return float(knn_score(distance, "l2"))
    if space == "innerproduct":
        if engine == "lucene":
            return 1 / (1 - distance) if distance <= 0 else distance + 1
        return float(knn_score(-distance, "innerproduct"))
    if space == "cosinesimil":
        return float(knn_score(1 - distance, "cosinesimil"))
    raise UnsupportedQueryError(f"[knn] max_distance for space_type {space}")
