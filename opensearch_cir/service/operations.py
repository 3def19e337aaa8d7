"""The blocking work behind the endpoints (run in a thread pool): search, embed, ingest.

Everything here goes through the shared code paths: `compose.search` for queries, the encoder for
embeddings, and `ingest.Ingestor` for indexing, so the service behaves exactly like the CLI.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..compose import CompositeQuery, DecodedImage, Weights, search
from ..compose.strategies import weighted_fusion
from ..errors import InputError
from ..ingest import Ingestor, Record
from ..ingest.records import document_id
from . import schemas
from .backend import Backend

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
EMBED_ALPHA = Weights().alpha
"""Text share α of /embed's composed vector: the `fusion` strategy's default, so a `neural` query
built from /embed searches like `cir search --strategy fusion`."""


def compose_embedding(encoder: Any, text: str | None, image: DecodedImage | None) -> np.ndarray:
    """E_T(text), E_I(image), or for both the weighted fusion norm((1 − α)·E_I + α·E_T), α = EMBED_ALPHA."""
    if image is None:
        return encoder.encode_texts([text])[0]
    image_vector = encoder.encode_pixels(image.pixels[None])[0]
    if text is None:
        return image_vector
    return weighted_fusion(image_vector, encoder.encode_texts([text])[0], EMBED_ALPHA)


FRACTIONS = ("alpha", "beta", "lam")
"""Weights that are shares or positions between two vectors: 0..1."""
COMBINATIONS = ("arithmetic_mean", "geometric_mean", "harmonic_mean")


def parse_weights(values: dict | None, max_candidates: int) -> Weights:
    """`Weights` from a JSON object; unknown names, wrong types and too many candidates are input errors."""
    if not values:
        return Weights()
    known = {spec.name: spec for spec in dataclasses.fields(Weights)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"weights: unknown name(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, value in values.items():
        kind = str(known[name].type)
        wanted = {"str": str, "int": int}.get(kind, (int, float))
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise InputError(f"weights.{name}: expected a {'string' if kind == 'str' else kind}, got {value!r}")
        if kind != "str" and not np.isfinite(value):
            raise InputError(f"weights.{name}: must be a finite number")
    for name in FRACTIONS:
        if name in values and not 0 <= values[name] <= 1:
            raise InputError(f"weights.{name}: must be between 0 and 1, got {values[name]!r}")
    if values.get("combination", COMBINATIONS[0]) not in COMBINATIONS:
        raise InputError(f"weights.combination: one of {', '.join(COMBINATIONS)}, got {values['combination']!r}")
    if not 1 <= values.get("candidates", 1) <= max_candidates:
        raise InputError(f"weights.candidates: must be in 1..{max_candidates} (CIR_MAX_CANDIDATES)")
    return Weights(**values)


def check_filters(filters: dict | None) -> dict:
    """Filters `{field: value | [values]}` with scalar values (the term / terms clauses they become)."""
    filters = filters or {}
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        if not name.strip() or not values:
            raise InputError(f"filters: {name!r} needs a field name and at least one value")
        for item in values:
            if isinstance(item, (dict, list)) or item is None:
                raise InputError(f"filters.{name}: values must be strings, numbers or booleans, got {item!r}")
    return filters


def service_rerankers(value: str | None) -> list[str]:
    """The built-in rerankers of a comma-separated list; URLs are refused (the service does not call
    out to addresses its users choose; use the Python API for an external reranker)."""
    from ..compose.rerank import RERANKERS, parse_reranker

    names = [part.strip() for part in (value or "").split(",") if part.strip()]
    for name in names:
        if name.split(":")[0] not in RERANKERS:
            raise InputError(f"rerank: {name!r} is not one of {', '.join(RERANKERS)} "
                             "(external rerankers are configured in Python, not per request)")
        parse_reranker(name)  # options checked now: a 422 before any work
    return names


def run_search(backend: Backend, query: dict, image_base: str) -> schemas.SearchResponse:
    """Run one composed query (the /search form's fields, checked) and shape its results;
    `image_base` + id is where a result's image is served."""
    composite = CompositeQuery(
        images=query["images"],
        doc_ids=query["reference_ids"],
        text=query["text"] or "",
        negative=query["negative_text"] or "",
        filters=check_filters(query["filters"]),
        k=query["k"],
        strategy=query["strategy"] or CompositeQuery.strategy,
        weights=parse_weights(query["weights"], backend.settings.max_candidates),
        rerank=service_rerankers(query.get("rerank")),
    )
    response = search(backend.client, backend.settings.index, composite, backend.encoder, explain=query["explain"])
    rendered = response.rendered
    results = [
        schemas.SearchResult(
            id=hit.id,
            score=hit.score,
            caption=_caption_text(hit.caption),
            image_url=image_base + hit.id if hit.image_uri else None,
            image_uri=hit.image_uri,
            metadata=hit.metadata or {},
            scores=dict(hit.sub_scores) if query["explain"] else None,
        )
        for hit in response.results
    ]
    interpreted = {
        "sub_queries": dict(zip(rendered.sub_queries, rendered.weights)),
        "pipeline": rendered.pipeline_id,
        "rewritten_caption": response.rewrite.text if response.rewrite else None,
        "negatives": response.rewrite.negatives if response.rewrite else [],
        "rerank": list(composite.rerank),
    }
    return schemas.SearchResponse(strategy=rendered.strategy, total=len(results), results=results, query=interpreted)


def _caption_text(caption: Any) -> str | None:
    if isinstance(caption, list):
        return " · ".join(str(c) for c in caption) or None
    return caption or None


def run_ingest(backend: Backend, uploads: list[tuple[str, bytes | None, str | None]],
               captions: list, metadata: list) -> schemas.IngestResponse:
    """Index uploaded images; `uploads` are (name, bytes or None, error or None), in request order."""
    settings = backend.settings
    store = settings.resolved_upload_dir
    items: list[schemas.IngestItem] = []
    records: list[tuple[int, Record, Path | None]] = []
    first_of: dict[str, int] = {}
    for position, (name, data, error) in enumerate(uploads):
        item = schemas.IngestItem(index=position, name=name, status="failed", error=error)
        items.append(item)
        if data is None:
            continue
        item.id = document_id(data)
        if item.id in first_of:
            item.status, item.error = "skipped", f"same image as file {first_of[item.id]}"
            continue
        first_of[item.id] = position
        try:
            record_captions = _captions_of(captions[position], position)
            record_metadata = _metadata_of(metadata[position], position)
        except InputError as exc:
            item.error = str(exc)
            continue
        target = store / (item.id + _suffix(name)) if store is not None else None
        records.append((position, Record(image=data, captions=record_captions, metadata=record_metadata,
                                         uri=str(target) if target else f"upload:{name}",
                                         source=f"#{position}"), target))

    backend.ensure_index()
    ingestor = Ingestor(backend.client, settings.index, backend.encoder, max_pixels=settings.max_pixels, workers=1)
    with ingestor:
        for _, record, _ in records:
            ingestor.add(record)
    failures = {failure.source: failure for failure in ingestor.report.failures}
    for position, record, target in records:
        failure = failures.get(record.source)
        item = items[position]
        if failure is not None:
            item.status, item.error = "failed", f"{failure.stage}: {failure.reason}"
            continue
        item.status = "indexed"
        if target is not None and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(record.image)
    indexed = sum(item.status == "indexed" for item in items)
    return schemas.IngestResponse(indexed=indexed, failed=sum(item.status == "failed" for item in items), items=items)


def _captions_of(value: Any, position: int) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise InputError(f"captions[{position}]: expected a string or a list of strings")
    return values


def _metadata_of(value: Any, position: int) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"metadata[{position}]: expected an object of field: value")
    for key, item in value.items():
        if isinstance(item, (dict, list)) or not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", key):
            raise InputError(f"metadata[{position}].{key}: names are letters, digits, _ or -, values are scalars")
    return value


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ".img"
