"""Composed queries: strategies (vector maths), caption rewriting, and the query object.

`search(client, index, CompositeQuery(...), encoder)` is the one path the CLI, the service, the
demo and the evaluation use; `prepare` / `PreparedQuery.render` / `execute` are its steps.
"""

from .execute import execute, search
from .prepare import prepare
from .query import STRATEGIES, CompositeQuery, DecodedImage, PreparedQuery, RenderedQuery, SearchResponse, SearchResult, Weights
from .rewrite import Rewrite, rewrite_caption

__all__ = [
    "STRATEGIES",
    "CompositeQuery",
    "DecodedImage",
    "PreparedQuery",
    "RenderedQuery",
    "Rewrite",
    "SearchResponse",
    "SearchResult",
    "Weights",
    "execute",
    "prepare",
    "rewrite_caption",
    "search",
]
