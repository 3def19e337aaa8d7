"""Service settings: where the engine and the model are, and the limits that protect the service.

Every field can be set from an environment variable `CIR_<FIELD>` (upper case), e.g.
`CIR_ENGINE_URL=https://localhost:9200`, `CIR_API_KEY=secret`,
`CIR_REMOTE_URL_ALLOWLIST=https://images.example.com/,https://cdn.example.org/`.
List fields take comma-separated values.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..admin import DEFAULT_INDEX
from ..errors import InputError

ENV_PREFIX = "CIR_"
DEFAULT_ENGINE_URL = "embedded://./cir-data"


@dataclass(frozen=True)
class Settings:
    """Configuration of one service instance (see the module docstring for the environment)."""

    engine_url: str = DEFAULT_ENGINE_URL
    index: str = DEFAULT_INDEX
    model: str | None = None
    api_key: str | None = None
    """When set, every endpoint except /health, the page and the docs needs header `X-API-Key`."""
    remote_url_allowlist: tuple[str, ...] = ()
    """URLs the service may fetch images from: a URL is allowed when its scheme, host and port equal
    an entry's and its normalised path lies under the entry's path (whole segments); empty = never."""
    media_roots: tuple[str, ...] = ()
    """Folders from which GET /images/{id} may serve local files named by `image_uri`."""
    upload_dir: str | None = None
    """Where POST /ingest stores uploaded images (None: `<embedded dir>/uploads`, or no storage for a cluster)."""
    max_upload_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_text_chars: int = 1000
    max_images_per_query: int = 8
    max_ingest_items: int = 256
    max_k: int = 200
    max_candidates: int = 1000
    """Upper bound of `weights.candidates` (k of each k-NN sub-query and the hybrid depth)."""
    request_timeout_s: float = 30.0
    remote_fetch_timeout_s: float = 10.0
    """Wall-clock limit of one remote fetch, however slowly the server sends."""
    max_concurrent_decodes: int = 2
    """Reference images decoded at once (in their own threads, never on the event loop)."""
    max_concurrent_fetches: int = 32
    """Remote reference images fetched at once (asynchronously: each holds a socket, not a thread)."""
    max_concurrent_searches: int = 4
    """Searches and ingest requests run at once; more wait for a slot."""
    encoder_threads: int = 1
    """Cores one encoder call may use: each graph call runs on one thread, and a call's batches of
    texts or images run side by side up to this many. 1 gives each concurrent search its own core
    and costs the fewest CPU seconds per query (one 64-px reference image: 4.4 CPU ms on one
    thread, 6.8 spread over two, docs/speed.md); 0 uses one per core (a search with several texts
    finishes sooner for one user at a time, less throughput under load)."""
    queue_timeout_s: float = 10.0
    """How long a request waits for a decode, fetch or search slot before a 503 (retry later)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from `CIR_*` variables (and `OPENSEARCH_URL` for the engine), then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if environ.get("OPENSEARCH_URL"):
            values["engine_url"] = environ["OPENSEARCH_URL"]
        for spec in fields(cls):
            raw = environ.get(ENV_PREFIX + spec.name.upper())
            if raw is not None:
                values[spec.name] = _parse(spec, raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def embedded_dir(self) -> Path | None:
        """The data folder of the embedded engine, or None when the engine is a cluster."""
        from ..engines import EMBEDDED_SCHEME

        if self.engine_url.startswith(EMBEDDED_SCHEME):
            return Path(self.engine_url[len(EMBEDDED_SCHEME):])
        return None

    @property
    def resolved_upload_dir(self) -> Path | None:
        if self.upload_dir:
            return Path(self.upload_dir)
        embedded = self.embedded_dir
        return embedded / "uploads" if embedded is not None else None

    def allows_remote(self, url: str) -> bool:
        """True when `url` is under one of the allow-listed URLs (see `allowed_remote_url`)."""
        try:
            return allowed_remote_url(url, self.remote_url_allowlist) is not None
        except InputError:
            return False


def _parts(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, normalised path, query) of an http(s) URL; InputError when it cannot be
    one we fetch (another scheme, credentials, no host, a bad port, a backslash in the path)."""
    try:
        parsed = urlsplit(url.strip())
        port = parsed.port
    except ValueError as exc:
        raise InputError(f"{url!r}: not a valid URL ({exc})") from None
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"{url!r}: only http(s) URLs can be fetched")
    if parsed.username is not None or parsed.password is not None or "@" in parsed.netloc:
        raise InputError(f"{url!r}: URLs with credentials (user@host) are not fetched")
    if not parsed.hostname:
        raise InputError(f"{url!r}: the URL has no host")
    path = unquote(parsed.path or "/")
    if "\\" in path or "\x00" in path:
        raise InputError(f"{url!r}: the URL path has a backslash or NUL")
    normalised = posixpath.normpath("/" + path.lstrip("/"))
    if path.endswith("/") and normalised != "/":
        normalised += "/"
    normalised = "/" + normalised.lstrip("/")  # normpath keeps a leading '//'
    return scheme, parsed.hostname.lower(), port or (443 if scheme == "https" else 80), normalised, parsed.query


def allowed_remote_url(url: str, allowlist: tuple[str, ...]) -> str | None:
    """The URL to fetch (rebuilt from its parsed, normalised parts, so what is fetched is what was
    checked) when `url` is under an allow-listed URL, else None. Compared: scheme, host and port
    exactly; the path after resolving `.`/`..` and percent-escapes, as whole segments (`/ok` allows
    `/ok/a.jpg`, not `/okay.jpg`)."""
    scheme, host, port, path, query = _parts(url)
    for entry in allowlist:
        try:
            allowed_scheme, allowed_host, allowed_port, allowed_path, _ = _parts(entry)
        except InputError:
            continue
        base = allowed_path if allowed_path.endswith("/") else allowed_path + "/"
        if (scheme, host, port) == (allowed_scheme, allowed_host, allowed_port) and (path == allowed_path or path.startswith(base)):
            netloc = f"[{host}]" if ":" in host else host
            default = 443 if scheme == "https" else 80
            return urlunsplit((scheme, netloc if port == default else f"{netloc}:{port}", quote(path), query, ""))
    return None


def _parse(spec: dataclasses.Field, raw: str) -> Any:
    kind = str(spec.type)
    try:
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise InputError(f"environment variable {ENV_PREFIX}{spec.name.upper()}={raw!r} is not a valid {kind}") from None
    return raw or None
