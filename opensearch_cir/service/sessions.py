"""Multi-turn sessions (`compose.session`) over HTTP, and a paged, filterable view of the collection.

    POST   /sessions                  create (strategy, k, filters, rerank for every turn)
    GET    /sessions/{id}             its turns (inputs, how they combined, results)
    POST   /sessions/{id}/turns       add a turn: images / reference_id / text / negative_text,
                                      feedback liked ("this one") / rejected ("not this one"),
                                      keep (re-run from a turn: keep the first `keep` turns)
    DELETE /sessions/{id}
    GET    /browse                    the index, page by page, filtered by caption words and fields

An unknown or expired session answers 404. Bounds: see `compose.session` (idle expiry, session cap,
turns and rejected results per session).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import dsl
from ..compose.session import Session, SessionStore
from ..errors import InputError
from . import schemas
from .backend import Backend
from .inputs import check_form_fields, clean_text, parse_json
from .operations import _caption_text, check_filters, parse_weights, service_rerankers

BROWSE_MAX_SIZE = 100


class TurnInfo(BaseModel):
    number: int
    text: str
    negative: str
    uploaded_images: int = Field(description="Images uploaded in this turn (their bytes are kept, not returned).")
    reference_ids: list[str]
    liked: list[str]
    rejected: list[str]
    query: dict[str, Any] = Field(description="What the turns added up to: reference, accumulated text, excluded ids.")
    results: list[schemas.SearchResult]


class SessionInfo(BaseModel):
    id: str
    expires_in_s: float
    settings: dict[str, Any]
    turns: list[TurnInfo]


class BrowsePage(BaseModel):
    total: int
    page: int
    size: int
    items: list[schemas.SearchResult]


def _turn_info(number: int, turn: Any, image_base: str) -> TurnInfo:
    results = []
    if turn.response is not None:
        results = [schemas.SearchResult(id=hit.id, score=hit.score, caption=_caption_text(hit.caption),
                                        image_url=image_base + hit.id if hit.image_uri else None, image_uri=hit.image_uri,
                                        metadata=hit.metadata or {}, scores=dict(hit.sub_scores) or None)
                   for hit in turn.response.results]
    return TurnInfo(number=number, text=turn.text, negative=turn.negative, uploaded_images=len(turn.images),
                    reference_ids=turn.reference_ids, liked=turn.liked, rejected=turn.rejected, query=turn.query,
                    results=results)


def _info(store: SessionStore, session: Session, image_base: str) -> SessionInfo:
    import time

    settings = {key: value for key, value in session.defaults.items() if key != "weights"}
    return SessionInfo(id=session.id, expires_in_s=round(store.expires_at(session) - time.time(), 1),
                       settings=settings, turns=[_turn_info(n, t, image_base) for n, t in enumerate(session.turns, 1)])


SESSION_FIELDS = ("strategy", "k", "filters", "weights", "rerank")
TURN_FIELDS = ("images", "image_url", "reference_id", "text", "negative_text", "liked", "rejected", "keep", "explain")


def add_routes(app: FastAPI, backend: Backend, protected: list, reference_images) -> None:
    """Mount the routes of the module docstring; `reference_images` is app.py's upload/URL reader."""
    settings = backend.settings
    store = SessionStore()
    app.state.sessions = store

    def live(session_id: str) -> Session:
        session = store.get(session_id)
        if session is None:
            raise HTTPException(404, f"session {session_id} is unknown or expired (idle for more than "
                                     f"{store.ttl_s:g} s); create a new one with POST /sessions")
        return session

    @app.post("/sessions", response_model=SessionInfo, status_code=201, dependencies=protected, tags=["sessions"])
    async def create_session(
        request: Request,
        strategy: str | None = Form(None, description="Strategy of every turn (default: the service's)."),
        k: int = Form(10, ge=1, description="Results per turn."),
        filters: str | None = Form(None, description="JSON object of exact-match filters for every turn."),
        weights: str | None = Form(None, description="JSON object of weights."),
        rerank: str | None = Form(None, description="Rerankers after the strategy, comma separated."),
    ) -> SessionInfo:
        """Start a multi-turn session; its turns are added with POST /sessions/{id}/turns."""
        check_form_fields(await request.form(), SESSION_FIELDS)
        if k > settings.max_k:
            raise InputError(f"k: {k} is more than the limit of {settings.max_k}")
        defaults: dict[str, Any] = {"k": k, "filters": check_filters(parse_json(filters, "filters", dict)),
                                    "rerank": service_rerankers(rerank)}
        if strategy and strategy.strip():
            defaults["strategy"] = strategy.strip()
        if weights:
            defaults["weights"] = parse_weights(parse_json(weights, "weights", dict), settings.max_candidates)
        session = store.create(backend.client, settings.index, backend.encoder, **defaults)
        return _info(store, session, f"{request.base_url}images/")

    @app.get("/sessions/{session_id}", response_model=SessionInfo, dependencies=protected, tags=["sessions"])
    def get_session(session_id: str, request: Request) -> SessionInfo:
        """The session's turns: inputs, how they combined, and the results each showed."""
        return _info(store, live(session_id), f"{request.base_url}images/")

    @app.delete("/sessions/{session_id}", status_code=204, dependencies=protected, tags=["sessions"])
    def delete_session(session_id: str) -> None:
        """End a session now (sessions also expire when idle)."""
        if not store.delete(session_id):
            raise HTTPException(404, f"session {session_id} is unknown or expired")

    @app.post("/sessions/{session_id}/turns", response_model=TurnInfo, dependencies=protected, tags=["sessions"])
    async def add_turn(
        session_id: str,
        request: Request,
        images: list[UploadFile] | None = File(None, description="A new reference image (starts the texts over)."),
        image_url: list[str] | None = Form(None, description="A new reference image by URL (allow-listed prefixes)."),
        reference_id: list[str] | None = Form(None, description="A new reference: an indexed document id."),
        text: str | None = Form(None, description="This turn's modification (added to the earlier ones)."),
        negative_text: str | None = Form(None, description="What to avoid from now on."),
        liked: list[str] | None = Form(None, description='"This one": shown results to continue from.'),
        rejected: list[str] | None = Form(None, description='"Not this one": shown results to exclude and push away.'),
        keep: int | None = Form(None, ge=0, description="Keep only the first `keep` turns before adding this one."),
        explain: bool = Form(False, description="Return each sub-query's score per result."),
    ) -> TurnInfo:
        """Add a turn and run it; the rule by which turns combine: docs/methods/sessions.md."""
        check_form_fields(await request.form(), TURN_FIELDS)
        session = live(session_id)
        references = await reference_images(images or [], image_url or [], settings)
        inputs = dict(
            text=clean_text(text, "text", settings) or "", negative=clean_text(negative_text, "negative_text", settings) or "",
            images=references, reference_ids=[r.strip() for r in (reference_id or []) if r.strip()],
            liked=[r.strip() for r in (liked or []) if r.strip()], rejected=[r.strip() for r in (rejected or []) if r.strip()],
            keep=keep, explain=explain,
        )
        await run_in_threadpool(lambda: session.turn(**inputs))
        return _turn_info(len(session.turns), session.turns[-1], f"{request.base_url}images/")

    @app.get("/browse", response_model=BrowsePage, dependencies=protected, tags=["search"])
    def browse(
        request: Request,
        page: int = Query(1, ge=1, description="Page number, from 1."),
        size: int = Query(24, ge=1, le=BROWSE_MAX_SIZE, description="Items per page."),
        q: str | None = Query(None, description="Words the caption should contain (BM25 order); empty: index order."),
        filters: str | None = Query(None, description='JSON object of exact-match filters, e.g. {"metadata.gender": "Women"}.'),
    ) -> BrowsePage:
        """The collection, page by page: pick a reference image from it."""
        if (page - 1) * size + size > 10_000:
            raise InputError("browse: pages end at item 10,000 (the engines' result window); filter instead")
        words = clean_text(q, "q", settings)
        clause = dsl.match_clause("caption", words) if words else {"match_all": {}}
        filter_clause = dsl.term_filters(check_filters(parse_json(filters, "filters", dict)))
        if filter_clause is not None:
            clause = {"bool": {"must": [clause], "filter": [filter_clause]}}
        body = {**dsl.search_body(clause, size=size), "from": (page - 1) * size, "track_total_hits": True}
        response = backend.client.search(index=settings.index, body=body)
        image_base = f"{request.base_url}images/"
        items = [schemas.SearchResult(id=hit["_id"], score=float(hit.get("_score") or 0.0),
                                      caption=_caption_text((hit.get("_source") or {}).get("caption")),
                                      image_url=image_base + hit["_id"] if (hit.get("_source") or {}).get("image_uri") else None,
                                      image_uri=(hit.get("_source") or {}).get("image_uri"),
                                      metadata=(hit.get("_source") or {}).get("metadata") or {})
                 for hit in response["hits"]["hits"]]
        total = response["hits"].get("total", {})
        return BrowsePage(total=int(total.get("value", len(items)) if isinstance(total, dict) else total),
                          page=page, size=size, items=items)
