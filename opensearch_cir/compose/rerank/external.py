"""External rerankers: a Python callable or an HTTP endpoint (for MLLM rerankers such as SQUARE,
CoTMR or ImageScope, which score the top-K with a multimodal LLM).

The contract, the same for both (JSON over HTTP: `POST url`, `Content-Type: application/json`):

    request  {"query": {"text": str, "negative": str, "caption": str | null, "rewritten_caption": str,
                        "reference_ids": [str], "strategy": str},
              "candidates": [{"id": str, "rank": int, "score": float, "caption": str | [str] | null,
                              "image_uri": str | null, "metadata": {...}}, ...]}
    response {"scores": [float, ...]}      one finite score per candidate, same order, higher is better

A callable gets the same two objects as Python values: `fn(query: dict, candidates: list[dict])`
returns a sequence of floats. Vectors are not sent (4 bytes × dimension × 2 per candidate); the
images are reachable through `image_uri` (or the service's /images/{id}). A wrong answer (count,
non-numbers, HTTP error, timeout) is an `EngineError` naming the reranker; nothing is reordered then.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import EngineError, InputError
from .base import Candidate, RerankContext, Reranker

_ERROR = "reranker_exception"


def contract_query(context: RerankContext) -> dict:
    """The `query` object of the contract."""
    prepared = context.prepared
    return {
        "text": prepared.query.text, "negative": prepared.query.negative, "caption": prepared.caption,
        "rewritten_caption": prepared.rewrite.text, "reference_ids": list(prepared.query.doc_ids),
        "strategy": context.strategy,
    }


def contract_candidates(candidates: Sequence[Candidate]) -> list[dict]:
    """The `candidates` list of the contract."""
    return [{"id": c.id, "rank": rank, "score": c.score, "caption": c.caption, "image_uri": c.image_uri,
             "metadata": c.metadata} for rank, c in enumerate(candidates, start=1)]


def checked_scores(name: str, scores: Any, expected: int) -> np.ndarray:
    """The answer as floats, or an EngineError saying what is wrong with it."""
    if not isinstance(scores, (list, tuple, np.ndarray)) or len(scores) != expected:
        raise EngineError(f"reranker {name}: expected a list of {expected} scores, got {str(scores)[:200]}", 502, _ERROR)
    if not all(isinstance(s, (int, float, np.floating, np.integer)) and not isinstance(s, bool)
               and math.isfinite(float(s)) for s in scores):
        raise EngineError(f"reranker {name}: every score must be a finite number", 502, _ERROR)
    return np.asarray(scores, np.float64)


class CallableReranker(Reranker):
    """A Python function `fn(query: dict, candidates: list[dict]) -> [float]` (module docstring)."""

    def __init__(self, function: Callable[[dict, list[dict]], Sequence[float]], *, name: str | None = None,
                 blend: float | None = None):
        if not callable(function):
            raise InputError(f"rerank: {function!r} is not callable")
        self.name = name or getattr(function, "__name__", "callable")
        super().__init__(blend=blend)
        self.function = function

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        answer = self.function(contract_query(context), contract_candidates(candidates))
        return checked_scores(self.name, answer, len(candidates))


class HttpReranker(Reranker):
    """`POST url` with the contract's request; answers `{"scores": [...]}` within `timeout` seconds."""

    def __init__(self, url: str, *, timeout: float = 30.0, blend: float | None = None):
        if not url.startswith(("http://", "https://")):
            raise InputError(f"rerank: {url!r} is not an http(s) URL")
        self.name = url
        super().__init__(blend=blend)
        self.url, self.timeout = url, float(timeout)

    def own_scores(self, context: RerankContext, candidates: Sequence[Candidate]) -> np.ndarray:
        import httpx

        request = {"query": contract_query(context), "candidates": contract_candidates(candidates)}
        try:
            response = httpx.post(self.url, json=request, timeout=self.timeout)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineError(f"reranker {self.url}: {exc}", 502, _ERROR) from exc
        scores = body.get("scores") if isinstance(body, dict) else None
        return checked_scores(self.url, scores, len(candidates))
