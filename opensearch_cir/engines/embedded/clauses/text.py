"""Full-text clauses: `match`, and `term` on text fields. Tantivy-indexed fields run on tantivy
(its BM25 ÷ 2.2 = Lucene's BM25Similarity; `legacy_bm25` keeps the ×2.2 form); text fields mapped
after creation run on their in-memory column (column_text.py)."""

from __future__ import annotations

import numpy as np

from ....errors import EngineError, UnsupportedQueryError
from ....scoring import LEGACY_BM25_FACTOR
from ..column_text import column_bm25
from ..store import ORD_FIELD, tantivy_name
from .dsl import Scored, field_and_params, minimum_should_match, single

# A restriction mask this small is pushed into tantivy as a term set on `_ord`.
TEXT_PUSHDOWN_MAX = 4_096
# Up to this many ordinals, a set of them is a boolean of term queries (faster than term_set_query).
ORD_TERMS_MAX = 1_024


class TextClauses:
    """Mixin of `Executor`: match / text term execution."""

    def _text_clause(self, name: str, body):
        """(tantivy query, boost) when a match/term clause targets a text field, else (None, 1)."""
        if name == "match":
            _, params, query = self._match_query(body)
            return query, float(params.get("boost", 1.0))
        field, params = field_and_params("term", body, "value", {"case_insensitive"})
        spec = self._spec(field)
        if spec is None or spec.type != "text" or params.get("case_insensitive") or self.store.is_column_text(field):
            return None, 1.0
        return self._text_term_query(field, str(params["value"])), float(params.get("boost", 1.0))

    def text_query(self, clause):
        """The tantivy query of a match/term clause on a tantivy-indexed text field, else None."""
        name, body = single(clause)
        if name not in ("match", "term"):
            return None
        return self._text_clause(name, body)[0]

    def text_union_count(self, queries: list, others: np.ndarray) -> int | None:
        """How many visible documents match one of the tantivy `queries` or are set in the mask
        `others`, counted by tantivy: the union's count, less its hidden (deleted, or past this
        view) documents, plus the `others` it does not match. None when the hidden documents or
        `others` are too many to push down as term sets (the caller then scores every match)."""
        import tantivy

        hidden = np.flatnonzero(~self.live)
        extra = np.flatnonzero(others & self.live)
        if len(hidden) > TEXT_PUSHDOWN_MAX or len(extra) > TEXT_PUSHDOWN_MAX:
            return None
        union = queries[0] if len(queries) == 1 else tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in queries])
        searcher = self.store.text_index.searcher()

        def count(restriction=None) -> int:  # constant scores: counting skips BM25 (~1.5x faster)
            query = union if restriction is None else tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, union), (tantivy.Occur.Must, restriction)])
            return searcher.search(tantivy.Query.const_score_query(query, 0.0), 1, count=True).count

        beyond = tantivy.Query.range_query(self.store.text_schema, ORD_FIELD, tantivy.FieldType.Unsigned, lower_bound=self.n,
                                           use_inverted_index=True)  # intersected through postings: ~free when empty
        total = count() - count(tantivy.Query.boolean_query([(tantivy.Occur.Should, beyond), (tantivy.Occur.Should, self._ord_set(hidden))])
                                if len(hidden) else beyond)
        if len(extra):
            total += len(extra) - count(self._ord_set(extra))
        return total

    def _ord_set(self, ordinals: np.ndarray):
        """A tantivy query matching these document ordinals: a boolean of term queries up to
        ORD_TERMS_MAX (a 200-ordinal one counts ~7x faster than a term_set_query), else a term set."""
        import tantivy

        schema = self.store.text_schema
        if len(ordinals) > ORD_TERMS_MAX:
            return tantivy.Query.term_set_query(schema, ORD_FIELD, [int(o) for o in ordinals])
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(schema, ORD_FIELD, int(o))) for o in ordinals])

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
        field, params = field_and_params("match", body, "query", {"operator", "minimum_should_match", "zero_terms_query"})
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
                ord_filter = tantivy.Query.const_score_query(self._ord_set(allowed), 0.0)
                query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, ord_filter)])
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
