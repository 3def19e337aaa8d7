"""`cir eval ...`: the benchmarks. Each indexes into the embedded engine (through setup_index +
Ingestor), queries through `compose`, and writes JSON, a markdown table and (with the `plots`
extra) a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer

eval_app = typer.Typer(help="Measure retrieval quality on standard and built-in benchmarks.", no_args_is_help=True)

_OUT = typer.Option(Path("runs/eval"), "--out", help="Folder for <benchmark>.json/.md/.png.")
_ENGINE = typer.Option(None, "--engine-dir", help="Embedded engine folder for the benchmark indices "
                       "(kept between runs and reused; default: OUT/engine).")
_MODEL = typer.Option(None, "--model", help="Model name under onnx_models/ or a folder (default: the default model).")
_JSON = typer.Option(False, "--json", help="Print the result JSON on stdout.")
_TUNE = typer.Option(200, "--tune-queries", help="Dev queries used for tuning (the rest of the dev half is unused).")
_TEST = typer.Option(0, "--test-queries", help="Cap on the test queries scored (0 = the whole test half).")


def _run(name: str, out: Path, engine_dir: Optional[Path], model: Optional[str], as_json: bool,
         body: Callable[[Any, Any], dict], **engine_options: Any) -> None:
    from ..encoders import load_encoder
    from ..engines import connect
    from ..errors import CIRError
    from ..eval.report import PLOTS_HINT, plots_available, write_report

    try:
        encoder = load_encoder(model)
        client = connect(f"embedded://{engine_dir or out / 'engine'}", **engine_options)
        result = body(client, encoder)
    except CIRError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    result["model"] = encoder.model_id
    paths = write_report(result, out, name)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(paths["markdown"].read_text())
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
        if not plots_available():
            typer.echo(PLOTS_HINT)


@eval_app.command("flickr8k")
def flickr8k(
    data: Path = typer.Option(..., "--data", help="Folder with images-SPLIT.tar, captions-SPLIT.txt, split-SPLIT.txt."),
    split: str = typer.Option("dev", help="Any split name present in DATA."),
    limit: Optional[int] = typer.Option(None, help="Only the first N images of the split (quick runs)."),
    depth: int = typer.Option(100, help="Results per query; a first hit deeper than this counts as a miss."),
    out: Path = _OUT, engine_dir: Optional[Path] = _ENGINE, model: Optional[str] = _MODEL, as_json: bool = _JSON,
) -> None:
    """Text→image and image→text Recall@1/5/10 and median rank."""
    from ..eval import flickr8k as bench

    _run(f"flickr8k-{split}", out, engine_dir, model, as_json,
         lambda client, encoder: bench.run(data, client, encoder, split=split, limit=limit, depth=depth))


@eval_app.command("fashion")
def fashion(
    data: Path = typer.Option(..., "--data", help="Folder with products.parquet and images.tar."),
    products: str = typer.Option("dev", help="Catalog split to index: dev (never trained on), train or all."),
    gallery: int = typer.Option(0, help="Cap on the gallery size (a deterministic sample; 0 = the whole split)."),
    queries: int = typer.Option(4600, help="Composed queries (colour/article/gender; half dev, half test) "
                                "plus 10 % usage changes reported apart."),
    tune_queries: int = _TUNE, test_queries: int = _TEST,
    out: Path = _OUT, engine_dir: Optional[Path] = _ENGINE, model: Optional[str] = _MODEL, as_json: bool = _JSON,
) -> None:
    """Fashion200k-style composed benchmark from a product catalog (title indexed, attributes as ground truth)."""
    from ..eval import fashion as bench

    _run("fashion", out, engine_dir, model, as_json,
         lambda client, encoder: bench.run(data, client, encoder, products=products, gallery_size=gallery or None, n_queries=queries,
                                           tune_subset=tune_queries, test_subset=test_queries or None))


@eval_app.command("scenes")
def scenes(
    seed: int = typer.Option(0, help="Scene seed (< 1000: never used for training)."),
    queries: int = typer.Option(2000, help="Composed queries (half dev, half test)."),
    distractors: int = typer.Option(2000, help="Extra gallery scenes."),
    tune_queries: int = _TUNE, test_queries: int = _TEST,
    out: Path = _OUT, engine_dir: Optional[Path] = _ENGINE, model: Optional[str] = _MODEL, as_json: bool = _JSON,
) -> None:
    """Synthetic CSS-style scenes; gallery indexed without captions."""
    from ..eval import scenes as bench

    _run(f"scenes-{seed}", out, engine_dir, model, as_json,
         lambda client, encoder: bench.run(client, encoder, seed=seed, n_queries=queries, n_distractors=distractors,
                                           tune_subset=tune_queries, test_subset=test_queries or None))


@eval_app.command("rerank")
def rerank(
    benchmark: str = typer.Argument(..., help="fashion or scenes."),
    data: Optional[Path] = typer.Option(None, "--data", help="fashion: folder with products.parquet and images.tar."),
    depth: int = typer.Option(100, help="Candidates the rerankers see (K)."),
    strategy: Optional[str] = typer.Option(None, help="First stage (default: hybrid on fashion, slerp on scenes)."),
    queries: int = typer.Option(0, help="Composed queries to build (0: the benchmark's default)."),
    distractors: int = typer.Option(1000, help="scenes: extra gallery scenes."),
    tune_queries: int = typer.Option(100, "--tune-queries", help="Dev queries used for tuning."), test_queries: int = _TEST,
    out: Path = _OUT, engine_dir: Optional[Path] = _ENGINE, model: Optional[str] = _MODEL, as_json: bool = _JSON,
) -> None:
    """Each reranker after the benchmark's best strategy: test-half metrics with and without, and latency."""
    from ..eval import rerank as bench

    options: dict = {"n_queries": queries} if queries else {}
    if benchmark == "scenes":
        options["n_distractors"] = distractors
    _run(f"rerank-{benchmark}" + (f"-{strategy}" if strategy else ""), out, engine_dir, model, as_json,
         lambda client, encoder: bench.run(benchmark, client, encoder, data=data, tune_subset=tune_queries,
                                           test_subset=test_queries or None, depth=depth, strategy=strategy, **options))


