"""Multi-turn search sessions: each turn refines the last, with feedback on what was shown.

    session = Session(client, index, encoder, strategy="hybrid", k=10)
    session.turn(reference_ids=[start_id], text="like this but longer")
    session.turn(text="now in green", liked=[response.ids[2]])        # "this one"
    session.turn(text="", rejected=[response.ids[0]])                 # "not this one"

**How turns combine** (`combine`, a pure function of the turn list, so re-running from an earlier
turn is dropping the later ones and combining again):
1. Reference: the newest turn that gave an image or a reference id, or marked results "this one",
   sets it: given images/ids win over "this one" in the same turn; several "this one" results are
   averaged (mean of their image vectors, like several reference images).
2. Modifications accumulate: every turn's text, oldest first, joined with ", ". The caption rewriter
   applies clauses in order, so a later change of the same attribute ("in red" … "now in green")
   overrides the earlier one in the rewritten caption. A turn that *gives* a new image or reference id
   starts over: only texts from that turn on count. "This one" keeps the accumulated texts (the
   chosen result may not yet satisfy all of them). Negative texts accumulate the same way.
3. "Not this one": the result is excluded from every later turn, and pushed away: the mean image
   vector of the rejected results joins the negative texts' vector, which is subtracted with weight
   `weights.negative` from every query vector (`strategies.with_negative`).
4. Shown results are the only valid feedback targets (an id never shown in the session is an input error).

Bounds (`SessionStore`): sessions expire after `ttl_s` idle seconds; at most `max_sessions` live
(the longest idle is dropped first), `MAX_TURNS` turns per session, `MAX_REJECTED` rejected results.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from . import strategies as S
from .execute import run_prepared
from .prepare import prepare
from .query import IMAGE_FIELD, CompositeQuery, SearchResponse

MAX_TURNS = 20
MAX_REJECTED = 200


@dataclass
class Turn:
    """One turn's inputs and, once run, what it showed."""

    text: str = ""
    negative: str = ""
    images: list[bytes] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)
    liked: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    response: SearchResponse | None = None
    query: dict = field(default_factory=dict)  # how the turns combined into this turn's query


@dataclass
class Combined:
    """The query the turns add up to (the module docstring's rule)."""

    images: list[bytes]
    reference_ids: list[str]
    text: str
    negative: str
    rejected: list[str]


def combine(turns: Sequence[Turn]) -> Combined:
    """The module docstring's rule over `turns` (oldest first)."""
    images: list[bytes] = []
    references: list[str] = []
    start = 0
    rejected: list[str] = []
    for number, turn in enumerate(turns):
        if turn.images or turn.reference_ids:
            images, references, start = list(turn.images), list(turn.reference_ids), number
        elif turn.liked:
            images, references = [], list(dict.fromkeys(turn.liked))
        rejected += [doc for doc in turn.rejected if doc not in rejected]
    current = turns[start:]
    texts = [t.text.strip() for t in current if t.text.strip()]
    negatives = [t.negative.strip() for t in current if t.negative.strip()]
    return Combined(images=images, reference_ids=[r for r in references if r not in rejected],
                    text=", ".join(texts), negative=", ".join(negatives), rejected=rejected)


