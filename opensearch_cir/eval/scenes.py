"""The synthetic composed benchmark (CSS / TIRG style) from `opensearch_cir.datasets.scenes`.

Gallery: every query's reference and target scene plus distractor scenes, rendered and indexed
**without captions** (a caption would be the label), so this benchmark measures how well the
vectors compose. A hit is a result whose scene graph equals the target's (any rendering of it).
PDV and caption rewriting need a reference caption: they get the scene's generated caption, as a
perfect captioner would give it (the notes of the result say so).
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

from ..ingest.records import document_id
from .harness import Case, build_index, run_composed

STRATEGIES = ("image_only", "text_only", "sum", "fusion", "slerp", "pdv", "rewrite", "phi")


def _png(scene: Any, size: int) -> bytes:
    from ..datasets.scenes import render

    buffer = io.BytesIO()
    render(scene, size=size).save(buffer, format="PNG")
    return buffer.getvalue()


def run(client: Any, encoder: Any, *, seed: int = 0, n_queries: int = 2000, n_distractors: int = 2000,
        tune_subset: int = 200, test_subset: int | None = None, image_size: int = 64) -> dict:
    """Generate, index and evaluate the scenes benchmark of `seed` (seeds < 1000 are never trained on)."""
    index, cases, notes = build(client, encoder, seed=seed, n_queries=n_queries, n_distractors=n_distractors,
                                image_size=image_size)
    result = run_composed(client, index, encoder, cases, name=f"scenes (seed {seed})", strategies=STRATEGIES,
                          tune_subset=tune_subset, test_subset=test_subset)
    result["gallery"] = client.count(index=index)["count"]
    result["notes"] = notes
    return result


def build(client: Any, encoder: Any, *, seed: int = 0, n_queries: int = 2000, n_distractors: int = 2000,
          image_size: int = 64) -> tuple[str, list[Case], list[str]]:
    """Generate and index the scenes of `seed` (cached) and their queries: (index name, cases, notes)."""
    from ..datasets.scenes import generate_catalog, generate_queries
    from ..ingest import Record

    queries = generate_queries(seed, n_queries)
    scenes = [q.reference for q in queries] + [q.target for q in queries] + \
             [r.scene for r in generate_catalog(seed, n_distractors)]
    doc_of_scene: dict[Any, str] = {}
    docs_of_key: dict[str, set[str]] = defaultdict(set)
    blobs: dict[str, bytes] = {}
    for scene in scenes:
        if scene in doc_of_scene:
            continue
        blob = _png(scene, image_size)
        doc_id = document_id(blob)
        doc_of_scene[scene] = doc_id
        docs_of_key[scene.key].add(doc_id)
        blobs.setdefault(doc_id, blob)
    index = f"cir-eval-scenes-{seed}-{len(blobs)}"
    build_index(client, index, encoder, (Record(image=b, uri=f"scene:{d[:12]}") for d, b in blobs.items()),
                expected=len(blobs))
    cases = [
        Case(id=q.query_id, reference=doc_of_scene[q.reference], text=q.text,
             relevant=frozenset(docs_of_key[q.target.key]), group=q.modification.kind, caption=q.reference.caption)
        for q in queries
    ]
    notes = [
        f"gallery: {len(blobs)} rendered scenes ({image_size}px) indexed without captions",
        "pdv and rewrite are given the reference scene's generated caption (an oracle captioner)",
    ]
    return index, cases, notes
