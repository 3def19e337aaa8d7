"""From encoded images to bulk documents: the captions of a whole group of records are encoded in
one call (so their text batches sort well by length), averaged per record, and each record becomes
its `_source` (vectors as JSON lists, metadata as keyword values).

One record the text encoder refuses never fails its group: the group is then encoded record by
record and only the records it refuses fail, each with its own reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import numpy as np

from ..dsl.vector_encoding import encode_list
from .records import Record
from .writer import Document


@dataclass
class EncodedImage:
    """A record whose image is encoded: what the writer stage turns into a document."""

    record: Record
    content_hash: str
    image_vector: np.ndarray


@dataclass
class Refused:
    """A record the encoder refused at the caption stage, with the error."""

    item: EncodedImage
    error: BaseException


def mean_caption_vectors(vectors: np.ndarray, counts: list[int]) -> list[np.ndarray | None]:
    """Per record, the re-normalised mean of its caption vectors (None without captions)."""
    out: list[np.ndarray | None] = []
    start = 0
    for count in counts:
        if count == 0:
            out.append(None)
            continue
        mean = vectors[start:start + count].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        out.append(mean / norm if norm > 0 else None)
        start += count
    return out


class DocumentBuilder:
    """`build(group)` -> (documents, refused records); `timer(stage)` times the caption encoding."""

    def __init__(self, encoder: Any, timer: Callable[[str], ContextManager[None]], vector_types: dict[str, str] | None = None):
        self.encoder = encoder
        self._timer = timer
        self._vector_types = vector_types or {}  # {field: data_type}; byte / binary fields take encoded vectors

    def build(self, group: list[EncodedImage]) -> tuple[list[Document], list[Refused]]:
        documents: list[Document] = []
        refused: list[Refused] = []
        for item, caption_vector in self._caption_vectors(group, refused):
            documents.append(Document(item.content_hash, self.source(item, caption_vector), item.record.name))
        return documents, refused

    def _caption_vectors(self, group: list[EncodedImage], refused: list[Refused]) -> list[tuple[EncodedImage, Any]]:
        """(item, its mean caption vector or None) for every item the text encoder accepts."""
        captions = [caption for item in group for caption in item.record.captions]
        if not captions:
            return [(item, None) for item in group]
        try:
            with self._timer("encode_texts"):
                vectors = self.encoder.encode_texts(captions)
        except Exception as exc:
            if len(group) == 1:
                refused.append(Refused(group[0], exc))
                return []
            return [pair for item in group for pair in self._caption_vectors([item], refused)]
        return list(zip(group, mean_caption_vectors(vectors, [len(item.record.captions) for item in group])))

    def source(self, item: EncodedImage, caption_vector: np.ndarray | None) -> dict:
        """The document's `_source`."""
        record = item.record
        source: dict[str, Any] = {
            "image_vector": self._vector(item.image_vector, "image_vector"),
            "content_hash": item.content_hash,
            "model_id": self.encoder.model_id,
        }
        if record.uri:
            source["image_uri"] = record.uri
        if record.captions:
            source["caption"] = record.captions[0] if len(record.captions) == 1 else list(record.captions)
        if caption_vector is not None:
            source["caption_vector"] = self._vector(caption_vector, "caption_vector")
        if record.metadata:
            source["metadata"] = {key: keyword_value(value) for key, value in record.metadata.items()}
        return source


    def _vector(self, vector: np.ndarray, field: str) -> list:
        data_type = self._vector_types.get(field, "float")
        return np.asarray(vector, dtype=np.float64).tolist() if data_type == "float" else encode_list(vector, data_type)


def keyword_value(value: Any) -> Any:
    """Metadata values as OpenSearch keyword-friendly scalars (lists kept, nested objects as JSON)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [keyword_value(v) for v in value]
    return json.dumps(value, ensure_ascii=False, default=str)
