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


_MODEL = typer.Option(None, "--model", help="Model name under onnx_models/ or a folder [default: the default model].")


@models_app.command("import-phi")
def import_phi_command(
    checkpoint: Path = typer.Argument(..., exists=True, dir_okay=False, help="PyTorch checkpoint of a published φ."),
    method: str = typer.Option(..., "--method", help="pic2word | searle | lincir (which published module it is)."),
    model: str = _MODEL,
    input_scale: float = typer.Option(1.0, "--input-scale", help="Multiplies the L2-normalised image embedding "
                                      "before φ (published φ saw CLIP's unnormalised features; use their typical norm)."),
    template: str = typer.Option(None, "--template", help='Prompt with {} for the text and the placeholder, e.g. '
                                 '"a photo of $ that {}" (SEARLE, LinCIR) or "a photo of $ , {}" (Pic2Word).'),
) -> None:
    """Convert a Pic2Word / SEARLE / LinCIR φ state dict into the model's phi.onnx (+ text.pseudo.onnx)."""
    from ..encoders.phi import PHI_METHODS, install_phi, load_state_dict, phi_layers_from_state_dict

    if method not in PHI_METHODS:
        raise typer.BadParameter(f"choose from {', '.join(PHI_METHODS)}", param_hint="--method")
    model_dir = resources.resolve_model_dir(model)
    try:
        layers = phi_layers_from_state_dict(load_state_dict(checkpoint), method)
        manifest = install_phi(model_dir, layers, method=method, source=f"imported from {checkpoint.name}",
                               input_scale=input_scale, template=template)
    except CIRError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"installed {method} φ ({len(layers)} layers, {manifest.embedding_dim} → {manifest.phi.token_dim}) "
               f"in {model_dir}; prompt {manifest.phi.template!r}")


@models_app.command("train-phi")
def train_phi_command(
    captions: List[Path] = typer.Option(None, "--captions", exists=True, dir_okay=False,
                                        help="Caption file, one caption per line; repeat for several."),
    data: Path = typer.Option(None, "--data", help="Instead of --captions: the shared data folder; its training "
                              "captions are used (Flickr8k train, fashion train split, training scenes)."),
    model: str = _MODEL,
    run_dir: Path = typer.Option(Path("runs/phi"), "--run-dir", help="Checkpoint and curve (resumed when present)."),
    steps: int = typer.Option(220, help="Optimizer steps."),
    batch: int = typer.Option(32, help="Captions per step."),
    seed: int = typer.Option(0, help="Seed of the split, sampling, masking, noise and initialisation."),
    minutes: float = typer.Option(25.0, help="Stop (and install what was learned) after this many minutes."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (AdamW, warm-up then cosine)."),
    threads: int = typer.Option(2, help="torch threads."),
    source: str = typer.Option(None, "--source", help="HF checkpoint of a CLIP/SigLIP model (default: manifest source)."),
    int8_weights: bool = typer.Option(False, "--int8-weights", help="Store φ's matrices as int8 (4x smaller)."),
) -> None:
    """Train φ text-only, LinCIR-style, for a model and install it (docs/phi.md)."""
    from ..training.phi import PhiConfig, read_captions, train_for_model, training_captions

    if bool(captions) == (data is not None):
        raise typer.BadParameter("give --captions FILE or --data DIR (one of them)")
    texts = read_captions(captions) if captions else training_captions(data)
    if len(texts) < 300:
        raise typer.BadParameter(f"only {len(texts)} distinct captions; φ needs a few thousand")
    config = PhiConfig(seed=seed, steps=steps, batch=batch, lr=lr, threads=threads, time_budget_minutes=minutes)
    model_dir = resources.resolve_model_dir(model)
    typer.echo(f"training φ for {model_dir} on {len(texts)} captions ({steps} steps of {batch}, ≤ {minutes} min)")
    info = train_for_model(model_dir, texts, config, run_dir, source=source, int8_weights=int8_weights,
                           on_eval=lambda point: typer.echo(f"  {point}"))
    typer.echo(f"done: {info['steps']} steps in {info['seconds']:.0f} s; parity {info['parity']}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
