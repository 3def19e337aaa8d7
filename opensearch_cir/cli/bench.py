"""`cir bench encode|engine`: run the speed benchmarks in benchmarks/ (written by the encoder and engine areas)."""

from __future__ import annotations

import os
import subprocess
import sys
from enum import Enum

import typer

from ..resources import _REPO_ROOT

BENCHMARKS_DIR = _REPO_ROOT / "benchmarks"


class Benchmark(str, Enum):
    encode = "encode"
    engine = "engine"


def bench(
    name: Benchmark = typer.Argument(..., help="encode: encoder throughput and precision parity; "
                                     "engine: embedded engine indexing and query latency."),
    args: list[str] = typer.Argument(None, help="Arguments for the benchmark script (after --); "
                                     "`cir bench NAME -- --help` lists them."),
) -> None:
    """Run benchmarks/NAME.py and print the ratios it measures in one run."""
    script = BENCHMARKS_DIR / f"{name.value}.py"
    if not script.is_file():
        typer.secho(f"error: {script} not found; the benchmarks ship with a source checkout "
                    "(git clone the repository and run `cir bench` there)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run([sys.executable, str(script), *(args or [])], cwd=_REPO_ROOT, env=env)
    raise typer.Exit(completed.returncode)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
