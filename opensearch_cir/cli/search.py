"""`cir search`: run a composed query and print the ranked results with per-sub-query scores."""

from __future__ import annotations

import json
from typing import Optional

import typer

from ..admin import DEFAULT_INDEX
from ..compose.query import STRATEGIES, CompositeQuery, Weights


def search_command(
    image: list[str] = typer.Option([], "--image", "-i", help="Reference image file (repeatable)."),
    doc_id: list[str] = typer.Option([], "--id", help="Reference document id already in the index (repeatable)."),
    text: str = typer.Option("", "--text", "-t", help='Modification text, e.g. "in red" or "replace the hood with a collar".'),
    negative: str = typer.Option("", "--negative", "-n", help='What to avoid, e.g. "a hood".'),
    caption: Optional[str] = typer.Option(None, help="Reference caption (default: the reference's indexed caption)."),
    filter_: list[str] = typer.Option([], "--filter", "-f", help="field=value term filter (repeatable; same field twice = any of)."),
    strategy: str = typer.Option("hybrid", help=f"One of: {', '.join(STRATEGIES)}."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results."),
    alpha: Optional[float] = typer.Option(None, help="Text share in weighted fusion."),
    beta: Optional[float] = typer.Option(None, help="caption_vector share in caption_aware."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="Slerp position (0 = image, 1 = text)."),
    normalization: Optional[str] = typer.Option(None, help="Hybrid normalisation: min_max, l2, z_score or rrf."),
    rerank: str = typer.Option("", "--rerank", help="Rerankers after the strategy, comma separated: exact, intersection, "
                               "expansion, clauses (options as name:blend=0.5), or an http(s) URL (docs/methods/rerank-external.md)."),
    rerank_depth: int = typer.Option(100, "--rerank-depth", help="Candidates the rerankers see (K)."),
    explain: bool = typer.Option(False, "--explain", help="Show each sub-query's raw score and the request body."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    url: Optional[str] = typer.Option(None, "--url", help="embedded:///dir or https://host:9200 (default: $OPENSEARCH_URL, else embedded://./cir-data)."),
    index: str = typer.Option(DEFAULT_INDEX, help="Index to search."),
    model: Optional[str] = typer.Option(None, help="Model name under onnx_models/ or a folder (default: the default model)."),
) -> None:
    """Search with a reference image and/or a modification text; prints ranked results."""
    from ..compose import search
    from ..encoders import load_encoder
    from ..engines import connect
    from ..errors import CIRError

    try:
        changes = {name: value for name, value in
                   {"alpha": alpha, "beta": beta, "lam": lam, "normalization": normalization}.items() if value is not None}
        query = CompositeQuery(images=image, doc_ids=doc_id, text=text, negative=negative, caption=caption,
                               filters=parse_filters(filter_), k=k, strategy=strategy, weights=Weights(**changes),
                               rerank=rerank, rerank_depth=rerank_depth)
        response = search(connect(url), index, query, load_encoder(model), explain=explain)
    except CIRError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps({
            "rewritten_caption": response.rewrite.text if response.rewrite else None,
            "pipeline": response.rendered.pipeline_id,
            "results": [{k: v for k, v in vars(r).items() if k != "vectors"} for r in response],
            **({"body": response.rendered.body} if explain else {}),
        }, indent=2, default=str))
        return
    print_results(response, explain=explain)


def parse_filters(items: list[str]) -> dict[str, str | list[str]]:
    """["metadata.colour=Red", "metadata.colour=Blue"] -> {"metadata.colour": ["Red", "Blue"]}."""
    from ..errors import InputError

    filters: dict[str, str | list[str]] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise InputError(f"filter {item!r} is not field=value")
        field, value = field.strip(), value.strip()
        if field in filters:
            previous = filters[field]
            filters[field] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            filters[field] = value
    return filters


def print_results(response, *, explain: bool) -> None:
    """A numbered table: rank, score, id, caption (and per sub-query raw scores with explain)."""
    rendered = response.rendered
    if response.rewrite is not None and response.rewrite.text:
        typer.echo(f"rewritten caption: {response.rewrite.text}")
    weights = ", ".join(f"{name} {w:g}" for name, w in zip(rendered.sub_queries, rendered.weights))
    typer.echo(f"strategy {rendered.strategy}: {weights}" + (f"  (pipeline {rendered.pipeline_id})" if rendered.pipeline_id else ""))
    if not response.results:
        typer.echo("no results")
    for rank, hit in enumerate(response, start=1):
        caption = hit.caption[0] if isinstance(hit.caption, list) and hit.caption else hit.caption
        typer.echo(f"{rank:>3}. {hit.score:8.4f}  {hit.id[:16]}  {caption or ''}  {hit.image_uri or ''}".rstrip())
        if explain:
            parts = "  ".join(f"{name}={'-' if s is None else f'{s:.4f}'}" for name, s in hit.sub_scores.items())
            typer.echo(f"     {parts}")
    if explain:
        typer.echo("request body (vectors elided):")
        typer.echo(json.dumps(_elide_vectors(rendered.body), indent=2))


def _elide_vectors(value):
    if isinstance(value, dict):
        return {k: (f"[{len(v)} floats]" if k == "vector" else _elide_vectors(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_elide_vectors(v) for v in value]
    return value


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
