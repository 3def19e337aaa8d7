"""`cir eval multiturn`: simulated users refine a search over several turns (ChatIR / FashionNTM style).

On the fashion benchmark's gallery (`eval.fashion`: image + title indexed, attributes as ground truth
only), an *episode* is a target product T and a start product R of the same sub-category and usage
that differs from T in at least two of colour, article type and gender. The simulated user knows T's
attributes and runs a `compose.session.Session`:

- turn 1: reference R, text = one change (`fashion.modification_text`, attribute order random per episode);
- each later turn: the user looks at the 10 results; when one has all of T's attributes the episode
  is a success at that turn. Otherwise the user picks the shown result with the most of T's
  attributes (the higher ranked on ties) as "this one" when it has more than the current reference,
  optionally marks the shown results with fewer than the reference as "not this one" (user `rejects`),
  and names one attribute on which the (new) reference still differs from T.
- success@10 after t turns = fraction of episodes with a hit in some turn ≤ t.

Baseline: one turn with R and all of the changes at once ("in navy blue instead and make it a
shirt and for women"). Nothing here is tuned: the session uses the strategy's default weights
(tuned on the single-turn fashion dev queries).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from tqdm import tqdm

from ..compose.session import Session
from ..ingest.records import document_id
from .fashion import ATTRIBUTES, modification_text

CHANGED = ("colour", "article_type", "gender")
TURNS = (1, 2, 3, 5)
K = 10


@dataclass
class Episode:
    id: str
    start: str  # doc id of R
    target: tuple  # T's attributes (ATTRIBUTES order)
    changes: list[str]  # the attributes on which R differs from T, in the order the user names them


def build_episodes(products: Sequence[tuple[Any, str]], n_episodes: int, seed: int = 0) -> list[Episode]:
    """Deterministic episodes over the gallery [(product, doc id)] (module docstring)."""
    rng = random.Random(f"fashion-multiturn-{seed}")
    groups: dict[tuple, list[tuple[Any, str]]] = defaultdict(list)
    for product, doc_id in products:
        if None not in (getattr(product, a) for a in ATTRIBUTES):
            groups[(product.sub_category, product.usage)].append((product, doc_id))
    targets = [item for item in products if None not in (getattr(item[0], a) for a in ATTRIBUTES)]
    rng.shuffle(targets)
    episodes: list[Episode] = []
    for target, _ in targets:
        starts = [(p, d) for p, d in groups[(target.sub_category, target.usage)]
                  if sum(getattr(p, a) != getattr(target, a) for a in CHANGED) >= 2]
        if not starts:
            continue
        start, start_id = rng.choice(sorted(starts, key=lambda item: item[1]))
        changes = [a for a in CHANGED if getattr(start, a) != getattr(target, a)]
        rng.shuffle(changes)
        episodes.append(Episode(f"{start.product_id}->{target.product_id}", start_id,
                                tuple(getattr(target, a) for a in ATTRIBUTES), changes))
        if len(episodes) >= n_episodes:
            break
    return episodes


def _matches(attributes: tuple, target: tuple) -> int:
    return sum(a == b for a, b in zip(attributes, target))


def run_episode(episode: Episode, attributes_of: dict[str, tuple], session: Session, *, max_turns: int,
                rejects: bool, rng: random.Random) -> int | None:
    """The first turn (1-based) whose top K holds a product with all of the target's attributes, or None."""
    reference = attributes_of[episode.start]
    order = list(episode.changes)
    attribute = order[0]
    inputs: dict[str, Any] = {"reference_ids": [episode.start]}
    for turn in range(1, max_turns + 1):
        index = ATTRIBUTES.index(attribute)
        text = modification_text(attribute, reference[index], episode.target[index], rng)
        shown = session.turn(text=text, **inputs).ids
        if any(attributes_of.get(doc) == episode.target for doc in shown):
            return turn
        scored = [(_matches(attributes_of[doc], episode.target), -rank, doc) for rank, doc in enumerate(shown) if doc in attributes_of]
        inputs = {}
        if scored:
            best_score, _, best = max(scored)
            if best_score > _matches(reference, episode.target):
                inputs["liked"] = [best]
                reference = attributes_of[best]
            if rejects:
                inputs["rejected"] = [doc for score, _, doc in scored if score < _matches(reference, episode.target)]
        missing = [a for a in order if reference[ATTRIBUTES.index(a)] != episode.target[ATTRIBUTES.index(a)]]
        attribute = missing[0] if missing else order[turn % len(order)]  # all named ones fixed: restate one
    return None


def single_turn(episode: Episode, attributes_of: dict[str, tuple], session: Session, rng: random.Random) -> bool:
    """One turn with every change at once; True when the top K holds a target."""
    reference = attributes_of[episode.start]
    texts = [modification_text(a, reference[ATTRIBUTES.index(a)], episode.target[ATTRIBUTES.index(a)], rng)
             for a in episode.changes]
    shown = session.turn(reference_ids=[episode.start], text=" and ".join(texts)).ids
    return any(attributes_of.get(doc) == episode.target for doc in shown)


def run(data: str, client: Any, encoder: Any, *, n_episodes: int = 300, strategy: str = "hybrid",
        products: str = "dev", gallery_size: int | None = None, rerank: Sequence[str] = ()) -> dict:
    """Index the fashion gallery (cached), play the episodes, return the report document."""
    from . import fashion

    index, _, notes = fashion.build(data, client, encoder, products=products, gallery_size=gallery_size, n_queries=3)
    images = fashion.gallery(data, products, gallery_size)
    attributes_of = {document_id(blob): tuple(getattr(p, a) for a in ATTRIBUTES) for p, blob in images}
    episodes = build_episodes([(p, document_id(blob)) for p, blob in images], n_episodes)
    rows: dict[str, dict[str, float | None]] = {}
    single = []
    for episode in tqdm(episodes, desc="multi-turn: single-turn baseline", unit="episode", leave=False):
        session = Session(client, index, encoder, k=K, strategy=strategy, rerank=list(rerank))
        single.append(single_turn(episode, attributes_of, session, random.Random(episode.id)))
    rows["single turn, all changes at once"] = {f"success@{K} after {t} turn{'s' if t > 1 else ''}": (sum(single) / len(single) if t == 1 else None)
                                                 for t in TURNS}
    for rejects in (False, True):
        found = []
        for episode in tqdm(episodes, desc=f"multi-turn: sessions{' with rejections' if rejects else ''}", unit="episode", leave=False):
            session = Session(client, index, encoder, k=K, strategy=strategy, rerank=list(rerank))
            found.append(run_episode(episode, attributes_of, session, max_turns=max(TURNS), rejects=rejects,
                                     rng=random.Random(episode.id)))
        name = "session: one change per turn, picks the best" + (" and rejects worse ones" if rejects else "")
        rows[name] = {f"success@{K} after {t} turn{'s' if t > 1 else ''}": sum(f is not None and f <= t for f in found) / len(found)
                      for t in TURNS}
    changes = defaultdict(int)
    for episode in episodes:
        changes[len(episode.changes)] += 1
    return {
        "benchmark": f"fashion multi-turn ({strategy})",
        "rows": rows,
        "summary": f"{len(episodes)} episodes ({', '.join(f'{n} with {c} changes' for c, n in sorted(changes.items()))}); "
                   f"success@{K} in %; a session turn names one change, the baseline names all at once.",
        "episodes": len(episodes),
        "notes": notes[:1] + ["nothing tuned on these episodes: the strategy's default weights"],
    }
