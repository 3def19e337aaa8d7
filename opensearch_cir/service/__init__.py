"""The REST service (FastAPI) and its web page: `create_app(settings)`, served by `cir serve`."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
