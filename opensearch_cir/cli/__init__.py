"""The `cir` command. Each area registers its sub-commands from its own module in this package."""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(
    name="cir",
    help="Composed image retrieval on OpenSearch or the embedded offline engine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Modules that add commands to `app` (each defines `register(app)`).
_COMMAND_MODULES = ("models", "setup", "ingest", "search", "serve", "demo", "eval", "bench")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(app)


_register_all()


def main() -> None:
    """Entry point of the `cir` console script."""
    app()
