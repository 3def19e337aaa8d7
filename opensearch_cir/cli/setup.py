"""`cir setup`: create or upgrade the index template, the index and the search pipelines, as the
cluster's OpenSearch version reads them; it puts what the version supports, says what it skipped,
and reports failed steps at the end (exit code 1) instead of stopping half-way."""

from __future__ import annotations

from typing import Optional

import typer

from ..admin import DEFAULT_INDEX

URL_HELP = "embedded:///dir or https://host:9200 (default: $OPENSEARCH_URL, else embedded://./cir-data)."
MODEL_HELP = "Model name under onnx_models/ or a folder (default: the default model)."


def connect_from_options(url: str | None, ca_certs: str | None = None, insecure: bool = False,
                         opensearch_version: str | None = None):
    """A client for `url`, passing TLS and version options only where the user gave them (cluster URLs)."""
    from ..engines import connect

    options = {}
    if ca_certs:
        options["ca_certs"] = ca_certs
    if insecure:
        options["verify_certs"] = False
    if opensearch_version:
        options["opensearch_version"] = opensearch_version
    return connect(url, **options)


def fail(exc: Exception, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def setup_command(
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    index: str = typer.Option(DEFAULT_INDEX, "--index", help="Index to create or upgrade."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    default_pipeline: Optional[str] = typer.Option(
        None, help="Search pipeline to set as the new index's default (e.g. cir-rrf)."
    ),
    encoder_url: Optional[str] = typer.Option(
        None, help="Also register our encoder service (http(s)://host:port) as an ml-commons remote model "
        "and put the cir-embed ingest pipeline (clusters only)."
    ),
    encoder_api_key: Optional[str] = typer.Option(
        None, envvar="CIR_API_KEY", show_envvar=True,
        help="X-API-Key the cluster sends to the encoder service (the key `cir serve` checks)."),
    opensearch_version: Optional[str] = typer.Option(
        None, envvar="CIR_OPENSEARCH_VERSION", show_envvar=True,
        help="Use this OpenSearch version's rules instead of asking GET / (needed for OpenSearch Serverless)."),
    ca_certs: Optional[str] = typer.Option(None, help="CA bundle for the cluster's TLS certificate ($OPENSEARCH_CA_CERTS)."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify TLS certificates (test clusters only)."),
    vectors: Optional[str] = typer.Option(
        None, help="Vector storage of a new index: float (default), byte, binary, on_disk-4x/8x/16x/32x "
        "(index_templates/vector-storage.json; OpenSearch 2.17+ for byte and on_disk)."),
) -> None:
    """Create or upgrade template, index and search pipelines (idempotent; refuses another model's index)."""
    from ..admin import setup_index, setup_remote_model
    from ..encoders.manifest import Manifest
    from ..errors import CIRError
    from ..resources import resolve_model_dir

    try:
        manifest = Manifest.load(resolve_model_dir(model))
        client = connect_from_options(url, ca_certs, insecure, opensearch_version)
        report = setup_index(client, index, manifest, default_pipeline=default_pipeline, raise_on_failure=False,
                             vectors=vectors)
    except (CIRError, ValueError) as exc:
        raise fail(exc) from exc
    if encoder_url:
        report.run("remote model", lambda: setup_remote_model(client, encoder_url, api_key=encoder_api_key, report=report))
    typer.echo(f"cluster: {report.dialect}")
    typer.echo(f"index {report.index}: {report.index_action}" + (f" (added {', '.join(report.added_fields)})" if report.added_fields else ""))
    if f"template {report.template}" not in report.failed:
        typer.echo(f"template {report.template}: put (model {manifest.model_id}, dimension {manifest.embedding_dim})")
    for pipeline, action in report.pipelines.items():
        typer.echo(f"search pipeline {pipeline}: {action}")
    if report.remote_model:
        typer.echo(f"remote model {report.remote_model} deployed; ingest pipeline cir-embed put")
    for step, reason in report.skipped.items():
        typer.secho(f"skipped {step}: {reason}", fg=typer.colors.YELLOW)
    for step, reason in report.failed.items():
        typer.secho(f"failed {step}: {reason}", fg=typer.colors.RED, err=True)
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("setup")(setup_command)
