"""Step 1 of a composed search: resolve the references and encode the texts (see `compose.query`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..dsl.vector_encoding import decode, known_data_types
from ..encoders.preprocess import read_image_bytes
from ..errors import InputError
from ..ingest.records import document_id
from . import strategies as S
from .hooks import Hooks
from .query import CAPTION_FIELD, IMAGE_FIELD, PHI_STRATEGIES, CompositeQuery, DecodedImage, PreparedQuery, Weights
from .rewrite import Rewrite, rewrite_caption


def texts_needed(strategy: str, weights: Weights) -> set[str]:
    """The PreparedQuery texts (text, negative, caption, caption_with_text, rewritten) that
    `strategy` can read: a search encodes only these; evaluation, rendering many strategies, all."""
    hybrid = strategy in ("hybrid", "phi_hybrid")
    vector_strategy = "phi" if strategy == "phi_hybrid" else weights.hybrid_vector if strategy == "hybrid" else strategy
    needed = {"negative"}
    if hybrid or vector_strategy not in ("image_only", "bm25", "rewrite"):
        needed.add("text")
    if hybrid or vector_strategy == "rewrite":
        needed.add("rewritten")
    if vector_strategy == "pdv":
        needed |= {"caption", "caption_with_text"}
    return needed


def prepare(client: Any, index: str, query: CompositeQuery, encoder: Any, *, hooks: Hooks | None = None,
            only_strategy: bool = False) -> PreparedQuery:
    """Resolve references and encode the texts of `query` once (see the module docstring): all of
    them, or with `only_strategy` just those the query's own strategy needs (what `search` does).
    `hooks` (default `Hooks.from_env()`) may caption an unindexed reference and rewrite the caption."""
    hooks = hooks if hooks is not None else Hooks.from_env()
    image_vectors: list[np.ndarray] = []
    captions: list[str] = []
    excluded: list[str] = []
    stored_type = known_data_types(client, index).get(IMAGE_FIELD, "float") if (query.doc_ids or query.images) else "float"
    for doc_id in query.doc_ids:
        source = _get_source(client, index, doc_id)
        if source is None:
            raise InputError(f"reference document {doc_id!r} is not in index {index!r}")
        if source.get(IMAGE_FIELD) is None:
            raise InputError(f"reference document {doc_id!r} has no {IMAGE_FIELD}")
        image_vectors.append(decode(source[IMAGE_FIELD], stored_type))
        captions += _first_caption(source.get(CAPTION_FIELD))
        excluded.append(doc_id)
    if query.images:  # an uploaded image that is indexed is that document: its vector, caption and exclusion
        blobs = [item.data if isinstance(item, DecodedImage) else read_image_bytes(item) for item in query.images]
        hashes = [document_id(blob) for blob in blobs]
        sources = [_get_source(client, index, content_hash) for content_hash in hashes]
        stored = [(source or {}).get(IMAGE_FIELD) for source in sources]
        unindexed = [i for i, vector in enumerate(stored) if vector is None]
        encoded = iter(_encode_references(encoder, [query.images[i] for i in unindexed], [blobs[i] for i in unindexed])
                       if unindexed else ())
        for content_hash, source, vector in zip(hashes, sources, stored):
            image_vectors.append(decode(vector, stored_type) if vector is not None else next(encoded))
            if source is not None:
                captions += _first_caption(source.get(CAPTION_FIELD))
                excluded.append(content_hash)
    if query.caption is None and not captions and query.images:
        captions += [c for c in [hooks.caption(blobs[0])] if c]
    caption = query.caption if query.caption is not None else (captions[0] if captions else None)
    text = query.text.strip()
    rewrite = rewrite_caption(caption or "", text) if text else Rewrite(text=caption or "")
    rewritten_by_hook = hooks.rewrite(caption, text) if caption and text else None
    if rewritten_by_hook:
        rewrite = Rewrite(text=rewritten_by_hook, negatives=rewrite.negatives, rules=["hook"])
    negatives = [n for n in [query.negative.strip(), *rewrite.negatives] if n]
    texts = {
        "text": text or None,
        "negative": ", ".join(negatives) or None,
        "caption": caption or None,
        "caption_with_text": f"{caption} {text}" if caption and text else None,
        "rewritten": rewrite.text or None,
    }
    if only_strategy:
        needed = texts_needed(query.strategy, query.weights)
        texts = {name: (value if name in needed else None) for name, value in texts.items()}
    encoded_as = dict(texts)
    if caption is None and texts["rewritten"] is not None and texts["text"] is not None:
        encoded_as["rewritten"] = texts["text"]  # no caption: E_T(r) is E_T(T) (see `compose.query`)
    unique = list(dict.fromkeys(value for value in encoded_as.values() if value is not None))
    encoded = dict(zip(unique, encoder.encode_texts(unique))) if unique else {}
    vectors = {name: (encoded[value] if value is not None else None) for name, value in encoded_as.items()}
    image = S.mean_vector(image_vectors) if image_vectors else None
    phi = getattr(encoder, "phi", None)
    wants_phi = not only_strategy or query.strategy in PHI_STRATEGIES
    return PreparedQuery(
        query=query,
        image=image,
        caption=caption,
        rewrite=rewrite,
        text=vectors["text"],
        negative=vectors["negative"],
        caption_vector=vectors["caption"],
        caption_with_text=vectors["caption_with_text"],
        rewritten=vectors["rewritten"],
        excluded_ids=list(dict.fromkeys(excluded)) if query.exclude_reference else [],
        phi=phi.compose(image[None], [text])[0] if phi is not None and image is not None and wants_phi else None,
    )


def _encode_references(encoder: Any, items: Sequence[Any], blobs: list[bytes]) -> np.ndarray:
    """Image vectors of the reference images; `DecodedImage`s are encoded from their pixels."""
    if not any(isinstance(item, DecodedImage) for item in items):
        return encoder.encode_images(blobs)
    pixels = [item.pixels if isinstance(item, DecodedImage) else encoder.preprocess.load(blob, encoder.max_pixels)
              for item, blob in zip(items, blobs)]
    return encoder.encode_pixels(np.stack(pixels))


def _first_caption(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()][:1]
    return []


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None) or getattr(exc, "status_code", None)


def _get_source(client: Any, index: str, doc_id: str) -> dict | None:
    try:
        response = client.get(index=index, id=doc_id)
    except Exception as exc:  # EngineError (embedded) or opensearch-py NotFoundError
        if _status(exc) == 404:
            return None
        raise
    return response.get("_source") if response.get("found", True) else None
