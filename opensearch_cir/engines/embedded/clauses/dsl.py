"""Shared pieces of query parsing and execution: `Scored` results and clause-body helpers
(one clause per object, unknown parameters refused, boosts, minimum_should_match)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ....errors import EngineError, UnsupportedQueryError


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


def single(clause, what: str = "query") -> tuple[str, object]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise EngineError(f"[{what}] malformed query, expected an object with exactly one clause, got {clause!r}", 400, "parsing_exception")
    return next(iter(clause.items()))


def check_params(clause: str, params: dict, allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise UnsupportedQueryError(f"[{clause}] parameter(s) {sorted(unknown)} are not supported by the embedded engine")


def field_and_params(clause: str, body, value_key: str, allowed: set[str], *, required: bool = True) -> tuple[str, dict]:
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
    check_params(clause, params, allowed | {value_key, "boost", "_name"})
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


def clause_boost(body) -> float:
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


def in_range(value: str, bounds: dict[str, str]) -> bool:
    return all(
        {"gt": value > b, "gte": value >= b, "lt": value < b, "lte": value <= b}[op] for op, b in bounds.items()
    )
