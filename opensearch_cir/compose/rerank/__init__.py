"""A second stage after any strategy: rerankers over the top-K candidates (one module per reranker).

    query = CompositeQuery(doc_ids=[ref], text="in navy", rerank=["exact", "intersection"])
    response = search(client, index, query, encoder)        # first stage at depth K, then the chain

| name           | follows            | own score per candidate                                          |
|----------------|--------------------|------------------------------------------------------------------|
| `exact`        | WeiMoCIR's score    | exact caption-aware cosine with the composed vector (no HNSW)   |
| `intersection` | SETR               | agreed by image side and text side first, then the composed score |
| `expansion`    | SuperGlobal        | exact score with the query refined by its top neighbours        |
| `clauses`      | NDCR               | per-clause evidence, negated clauses subtracted                 |
| callable / URL | SQUARE, CoTMR, ... | whatever the external reranker answers (`external`'s contract)  |

Each reranker blends its own score with the incoming one (`base`); a chain applies them in order.
A spec is a name, `name:key=value:key=value` (e.g. `exact:blend=0.5`), an http(s) URL, a callable or
a `Reranker`. Cost on a cluster (`run.rerank_search`): no extra request for the built-in rerankers
(the candidates' vectors come back in the first-stage response's `_source`), one `encode_texts`
call for `clauses`, one HTTP call per query for a URL.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ...errors import InputError
from .base import Candidate, RerankContext, Reranker, minmax
from .clauses import Clauses
from .exact import Exact
from .expansion import Expansion
from .external import CallableReranker, HttpReranker
from .intersection import Intersection

RERANKERS: dict[str, type[Reranker]] = {"exact": Exact, "intersection": Intersection,
                                         "expansion": Expansion, "clauses": Clauses}
DEFAULT_DEPTH = 100


def parse_reranker(spec: str | Callable | Reranker) -> Reranker:
    """One reranker from a spec (module docstring)."""
    if isinstance(spec, Reranker):
        return spec
    if callable(spec):
        return CallableReranker(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"rerank: {spec!r} is not a reranker name, URL or callable")
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        return HttpReranker(spec)
    name, *options = spec.split(":")
    if name not in RERANKERS:
        raise InputError(f"unknown reranker {name!r}; choose from {', '.join(RERANKERS)}, an http(s) URL or a callable")
    params: dict[str, float] = {}
    for option in options:
        key, sep, value = option.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"rerank {name}: option {option!r} is not key=number") from None
        if not sep:
            raise InputError(f"rerank {name}: option {option!r} is not key=number")
    try:
        return RERANKERS[name](**params)
    except TypeError as exc:
        raise InputError(f"rerank {name}: {exc}") from None


def parse_rerankers(specs: str | Sequence[Any] | None) -> list[Reranker]:
    """A chain from a comma-separated string ("exact,intersection") or a list of specs."""
    if not specs:
        return []
    if isinstance(specs, str):
        specs = [part for part in specs.split(",") if part.strip()]
    return [parse_reranker(spec) for spec in specs]


def apply_chain(chain: Sequence[Reranker], context: RerankContext, candidates: list[Candidate]) -> list[Candidate]:
    """Each reranker in turn over the candidates (each sees the previous one's order and scores)."""
    for reranker in chain:
        candidates = reranker(context, candidates)
    return candidates


from .run import rerank_search  # noqa: E402  (needs the names above)

__all__ = ["DEFAULT_DEPTH", "RERANKERS", "CallableReranker", "Candidate", "Clauses", "Exact", "Expansion",
           "HttpReranker", "Intersection", "RerankContext", "Reranker", "apply_chain", "minmax",
           "parse_reranker", "parse_rerankers", "rerank_search"]
