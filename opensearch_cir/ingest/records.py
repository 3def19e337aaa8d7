"""The unit of ingestion: one image with its captions and metadata."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union
from urllib.parse import quote, unquote_to_bytes

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


def printable(text: Any) -> str:
    """`text` (a str or path) as valid UTF-8 for reports: bytes of a non-UTF-8 file name become `\\xe9`,
    other lone surrogates `\\udce9`, so a report never fails to be written and names the entry exactly."""
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace") if _only_escaped_bytes(text) else \
            text.encode("utf-8", "backslashreplace").decode("utf-8")


def _only_escaped_bytes(text: str) -> bool:
    """True when every surrogate in `text` is one `surrogateescape` made from a non-UTF-8 byte."""
    return all("\udc80" <= ch <= "\udcff" for ch in text if "\ud800" <= ch <= "\udfff")


def check_text(value: Any, where: str) -> None:
    """InputError naming `where` when a string (or any string inside a list / dict) is not valid
    Unicode (a lone surrogate, as JSON's `"\\udce9"` gives): such text cannot be stored or encoded."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"{where}: not valid Unicode text (lone surrogate {value[exc.start]!a} "
                             f"at position {exc.start})") from None
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            check_text(item, f"{where}[{position}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{where} key {printable(key)!r}")
            check_text(item, f"{where}.{printable(key)}")


def storable_uri(uri: str) -> str:
    """`uri` as storable text: a local path whose name is not UTF-8 becomes a percent-encoded
    `file://` URI of its bytes (`local_path` reverses it); anything else is returned unchanged."""
    try:
        uri.encode("utf-8")
        return uri
    except UnicodeEncodeError:
        if is_remote(uri) or not _only_escaped_bytes(uri):
            raise InputError(f"image_uri {printable(uri)!r}: not valid Unicode text") from None
        return "file://" + quote(os.fsencode(os.path.abspath(uri)), safe="/")


def local_path(uri: str) -> Path:
    """The local path of a stored `image_uri` (a plain path or a `file://` URI)."""
    if uri.startswith("file://"):
        return Path(os.fsdecode(unquote_to_bytes(uri[len("file://"):])))
    return Path(uri)


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
        if isinstance(self.captions, (str, bytes)):
            self.captions = [self.captions]
        self.captions = [c.decode("utf-8", "surrogateescape") if isinstance(c, bytes) else c for c in self.captions]
        self.captions = [str(c).strip() for c in self.captions if c is not None and str(c).strip()]
        if isinstance(self.image, Path):
            self.image = str(self.image)
        if self.uri is None and isinstance(self.image, str):
            self.uri = self.image

    @property
    def name(self) -> str:
        """How error reports name this record (always valid UTF-8)."""
        if self.source:
            return printable(self.source)
        if isinstance(self.image, (bytes, bytearray)):
            return printable(self.uri or f"<{len(self.image)} bytes>")
        return printable(self.image)

    def check(self) -> None:
        """Refuse text that cannot be stored (InputError naming the field); make a non-UTF-8
        local file name storable as a `file://` URI."""
        check_text(self.captions, "caption")
        check_text(self.metadata, "metadata")
        if self.uri is not None:
            self.uri = storable_uri(str(self.uri))

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
