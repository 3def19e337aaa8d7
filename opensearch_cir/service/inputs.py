"""Turning request parts into checked inputs: uploads, remote URLs, base64, texts, JSON fields.

Every check raises `InputError` (or a subclass) with a message naming the offending part, which
the exception handlers answer with a 4xx.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import json
from typing import Any, Callable

import httpx
from fastapi import UploadFile
from PIL import Image

from ..encoders.preprocess import load_image
from ..errors import InputError
from ..ingest.records import check_text
from .settings import Settings, allowed_remote_url

_CHUNK = 1 << 16
_SLOW_CHUNK = 1 << 10
_SLOW_PAUSE_S = 0.05


class UploadTooLargeError(InputError):
    """An uploaded or fetched file is larger than the configured byte limit (answered with 413)."""


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The bytes of one uploaded file, refusing files above `settings.max_upload_bytes`."""
    name = upload.filename or "upload"
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise UploadTooLargeError(_too_large(name, settings))
    data = bytearray()
    while chunk := await upload.read(_CHUNK):
        data += chunk
        if len(data) > settings.max_upload_bytes:
            raise UploadTooLargeError(_too_large(name, settings))
    return bytes(data)


def _too_large(name: str, settings: Settings) -> str:
    return f"{name}: larger than the upload limit of {settings.max_upload_bytes} bytes (CIR_MAX_UPLOAD_BYTES)"


def check_remote_url(url: str, settings: Settings) -> str:
    """The URL to fetch for `url` (see `settings.allowed_remote_url`); InputError when it is not allowed."""
    allowed = allowed_remote_url(url, settings.remote_url_allowlist)
    if allowed is None:
        raise InputError(
            f"{url}: fetching this URL is not allowed by this service (upload the image instead, or add "
            "its scheme://host:port/path to CIR_REMOTE_URL_ALLOWLIST)"
        )
    return allowed


async def fetch_remote(client: httpx.AsyncClient, url: str, settings: Settings) -> bytes:
    """Download an image from an allow-listed `url` (redirects not followed), within the upload
    limit and `remote_fetch_timeout_s` in all, however slowly the server sends. Asynchronous: a
    slow server holds a socket, not a thread."""
    target = check_remote_url(url, settings)
    try:
        return await asyncio.wait_for(_download(client, target, url, settings), settings.remote_fetch_timeout_s)
    except asyncio.TimeoutError:
        raise InputError(f"{url}: not fetched within {settings.remote_fetch_timeout_s:g} s (CIR_REMOTE_FETCH_TIMEOUT_S)") from None
    except httpx.HTTPError as exc:
        raise InputError(f"{url}: could not be fetched ({exc})") from exc


async def _download(client: httpx.AsyncClient, target: str, url: str, settings: Settings) -> bytes:
    async with client.stream("GET", target, follow_redirects=False) as response:
        if response.status_code != 200:
            raise InputError(f"{url}: the remote server answered {response.status_code}")
        data = bytearray()
        async for chunk in response.aiter_bytes():  # as received (a chunk size would wait for that many bytes)
            data += chunk
            if len(data) > settings.max_upload_bytes:
                raise UploadTooLargeError(_too_large(url, settings))
            if len(chunk) < _SLOW_CHUNK:  # a slow sender: let its bytes gather in the socket buffer
                await asyncio.sleep(_SLOW_PAUSE_S)  # instead of waking the event loop for each one
    return bytes(data)


def decode_base64(value: str, name: str, settings: Settings) -> bytes:
    """Bytes of a base64 string (a `data:...;base64,` prefix is accepted), with the upload limit."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if len(value) * 3 // 4 > settings.max_upload_bytes:
        raise UploadTooLargeError(_too_large(name, settings))
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name}: not valid base64") from None


def decode_image(data: bytes, name: str, settings: Settings, draft: Callable[[int, int], int] | None = None) -> Image.Image:
    """An RGB image from bytes, with the pixel cap (JPEGs decoded at the reduced scale `draft`
    allows, see `load_image`); errors name the part."""
    if not data:
        raise InputError(f"{name}: empty file")
    try:
        return load_image(data, max_pixels=settings.max_pixels, draft=draft)
    except InputError as exc:
        raise type(exc)(f"{name}: {exc}") from exc


def clean_text(value: str | None, name: str, settings: Settings) -> str | None:
    """Stripped text or None when blank; refuses text longer than `settings.max_text_chars`."""
    if value is None:
        return None
    value = value.strip()
    check_text(value, name)
    if len(value) > settings.max_text_chars:
        raise InputError(f"{name}: {len(value)} characters is more than the limit of {settings.max_text_chars}")
    return value or None


def check_form_fields(form: Any, known: tuple[str, ...]) -> None:
    """Refuse form fields the endpoint does not know (a misnamed `image` would otherwise be ignored
    silently and the search run without it), suggesting the closest known name."""
    unknown = sorted({name for name in form.keys() if name not in known})
    if unknown:
        hints = [f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, 1, 0.6)) else "")
                 for name in unknown]
        raise InputError(f"unknown form field(s) {', '.join(hints)}; this endpoint takes {', '.join(known)}")


def parse_json(value: str | None, name: str, expected: type) -> Any:
    """A JSON form field (object or list) or None when blank."""
    if value is None or not value.strip():
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(parsed, expected):
        raise InputError(f"{name}: expected a JSON {expected.__name__}, got {type(parsed).__name__}")
    return parsed