class Session:
    """A multi-turn search on one index (module docstring); `defaults` are CompositeQuery fields
    (strategy, k, filters, weights, rerank, rerank_depth) used by every turn."""

    def __init__(self, client: Any, index: str, encoder: Any, *, session_id: str | None = None, **defaults: Any):
        CompositeQuery(text="probe", **defaults)  # unknown or bad defaults fail now, not at the first turn
        self.id = session_id or secrets.token_urlsafe(12)
        self.client, self.index, self.encoder, self.defaults = client, index, encoder, defaults
        self.turns: list[Turn] = []
        self.created = self.last_used = time.time()
        self._rejected_vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def turn(self, *, text: str = "", negative: str = "", images: Sequence[bytes] = (), reference_ids: Sequence[str] = (),
             liked: Sequence[str] = (), rejected: Sequence[str] = (), keep: int | None = None,
             explain: bool = False) -> SearchResponse:
        """Add a turn and run it; `keep` first drops the turns after the first `keep` (re-run from there)."""
        with self._lock:
            turns = self.turns if keep is None else self.turns[: max(0, int(keep))]
            if len(turns) >= MAX_TURNS:
                raise InputError(f"a session has at most {MAX_TURNS} turns; start a new session")
            shown = {doc for t in turns for doc in t.shown}
            unknown = [doc for doc in [*liked, *rejected] if doc not in shown]
            if unknown:
                raise InputError(f"feedback on result(s) never shown in this session: {', '.join(unknown[:5])}")
            turn = Turn(text=text or "", negative=negative or "", images=list(images), reference_ids=list(reference_ids),
                        liked=list(dict.fromkeys(liked)), rejected=list(dict.fromkeys(rejected)))
            combined = combine([*turns, turn])
            if len(combined.rejected) > MAX_REJECTED:
                raise InputError(f"at most {MAX_REJECTED} rejected results per session")
            if not (combined.images or combined.reference_ids or combined.text):
                raise InputError("the session has no reference and no text yet: give an image, a reference id or a text")
            query = CompositeQuery(images=combined.images, doc_ids=combined.reference_ids, text=combined.text,
                                   negative=combined.negative, **self.defaults)
            prepared = prepare(self.client, self.index, query, self.encoder)
            prepared = self._push_away(prepared, combined.rejected)
            response = run_prepared(self.client, self.index, prepared, self.encoder, explain=explain)
            turn.response, turn.shown = response, response.ids
            turn.query = {"reference_ids": combined.reference_ids, "uploaded_images": len(combined.images),
                          "text": combined.text, "negative": combined.negative, "excluded": combined.rejected,
                          "rewritten_caption": response.rewrite.text if response.rewrite else None}
            self.turns = [*turns, turn]
            self.last_used = time.time()
            return response

    def _push_away(self, prepared: Any, rejected: list[str]):
        """Exclude the rejected ids and fold their mean image vector into the negative vector (rule 3)."""
        if not rejected:
            return prepared
        vectors = [self._rejected_vector(doc) for doc in rejected]
        vectors = [v for v in vectors if v is not None]
        negative = prepared.negative
        if vectors:
            pushed = S.mean_vector(vectors)
            negative = pushed if negative is None else S.normalize(S.normalize(negative) + pushed)
        excluded = list(dict.fromkeys([*prepared.excluded_ids, *rejected]))
        return replace(prepared, negative=negative, excluded_ids=excluded)

    def _rejected_vector(self, doc_id: str) -> np.ndarray | None:
        if doc_id not in self._rejected_vectors:
            source = self.client.get(index=self.index, id=doc_id).get("_source") or {}
            vector = source.get(IMAGE_FIELD)
            self._rejected_vectors[doc_id] = None if vector is None else np.asarray(vector, np.float32)
        return self._rejected_vectors[doc_id]


class SessionStore:
    """Live sessions by id, with idle expiry and a cap on their number (module docstring)."""

    def __init__(self, *, ttl_s: float = 1800.0, max_sessions: int = 1000):
        self.ttl_s, self.max_sessions = float(ttl_s), int(max_sessions)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, client: Any, index: str, encoder: Any, **defaults: Any) -> Session:
        session = Session(client, index, encoder, **defaults)
        with self._lock:
            self._expire()
            while len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions.values(), key=lambda s: s.last_used)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session, or None when unknown or expired."""
        with self._lock:
            self._expire()
            return self._sessions.get(session_id)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def expires_at(self, session: Session) -> float:
        return session.last_used + self.ttl_s

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._sessions)

    def _expire(self) -> None:
        now = time.time()
        for session_id in [s.id for s in self._sessions.values() if now - s.last_used > self.ttl_s]:
            del self._sessions[session_id]
