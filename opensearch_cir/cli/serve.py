"""`cir serve`: run the REST service and its web page with uvicorn."""

from __future__ import annotations

from typing import Optional

import typer

from ..service.settings import DEFAULT_INDEX, Settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="TCP port."),
    url: Optional[str] = typer.Option(None, "--url", help="Engine: embedded:///dir or https://host:9200 "
                                      "(default: $OPENSEARCH_URL, else embedded://./cir-data)."),
    index: Optional[str] = typer.Option(None, help=f"Index to search (default: {DEFAULT_INDEX})."),
    model: Optional[str] = typer.Option(None, help="Model name under onnx_models/ or a folder (default: the default model)."),
    api_key: Optional[str] = typer.Option(None, envvar="CIR_API_KEY", help="Require this key in the X-API-Key header."),
    media_root: list[str] = typer.Option([], "--media-root", help="Folder whose images GET /images may serve (repeatable)."),
) -> None:
    """Serve the search API (OpenAPI docs at /docs) and the web page at http://HOST:PORT/.

    Every limit can be set with CIR_* environment variables, e.g. CIR_MAX_UPLOAD_BYTES,
    CIR_REMOTE_URL_ALLOWLIST (see opensearch_cir/service/settings.py).
    """
    settings = Settings.from_env(engine_url=url, index=index, model=model, api_key=api_key,
                                 media_roots=tuple(media_root) or None)
    run_server(settings, host, port)


def run_server(settings: Settings, host: str, port: int) -> None:
    """Load the model and the engine, then serve until interrupted (shared with `cir demo --serve`)."""
    import uvicorn

    from ..errors import CIRError
    from ..service import create_app

    app = create_app(settings)
    try:
        _ = app.state.backend.encoder, app.state.backend.client  # fail now, not on the first request
    except CIRError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"serving {settings.engine_url} index {settings.index} on http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
