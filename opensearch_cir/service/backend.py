"""The engine client and the encoder a service instance works with, created on first use."""

from __future__ import annotations

import threading
from typing import Any, Callable

from .settings import Settings


class Backend:
    """Holds the engine client and the encoder; either can be injected (tests, embedding apps)."""

    def __init__(self, settings: Settings, *, client: Any = None, encoder: Any = None):
        self.settings = settings
        self._client = client
        self._encoder = encoder
        self._lock = threading.Lock()
        self._index_ready = False

    @property
    def client(self) -> Any:
        """The opensearch-py shaped client of `settings.engine_url`."""
        from ..engines import connect

        return self._once("_client", lambda: connect(self.settings.engine_url))

    @property
    def encoder(self) -> Any:
        """The encoder of `settings.model` (None: the default model), on `settings.encoder_threads` cores per call."""
        from ..encoders import load_encoder

        threads = self.settings.encoder_threads if self.settings.encoder_threads > 0 else None
        return self._once("_encoder", lambda: load_encoder(self.settings.model, threads=threads))

    def _once(self, attribute: str, create: Callable[[], Any]) -> Any:
        if getattr(self, attribute) is None:
            with self._lock:
                if getattr(self, attribute) is None:
                    setattr(self, attribute, create())
        return getattr(self, attribute)

    def ensure_index(self) -> None:
        """Create or check the index for the encoder's model (once per instance), as `cir setup` does."""
        if self._index_ready:
            return
        from ..admin import setup_index

        setup_index(self.client, self.settings.index, self.encoder.manifest)
        self._index_ready = True
