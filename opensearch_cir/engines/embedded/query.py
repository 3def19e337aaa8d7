"""Query DSL execution over an `IndexStore`, with OpenSearch's matching and scoring rules.

Two contexts, as in OpenSearch: `matches(clause)` (filter context: a bool mask over ordinals) and
`scored(clause)` (query context: every matching ordinal with its score). Each query family lives
in its own module under `clauses/` (full text, term level, k-NN; parsing helpers in `dsl.py`),
mixed into `Executor`, which keeps the compound clauses (`bool`, `constant_score`) and dispatch.
Anything not implemented raises UnsupportedQueryError naming the clause or parameter.
"""

from __future__ import annotations

import numpy as np

from ...errors import EngineError, UnsupportedQueryError
from .clauses.dsl import Scored, check_params, clause_boost, minimum_should_match, single
from .clauses.knn import MAX_KNN_K, KnnClauses
from .clauses.term_level import TermLevelClauses
from .clauses.text import TEXT_PUSHDOWN_MAX, TextClauses
from .store import IndexStore

__all__ = ["Executor", "Scored", "minimum_should_match", "MAX_KNN_K", "TEXT_PUSHDOWN_MAX"]


class Executor(TextClauses, TermLevelClauses, KnnClauses):
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
        name, body = single(clause)
        handler = getattr(self, f"_filter_{name}", None)
        if handler is not None:
            return handler(body) & self.live
        mask = np.zeros(self.n, dtype=bool)
        mask[self.scored(clause).ords] = True
        return mask

    def scored(self, clause, restrict: np.ndarray | None = None) -> Scored:
        """Query context: matching live ordinals with their scores. `restrict` is an optional mask
        the caller will intersect with anyway (it only lets text clauses skip work)."""
        name, body = single(clause)
        if name == "hybrid":
            raise EngineError("[hybrid] query must be a top level query and cannot be wrapped into other queries", 400, "illegal_argument_exception")
        handler = getattr(self, f"_query_{name}", None)
        if handler is not None:
            return handler(body, restrict)
        if hasattr(self, f"_filter_{name}"):
            return Scored.constant(self.matches({name: body}), clause_boost(body))
        raise UnsupportedQueryError(f"query clause [{name}] is not supported by the embedded engine")

    def top(self, clause, n: int, *, count: bool = True) -> tuple[Scored, int | None]:
        """The best `n` matches, ranked, and the number of matches (None when `count` is False).

        Text clauses (`match` / `term` on a text field) ask tantivy for its top hits directly instead
        of scoring every match (without counting, tantivy can skip blocks that cannot make the top
        n); everything else is scored in full and ranked.
        """
        name, body = single(clause)
        if name in ("match", "term") and n > 0:
            query, boost = self._text_clause(name, body)
            if query is not None:
                return self._text_top(query, n, boost, count)
        scored = self.scored(clause)
        return scored.ranked(n), len(scored.ords)

    # --- field helpers -----------------------------------------------------------------------------
    def _spec(self, field: str):
        return self.store.mapping.fields.get(field)

    def _column(self, field: str):
        return self.store.columns.get(field)

    def _mask_of(self, ords: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[ords] = True
        return mask

    # --- filter-context clauses (constant score 1.0 × boost in query context) ---------------------
    def _filter_match_all(self, body) -> np.ndarray:
        check_params("match_all", body or {}, {"boost", "_name"})
        return np.ones(self.n, dtype=bool)

    def _filter_match_none(self, body) -> np.ndarray:
        return np.zeros(self.n, dtype=bool)

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
        check_params("constant_score", body, {"filter", "boost", "_name"})
        return self.matches(body["filter"])

    # --- query-context clauses ---------------------------------------------------------------------

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

    # --- text ---------------------------------------------------------------------------------------

    # --- bool parsing ------------------------------------------------------------------------------
    @staticmethod
    def _bool_parts(body) -> dict[str, list]:
        if not isinstance(body, dict):
            raise EngineError("[bool] query malformed", 400, "parsing_exception")
        check_params("bool", body, {"must", "should", "filter", "must_not", "minimum_should_match", "boost", "_name", "adjust_pure_negative"})
        parts = {}
        for key in ("must", "should", "filter", "must_not"):
            value = body.get(key, [])
            parts[key] = value if isinstance(value, list) else [value]
        return parts
