"""Reading an input's bytes: local files (capped, regular files only), byte strings, and http(s)
URLs when allowed, each refused with a typed error before anything large is read."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..encoders.preprocess import read_image_bytes
from ..errors import ImageDecodeError, ImageTooLargeError, InputError
from .records import Record, is_remote, printable

MAX_REMOTE_BYTES = 50 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Default cap on the bytes read from one local file, checked before reading (a 40 MP JPEG is ~20 MB)."""


def read_file_capped(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing one over `max_bytes` before reading it; a FIFO, device
    or folder is refused without blocking (opened non-blocking, checked with fstat)."""
    name = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageDecodeError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(f"{name}: not a regular file")
        if info.st_size > max_bytes:
            raise ImageTooLargeError(f"{name}: {info.st_size} bytes is more than the limit of {max_bytes} bytes per file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while being read
        raise ImageTooLargeError(f"{name}: more than the limit of {max_bytes} bytes per file")
    if not data:
        raise ImageDecodeError(f"{name}: empty (0 bytes)")
    return data


def fetch_remote(url: str, timeout: float = 20.0, max_bytes: int = MAX_REMOTE_BYTES) -> bytes:
    """GET an image over http(s), refusing bodies over `max_bytes`."""
    import httpx

    chunks, size = [], 0
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        if response.status_code != 200:
            raise InputError(f"{url}: HTTP {response.status_code}")
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise InputError(f"{url}: more than {max_bytes} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def read_record(record: Record, *, allow_remote: bool, max_file_bytes: int) -> bytes:
    """The image bytes of `record`: its file (capped), its byte string, or its URL when allowed."""
    image = record.image
    if is_remote(image):
        if not allow_remote:
            raise InputError(f"{image}: remote URLs are disabled (enable with --allow-remote / allow_remote=True)")
        return fetch_remote(image, max_bytes=min(MAX_REMOTE_BYTES, max_file_bytes))
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) > max_file_bytes:
            raise ImageTooLargeError(f"{len(image)} bytes is more than the limit of {max_file_bytes} bytes per image")
        return read_image_bytes(image)
    return read_file_capped(image, max_file_bytes)


@dataclass
class ReadImage:
    """An input's bytes and their sha256 (the document id)."""

    record: Record
    content_hash: str
    data: bytes


class StageError(Exception):
    """A worker's failure, with the stage it failed at (read, decode) and the original error."""

    def __init__(self, stage: str, cause: BaseException):
        super().__init__(str(cause))
        self.stage = stage
        self.cause = cause
