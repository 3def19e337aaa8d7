"""Optional CIReVL-style hooks: a captioner and an LLM rewriter, as Python callables or HTTP endpoints.

CIReVL (Karthik et al., ICLR 2024) captions the reference image and lets an LLM rewrite the caption
with the modification; the target caption is then a text query (and, here, the BM25 query of the
hybrid). The rule-based `rewrite.rewrite_caption` stays the default; these hooks replace its steps:

- **captioner**: `Callable[[bytes], str]`, reference image bytes → caption. Used only when the
  reference is not in the index (an indexed reference brings its stored caption) and no `caption`
  is given.
- **rewriter**: `Callable[[str, str], str]`, (reference caption, modification) → target caption.
  The rule-based rewriter still runs for its negatives ("without a hood" → a negative vector).

HTTP contract (JSON over POST, UTF-8, any status other than 200 or a malformed body is a failure):

    captioner  request {"image": "<base64 of the image bytes>"}          response {"caption": "..."}
    rewriter   request {"caption": "...", "modification": "..."}         response {"caption": "..."}

A failing hook is logged and the rule-based path is used instead, so a query never fails because a
hook did. `Hooks.from_env()` reads `CIR_CAPTIONER_URL` and `CIR_REWRITER_URL` (and
`CIR_HOOK_TIMEOUT`, seconds, default 30); `prepare` / `search` use it unless given `hooks=`.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger(__name__)

Captioner = Callable[[bytes], str]
Rewriter = Callable[[str, str], str]


@dataclass(frozen=True)
class Hooks:
    """The optional captioner and rewriter (None: not used)."""

    captioner: Captioner | None = None
    rewriter: Rewriter | None = None

    @classmethod
    def from_env(cls) -> "Hooks":
        """HTTP hooks from CIR_CAPTIONER_URL / CIR_REWRITER_URL (unset: no hook)."""
        timeout = float(os.environ.get("CIR_HOOK_TIMEOUT", "30"))
        captioner_url, rewriter_url = os.environ.get("CIR_CAPTIONER_URL"), os.environ.get("CIR_REWRITER_URL")
        return cls(captioner=http_captioner(captioner_url, timeout) if captioner_url else None,
                   rewriter=http_rewriter(rewriter_url, timeout) if rewriter_url else None)

    def caption(self, image: bytes) -> str | None:
        """The captioner's caption of `image`, or None (no captioner, or it failed)."""
        return _safely("captioner", self.captioner, image) if self.captioner else None

    def rewrite(self, caption: str, modification: str) -> str | None:
        """The rewriter's target caption, or None (no rewriter, or it failed)."""
        return _safely("rewriter", self.rewriter, caption, modification) if self.rewriter else None


def _safely(name: str, hook: Callable[..., str], *args) -> str | None:
    try:
        result = hook(*args)
    except Exception as exc:  # noqa: BLE001 - a hook failure falls back to the rule-based path
        logger.warning("%s hook failed, using the rule-based path: %s", name, exc)
        return None
    if not isinstance(result, str) or not result.strip():
        logger.warning("%s hook returned %r, using the rule-based path", name, result)
        return None
    return " ".join(result.split())


def _post(url: str, payload: dict, timeout: float) -> str:
    import httpx

    response = httpx.post(url, json=payload, timeout=timeout)
    response.raise_for_status()
    caption = response.json().get("caption")
    if not isinstance(caption, str):
        raise ValueError(f"{url} answered without a string `caption`")
    return caption


def http_captioner(url: str, timeout: float = 30.0) -> Captioner:
    """A captioner calling `url` with {"image": base64} and reading {"caption"}."""
    return lambda image: _post(url, {"image": base64.b64encode(image).decode("ascii")}, timeout)


def http_rewriter(url: str, timeout: float = 30.0) -> Rewriter:
    """A rewriter calling `url` with {"caption", "modification"} and reading {"caption"}."""
    return lambda caption, modification: _post(url, {"caption": caption, "modification": modification}, timeout)
