"""`cir demo`: the whole system offline in one command.

Generates the synthetic scene catalog, indexes it into the embedded engine with the default model,
runs a few composed queries ("reference image + modification") and prints what they find; with
`--serve` it then starts the service so the web page can search the same catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import typer

from .setup import MODEL_HELP, fail

DEMO_INDEX = "cir-demo"
IMAGE_SIZE = 128
TOP_K = 5
COMPARED_STRATEGIES = ("image_only", "text_only", "fusion", "hybrid")
"""Printed side by side: each modality alone, vector composition, and the hybrid with caption BM25."""


@dataclass
class SceneCatalog:
    """An indexed scene catalog: where its images are, its records, and the queries it answers."""

    image_dir: Path
    by_key: dict  # scene key -> datasets.scenes.SceneRecord (equal scenes are indexed once)
    queries: list  # datasets.scenes.SceneQuery whose references and targets are in the catalog
    report: Any  # ingest.IngestReport

    @property
    def records(self) -> list:
        return list(self.by_key.values())

    def image_path(self, scene: Any) -> Path:
        """The rendered image of a scene of the catalog."""
        return self.image_dir / f"{self.by_key[scene.key].scene_id}.png"


def build_scene_catalog(client: Any, index: str, encoder: Any, data_dir: Path, *, n: int, queries: int,
                        seed: int = 0, progress: bool = False) -> SceneCatalog:
    """Render `n` scenes plus the references and targets of `queries` composed queries, and index them.

    Idempotent: images already rendered are kept and images already indexed are skipped.
    """
    from ..admin import setup_index
    from ..datasets.scenes import SceneRecord, generate_catalog, generate_queries, render
    from ..ingest import Ingestor, Record

    composed = generate_queries(seed, queries)
    records: dict[str, SceneRecord] = {}  # scene key -> record: equal scenes are indexed once
    for query in composed:
        for role, scene in (("ref", query.reference), ("target", query.target)):
            records.setdefault(scene.key, SceneRecord(f"{query.query_id}-{role}", scene))
    for record in generate_catalog(seed, n):
        records.setdefault(record.scene.key, record)

    image_dir = Path(data_dir) / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    catalog = SceneCatalog(image_dir, records, composed, None)
    setup_index(client, index, encoder.manifest)
    with Ingestor(client, index, encoder, resume=True, progress=progress, total=len(records)) as ingestor:
        for record in catalog.records:
            path = catalog.image_path(record.scene)
            if not path.exists():
                render(record.scene, size=IMAGE_SIZE).save(path)
            ingestor.add(Record(image=str(path), captions=[record.caption], metadata={
                "scene_id": record.scene_id,
                "objects": str(len(record.scene.objects)),
                "colours": sorted({obj.colour for obj in record.scene.objects}),
                "shapes": sorted({obj.shape for obj in record.scene.objects}),
            }))
    catalog.report = ingestor.report
    return catalog


def demo(
    serve: bool = typer.Option(False, "--serve", help="Afterwards, serve the web page and API on this catalog."),
    n: int = typer.Option(300, "--n", min=1, help="Number of random scenes in the catalog."),
    queries: int = typer.Option(5, "--queries", min=1, max=50, help="Composed queries to run and print."),
    data_dir: Path = typer.Option(Path("cir-demo"), "--data-dir", help="Where images and the embedded index go."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    strategy: Optional[str] = typer.Option(None, help="Composition strategy for the printed queries (default: hybrid)."),
    seed: int = typer.Option(0, help="Seed of the scene generator (same seed, same catalog)."),
    host: str = typer.Option("127.0.0.1", help="With --serve: interface to listen on."),
    port: int = typer.Option(8000, help="With --serve: TCP port."),
) -> None:
    """Offline demo: synthetic scenes → embedded index → composed queries (→ web page with --serve)."""
    from ..compose import CompositeQuery, search
    from ..encoders import load_encoder
    from ..engines import EMBEDDED_SCHEME, connect
    from ..errors import CIRError, IndexMismatchError

    engine_url = f"{EMBEDDED_SCHEME}{data_dir / 'engine'}"
    try:
        encoder = load_encoder(model)
        client = connect(engine_url)
        typer.echo(f"model {encoder.model_id} ({encoder.dim}-d), embedded engine in {data_dir / 'engine'}")
        catalog = build_scene_catalog(client, DEMO_INDEX, encoder, data_dir, n=n, queries=queries, seed=seed,
                                      progress=True)
        typer.echo(catalog.report.summary())
        composed = [CompositeQuery(images=[str(catalog.image_path(query.reference))], text=query.text, k=TOP_K,
                                   strategy=strategy or CompositeQuery.strategy) for query in catalog.queries]
        for query, composite in zip(catalog.queries, composed):
            _print_query(query, search(client, DEMO_INDEX, composite, encoder), catalog)
        typer.secho(f"\ntargets in the top {TOP_K} of {len(catalog.records)} images, by strategy:", bold=True)
        for name in dict.fromkeys((composed[0].strategy, *COMPARED_STRATEGIES)):
            found = sum(_target_found(query, search(client, DEMO_INDEX, replace(composite, strategy=name), encoder),
                                      catalog) for query, composite in zip(catalog.queries, composed))
            typer.echo(f"  {name:<12} {found}/{len(composed)}")
    except IndexMismatchError as exc:
        raise fail(f"{exc}\n(the demo folder {data_dir} was built with another model: delete it, "
                   "or pass another --data-dir)") from exc
    except CIRError as exc:
        raise fail(exc) from exc
    if serve:
        from ..service.settings import Settings
        from .serve import run_server

        run_server(Settings(engine_url=engine_url, index=DEMO_INDEX, model=model,
                            media_roots=(str(catalog.image_dir),)), host, port, client=client)
    else:
        typer.echo("\nSee it in the browser: cir demo --serve  (same catalog, indexed already)")


def _is_target(hit: Any, query: Any, catalog: SceneCatalog) -> bool:
    return (hit.metadata or {}).get("scene_id") == catalog.by_key[query.target.key].scene_id


def _target_found(query: Any, response: Any, catalog: SceneCatalog) -> bool:
    return any(_is_target(hit, query, catalog) for hit in response)


def _print_query(query: Any, response: Any, catalog: SceneCatalog) -> None:
    typer.echo(f"\nreference: {query.reference.caption}")
    typer.secho(f"modification: {query.text}", bold=True)
    for rank, hit in enumerate(response, 1):
        typer.echo(f"  {rank}. {hit.score:.3f}  {hit.caption}  {'✓ target' if _is_target(hit, query, catalog) else ''}")
    if not _target_found(query, response, catalog):
        typer.echo(f"  (target not in the top {len(response)}: {query.target.caption})")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