@eval_app.command("multiturn")
def multiturn(
    data: Path = typer.Option(..., "--data", help="Fashion catalog folder (products.parquet, images.tar)."),
    episodes: int = typer.Option(300, help="Simulated users (target + start product each)."),
    strategy: str = typer.Option("hybrid", help="Strategy of every turn."),
    rerank: str = typer.Option("", "--rerank", help="Rerankers of every turn, comma separated."),
    gallery: int = typer.Option(0, help="Cap on the gallery size (0 = the whole dev split)."),
    out: Path = _OUT, engine_dir: Optional[Path] = _ENGINE, model: Optional[str] = _MODEL, as_json: bool = _JSON,
) -> None:
    """Multi-turn sessions vs one turn with all changes: success@10 after 1, 2, 3, 5 turns."""
    from ..eval import multiturn as bench

    _run("multiturn-fashion", out, engine_dir, model, as_json,
         lambda client, encoder: bench.run(data, client, encoder, n_episodes=episodes, strategy=strategy,
                                           gallery_size=gallery or None,
                                           rerank=[r for r in rerank.split(",") if r.strip()]))


EXACT_HNSW_THRESHOLD = 2**62  # no HNSW graph: every k-NN query of a benchmark scores the whole gallery


def _official_command(dataset: str, layout: str, summary: str) -> None:
    """Register `cir eval DATASET` for a data set in its official layout (see `eval.formats`, `eval.runner`)."""

    def command(
        data: Path = typer.Option(..., "--data", help=f"Data set root ({layout})."),
        split: str = typer.Option("val", help="Split to score (the whole split); a test split writes the "
                                  "official submission files instead."),
        reference: str = typer.Option("official", help="Reference image in the results: official (CIRR removes "
                                      "it, FashionIQ and CIRCO keep it), remove or keep."),
        ann: bool = typer.Option(False, "--ann", help="Use the index's approximate k-NN (HNSW) instead of exact ranking."),
        tune_on: Optional[str] = typer.Option(None, "--tune-on", help="Tune fusion alpha / slerp lambda on this "
                                              "other split (default: fixed settings, as the papers' zero-shot tables)."),
        tune_queries: int = typer.Option(200, "--tune-queries", help="Queries of --tune-on used for tuning."),
        limit: int = typer.Option(0, "--limit", help="Score only the first N queries (quick runs; not comparable)."),
        out: Path = _OUT, engine_dir: Optional[Path] = _ENGINE, model: Optional[str] = _MODEL, as_json: bool = _JSON,
    ) -> None:
        from ..eval import runner

        def body(client: Any, encoder: Any) -> dict:
            settings = runner.Settings(split=split, reference=reference, exact=not ann, tune_on=tune_on,
                                       tune_queries=tune_queries, limit=limit or None, out=out)
            return runner.run(dataset, data, client, encoder, settings)

        options = {} if ann else {"hnsw_threshold": EXACT_HNSW_THRESHOLD}
        _run(f"{dataset}-{split}", out, engine_dir, model, as_json, body, **options)

    command.__doc__ = summary
    eval_app.command(dataset)(command)


_official_command("cirr", "cirr/captions, cirr/image_splits and the images (ROOT/dev or cirr/img_raw/dev)",
                  "CIRR: Recall@1/5/10/50 and Recall_subset@1/2/3 (reference removed); test1 writes the server files.")
_official_command("fashioniq", "captions, image_splits, images",
                  "FashionIQ: Recall@10/50 per category, their averages and the overall (reference kept).")
_official_command("circo", "annotations, COCO2017_unlabeled",
                  "CIRCO: mAP@5/10/25/50 and Recall@K on the target (reference kept); test writes the server file.")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
