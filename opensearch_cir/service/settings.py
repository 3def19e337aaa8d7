"""Service settings: where the engine and the model are, and the limits that protect the service.

Every field can be set from an environment variable `CIR_<FIELD>` (upper case), e.g.
`CIR_ENGINE_URL=https://localhost:9200`, `CIR_API_KEY=secret`,
`CIR_REMOTE_URL_ALLOWLIST=https://images.example.com/,https://cdn.example.org/`.
List fields take comma-separated values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

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
    """URL prefixes the service may fetch images from; empty = never fetch remote URLs."""
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
        """True when `url` starts with one of the allow-listed prefixes."""
        return any(url.startswith(prefix) for prefix in self.remote_url_allowlist)


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
