"""`cir serve`: run the REST service and its web page with uvicorn."""

from __future__ import annotations

from typing import Any, Optional

import typer

from ..admin import DEFAULT_INDEX
from ..service.settings import Settings
from .setup import MODEL_HELP, URL_HELP, connect_from_options, fail


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="TCP port."),
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    index: Optional[str] = typer.Option(None, help=f"Index to search (default: $CIR_INDEX, else {DEFAULT_INDEX})."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    api_key: Optional[str] = typer.Option(None, envvar="CIR_API_KEY", help="Require this key in the X-API-Key header."),
    media_root: list[str] = typer.Option([], "--media-root", help="Folder whose images GET /images may serve (repeatable)."),
    ca_certs: Optional[str] = typer.Option(None, help="CA bundle for the cluster's TLS certificate ($OPENSEARCH_CA_CERTS)."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify TLS certificates (test clusters only)."),
) -> None:
    """Serve the search API (OpenAPI docs at /docs) and the web page at http://HOST:PORT/.

    Limits and other settings come from CIR_* environment variables, e.g. CIR_MAX_UPLOAD_BYTES,
    CIR_REMOTE_URL_ALLOWLIST, CIR_REQUEST_TIMEOUT_S (all listed in docs/service.md).
    """
    from ..errors import CIRError

    try:
        settings = Settings.from_env(engine_url=url, index=index, model=model, api_key=api_key,
                                     media_roots=tuple(media_root) or None)
        client = connect_from_options(settings.engine_url, ca_certs, insecure)
    except (CIRError, ValueError) as exc:
        raise fail(exc) from exc
    run_server(settings, host, port, client=client)


def run_server(settings: Settings, host: str, port: int, *, client: Any = None) -> None:
    """Load the model and the engine, then serve until interrupted (shared with `cir demo --serve`)."""
    import uvicorn

    from ..errors import CIRError
    from ..service import create_app
    from ..service.logs import log_through_queues

    app = create_app(settings, client=client)
    try:
        _ = app.state.backend.encoder, app.state.backend.client  # fail now, not on the first request
    except CIRError as exc:
        raise fail(exc) from exc
    typer.echo(f"serving index {settings.index} of {settings.engine_url} on http://{host}:{port}/  (Ctrl+C to stop)")
    config = uvicorn.Config(app, host=host, port=port, log_level="info")  # sets up uvicorn's log handlers
    listeners = log_through_queues(("uvicorn", "uvicorn.error", "uvicorn.access"))
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it handled (uvicorn.run swallows it too)
        pass
    finally:
        for listener in listeners:
            listener.stop()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
