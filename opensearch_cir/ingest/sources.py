"""Readers: turn a folder of images or a manifest file into `Record`s.

- A directory tree of images (`image_uri` = the absolute path, which `cir serve --media-root`
  can serve; error reports name files relative to the folder); a sidecar `NAME.txt` (one caption per line) or `NAME.json`
  (`{"caption": ...}` or `{"captions": [...]}`, optional `"metadata": {...}`) beside `NAME.jpg`
  gives its captions. Regular files that are not images by extension (sidecars included) are
  ignored; every other entry the walk meets is counted: images that do not decode fail later,
  and broken or looping symbolic links, FIFOs, sockets, devices and folders that cannot be listed
  fail here, each with its reason; symlinked folders are skipped (not followed, so no walk loops).
  Names that are not UTF-8 are reported with their bytes escaped (`caf\\xe9.jpg`).
- A manifest: `.jsonl`, `.csv` or `.parquet`, one row per image (or per image and caption:
  consecutive rows with the same image are merged), columns `image` (or path/file/url),
  `caption` or `captions` (a list; in CSV a JSON list), an optional `metadata` object (JSONL,
  Parquet) and any other columns as metadata. Relative paths are relative to the manifest.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InputError
from .records import Record, printable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".avif", ".heic", ".ppm"}
)
MANIFEST_EXTENSIONS = (".jsonl", ".ndjson", ".csv", ".parquet")


@dataclass
class BadRow:
    """A manifest row that could not become a record; the ingestor counts it as a failure."""

    source: str
    reason: str


@dataclass
class SkippedEntry:
    """A folder entry deliberately not ingested (a symlinked folder); counted as skipped."""

    source: str
    reason: str


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def _entries(root: Path) -> Iterator[tuple[Path, str | None, bool]]:
    """(path, problem or None, is a symlinked folder) for every image file and every entry that is
    neither a regular file nor a folder, under `root`, sorted by name; symlinks to files are followed,
    symlinked folders are not."""
    try:
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda entry: os.fsencode(entry.name))
    except OSError as exc:
        yield root, f"folder cannot be listed ({exc.strerror})", False
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            mode = os.stat(path).st_mode  # follows symlinks
        except OSError as exc:
            if entry.is_symlink():
                problem = "symbolic link loop" if exc.errno == errno.ELOOP else \
                    "broken symbolic link (its target does not exist)" if exc.errno == errno.ENOENT else \
                    f"symbolic link cannot be followed ({exc.strerror})"
            else:
                problem = f"cannot be read ({exc.strerror})"
            yield path, problem, False
            continue
        if stat.S_ISDIR(mode):
            if entry.is_symlink():
                yield path, None, True
            else:
                yield from _entries(path)
        elif stat.S_ISREG(mode):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                yield path, None, False
        else:
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            yield path, f"not a regular file ({kind})", False


def iter_directory(root: str | Path) -> Iterator[Record | BadRow | SkippedEntry]:
    """Records for every image file under `root` (recursively, sorted), with sidecar captions;
    a `BadRow` for each entry that cannot be an image, a `SkippedEntry` for each symlinked folder."""
    root = Path(root)
    for path, problem, linked_folder in _entries(root):
        source = printable(path.relative_to(root).as_posix() if path != root else path)
        if problem is not None:
            yield BadRow(source=source, reason=problem)
            continue
        if linked_folder:
            log.warning("%s: symlinked folder not followed (ingest its target to include it)", source)
            yield SkippedEntry(source=source, reason="symlinked folder not followed")
            continue
        captions, metadata = _sidecar(path)
        yield Record(image=str(path), captions=captions, metadata=metadata, uri=str(path.resolve()), source=source)


MAX_SIDECAR_BYTES = 1 << 20


def _sidecar(path: Path) -> tuple[list[str], dict]:
    """Captions and metadata from `NAME.json` or `NAME.txt` beside an image (unreadable, undecodable
    and larger-than-MAX_SIDECAR_BYTES ones are ignored with a warning)."""
    captions: list[str] = []
    metadata: dict = {}
    text = _sidecar_text(path.with_suffix(".json"))
    if text is not None:
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                captions = data.get("captions") or data.get("caption") or []
                metadata = dict(data.get("metadata") or {})
            elif isinstance(data, (list, str)):
                captions = data
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            log.warning("%s: unreadable sidecar ignored (%s)", printable(path.with_suffix(".json")), exc)
    if not captions:
        text = _sidecar_text(path.with_suffix(".txt"))
        captions = text.splitlines() if text is not None else []
    return captions, metadata


def _sidecar_text(path: Path) -> str | None:
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise OSError(f"larger than {MAX_SIDECAR_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: unreadable sidecar ignored (%s)", printable(path), exc)
        return None


def count_directory(root: str | Path) -> int:
    """How many entries `iter_directory` yields (the length of the progress bar)."""
    return sum(1 for _ in _entries(Path(root)))


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8", errors="surrogateescape") as handle:  # bad bytes fail their row
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield number, InputError(f"not JSON ({exc.msg})")
    elif suffix == ".csv":
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), 2):
                captions = row.get("captions")
                if captions and captions.lstrip().startswith("["):
                    try:
                        row["captions"] = json.loads(captions)
                    except json.JSONDecodeError as exc:
                        row = InputError(f"captions column is not a JSON list ({exc.msg})")
                yield number, row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    else:
        raise InputError(f"{path}: unknown manifest type (expected {', '.join(MANIFEST_EXTENSIONS)})")


def iter_manifest(path: str | Path) -> Iterator[Record | BadRow]:
    """Records from a JSONL / CSV / Parquet manifest; consecutive rows of one image are merged.
    A malformed row becomes a `BadRow` (reported as a failure, the rest goes on)."""
    path = Path(path)
    pending: Record | None = None
    for number, row in _rows(path):
        source = f"{path.name}:{number}"
        try:
            if isinstance(row, Exception):
                raise row
            if not isinstance(row, dict):
                raise InputError("expected an object per row")
            record = Record.from_mapping(row, base_dir=path.parent, source=source)
        except InputError as exc:
            yield BadRow(source=source, reason=str(exc))
            continue
        if pending is not None and record.image == pending.image and not isinstance(record.image, bytes):
            pending.captions.extend(c for c in record.captions if c not in pending.captions)
            pending.metadata.update(record.metadata)
            continue
        if pending is not None:
            yield pending
        pending = record
    if pending is not None:
        yield pending


def open_source(source: str | Path | Iterable) -> tuple[Iterable[Record | BadRow | dict], int | None]:
    """(records, count or None) for a folder, a manifest file, or an iterable of records/dicts."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return iter_directory(path), count_directory(path)
        if path.is_file():
            if path.suffix.lower() not in MANIFEST_EXTENSIONS:
                raise InputError(f"{source}: not a folder or a manifest ({', '.join(MANIFEST_EXTENSIONS)})")
            return iter_manifest(path), None
        raise InputError(f"{source}: no such file or folder")
    length = len(source) if hasattr(source, "__len__") else None
    return iter(source), length  # dicts become records in Ingestor.add, which reports bad ones
