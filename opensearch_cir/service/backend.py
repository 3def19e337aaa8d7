"""The engine client and the encoder a service instance works with, created on first use."""

from __future__ import annotations

import threading
from typing import Any

from .settings import Settings


class Backend:
    """Holds the engine client and the encoder; either can be injected (tests, embedding apps)."""

    def __init__(self, settings: Settings, *, client: Any = None, encoder: Any = None):
        self.settings = settings
        self._client = client
        self._encoder = encoder
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The opensearch-py shaped client of `settings.engine_url`."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from ..engines import connect

                    self._client = connect(self.settings.engine_url)
        return self._client

    @property
    def encoder(self) -> Any:
        """The encoder of `settings.model` (None: the default model)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from ..encoders import load_encoder

                    self._encoder = load_encoder(self.settings.model)
        return self._encoder

    @property
    def encoder_loaded(self) -> bool:
        return self._encoder is not None
