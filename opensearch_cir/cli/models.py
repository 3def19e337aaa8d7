"""`cir models export` and `cir models list`."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .. import resources
from ..errors import CIRError
from ..encoders.manifest import Manifest

models_app = typer.Typer(help="Export and list ONNX models.", no_args_is_help=True)


@models_app.command("export")
def export_command(
    source: str = typer.Argument(..., help="Hugging Face model id or local folder (CLIP or SigLIP)."),
    out: Path = typer.Option(None, "--out", help="Output folder [default: <models dir>/<source name>]."),
    precision: List[str] = typer.Option(["fp32"], "--precision", "-p",
                                        help="fp32 | fp16 (GPU) | int8 (CPU); repeat for several."),
    model_id: str = typer.Option(None, "--model-id", help="Id stored in the manifest [default: source name]."),
) -> None:
    """Export a CLIP / SigLIP checkpoint to image.onnx + text.onnx + tokenizer + manifest."""
    try:
        from ..encoders.export import EXPORT_EXTRA_HINT, PRECISIONS, export_hf
    except ModuleNotFoundError as exc:  # onnx / onnxruntime missing
        raise typer.BadParameter(f"export needs {exc.name}: pip install 'opensearch-cir[export]'") from exc
    bad = [p for p in precision if p not in PRECISIONS]
    if bad:
        raise typer.BadParameter(f"unknown precision {bad}; choose from {', '.join(PRECISIONS)}", param_hint="--precision")
    out = out or resources.models_dir() / Path(source.rstrip("/")).name
    try:
        manifest = export_hf(source, out, precisions=precision, model_id=model_id)
    except ModuleNotFoundError as exc:
        typer.echo(f"error: export needs {exc.name}: {EXPORT_EXTRA_HINT}", err=True)
        raise typer.Exit(2) from exc
    except CIRError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"exported {manifest.model_id} (dim {manifest.embedding_dim}, "
               f"{', '.join(sorted(manifest.variants))}) to {out}")


@models_app.command("list")
def list_command() -> None:
    """Models installed under the models folder (CIR_MODELS_DIR overrides it)."""
    root = resources.models_dir()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    rows = []
    for folder in folders:
        try:
            manifest = Manifest.load(folder)
        except CIRError:
            continue
        rows.append((folder.name, manifest.model_id, str(manifest.embedding_dim), ",".join(sorted(manifest.variants)),
                     manifest.source))
    if not rows:
        typer.echo(f"no models in {root}; export one with `cir models export SOURCE --out DIR`")
        return
    header = ("NAME", "MODEL ID", "DIM", "PRECISIONS", "SOURCE")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
