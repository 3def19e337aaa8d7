"""Locations of the files that ship beside the package: index templates and ONNX models.

In a source checkout (editable install) they are the top-level folders `index_templates/` and
`onnx_models/`; in a wheel they are installed under `<prefix>/share/opensearch-cir/`.
`CIR_MODELS_DIR` overrides where models are looked up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SHARE = Path(sys.prefix) / "share" / "opensearch-cir"

DEFAULT_MODEL_NAME = "default"


def _first_existing(name: str) -> Path:
    for base in (_REPO_ROOT, _SHARE):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    return _REPO_ROOT / name


def index_templates_dir() -> Path:
    """Folder with the index template, search pipeline and connector JSON files."""
    return _first_existing("index_templates")


def models_dir() -> Path:
    """Folder that holds exported models, one sub-folder per model."""
    override = os.environ.get("CIR_MODELS_DIR")
    return Path(override) if override else _first_existing("onnx_models")


def resolve_model_dir(model: str | os.PathLike | None = None) -> Path:
    """A model folder from a name under `models_dir()` or a path; `None` means the default model."""
    if model is None:
        model = os.environ.get("CIR_MODEL", DEFAULT_MODEL_NAME)
    path = Path(model)
    if path.is_dir():
        return path
    return models_dir() / str(model)
