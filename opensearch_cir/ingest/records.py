"""The unit of ingestion: one image with its captions and metadata."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from ..errors import InputError

ImageRef = Union[str, os.PathLike, bytes]

IMAGE_KEYS = ("image", "image_path", "path", "file", "filename", "url", "image_url")
CAPTION_KEYS = ("captions", "caption", "text")
RESERVED_KEYS = (*IMAGE_KEYS, *CAPTION_KEYS, "metadata", "uri", "image_uri")


def document_id(data: bytes) -> str:
    """The id of an image's document: the sha256 of its bytes, so re-ingesting an image updates it."""
    return hashlib.sha256(data).hexdigest()


def is_remote(image: ImageRef) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://"))


@dataclass
class Record:
    """An image to index.

    image: a file path, an http(s) URL (fetched only when remote URLs are enabled) or raw bytes.
    captions: zero or more captions (BM25 text; their mean text embedding is the caption vector).
    metadata: flat key -> value pairs, stored under `metadata.*` (keyword fields).
    uri: what to store as `image_uri` (default: the path or URL).
    source: where the record came from, for error reports (e.g. `captions.jsonl:12`).
    """

    image: ImageRef
    captions: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.captions, str):
            self.captions = [self.captions]
        self.captions = [str(c).strip() for c in self.captions if c is not None and str(c).strip()]
        if isinstance(self.image, Path):
            self.image = str(self.image)
        if self.uri is None and isinstance(self.image, str):
            self.uri = self.image

    @property
    def name(self) -> str:
        """How error reports name this record."""
        if self.source:
            return self.source
        if isinstance(self.image, (bytes, bytearray)):
            return self.uri or f"<{len(self.image)} bytes>"
        return str(self.image)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any], *, base_dir: Path | None = None, source: str | None = None) -> "Record":
        """A record from a dict / manifest row: an image key (image, image_path, path, file, url...),
        `caption` / `captions`, an optional `metadata` dict; any other keys become metadata too."""
        image = next((row[key] for key in IMAGE_KEYS if row.get(key) not in (None, "")), None)
        if image is None:
            raise InputError(f"{source or 'record'}: no image (expected one of the keys {', '.join(IMAGE_KEYS)})")
        if isinstance(image, (str, os.PathLike)) and not is_remote(str(image)) and base_dir is not None:
            path = Path(image)
            image = str(path if path.is_absolute() else base_dir / path)
        captions = next((row[key] for key in CAPTION_KEYS if row.get(key) not in (None, "")), [])
        if hasattr(captions, "tolist"):  # numpy / pyarrow arrays from Parquet
            captions = captions.tolist()
        metadata = dict(row.get("metadata") or {})
        metadata.update({k: v for k, v in row.items() if k not in RESERVED_KEYS and v not in (None, "")})
        uri = row.get("uri") or row.get("image_uri")
        return cls(image=image, captions=captions, metadata=metadata, uri=uri, source=source)
