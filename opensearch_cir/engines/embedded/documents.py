"""Documents as the index sees them: leaf values by dotted path, normalised per field type
(`normalise` raises mapper_parsing_exception on a bad value), and the in-memory `Column` of one
field (filters, sorting and column-indexed text)."""

from __future__ import annotations

import json
from array import array
from typing import Any

from ...errors import EngineError
from .dates import to_millis
from .mapping import FieldSpec


class Column:
    """Values of one indexed leaf field, by document ordinal (ordinals appended in order).

    A text field mapped after the index was created (dynamic mapping) has no tantivy field; it is
    indexed here instead: `postings` maps each token to one ordinal per occurrence and
    `num_ords`/`num_vals` hold each document's token count (its field length)."""

    def __init__(self, spec: FieldSpec, analyzer=None):
        self.spec = spec
        self.analyzer = analyzer
        self.present = array("q")
        self.postings: dict[Any, array] = {}  # keyword / boolean value (or token) -> ordinals
        self.num_ords = array("q")
        self.num_vals = array("d")

    def add(self, ordinal: int, values: list) -> None:
        if not values:
            return
        if self.analyzer is not None:
            tokens = [t for value in values for t in self.analyzer(value)]
            if not tokens:
                return
            for token in tokens:
                self.postings.setdefault(token, array("q")).append(ordinal)
            self.num_ords.append(ordinal)
            self.num_vals.append(len(tokens))
        self.present.append(ordinal)
        if self.analyzer is not None:
            return
        if self.spec.type in ("keyword", "boolean"):
            for value in values:
                self.postings.setdefault(value, array("q")).append(ordinal)
        elif self.spec.type not in ("text", "knn_vector"):
            for value in values:
                self.num_ords.append(ordinal)
                self.num_vals.append(value)


def normalise(spec: FieldSpec, values: list) -> list:
    """The indexed form of a field's values (None dropped); mapper_parsing_exception on a bad one."""
    out = []
    for value in values:
        if value is None:
            continue
        if spec.type == "keyword":
            text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)
            if len(text) <= int(spec.params.get("ignore_above", 2**31)):
                out.append(text)
        elif spec.type == "boolean":
            if value in (True, "true"):
                out.append(True)
            elif value in (False, "false", ""):
                out.append(False)
            else:
                raise EngineError(f"failed to parse field [{spec.path}] of type [boolean]: {value!r}", 400, "mapper_parsing_exception")
        elif spec.type == "text":
            out.append(value if isinstance(value, str) else str(value))
        elif spec.type == "knn_vector":
            out.append(True)
        elif spec.type == "date":
            out.append(to_millis(value, spec.path))
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise EngineError(
                    f"failed to parse field [{spec.path}] of type [{spec.type}]: {value!r}", 400, "mapper_parsing_exception"
                ) from None
            out.append(float(int(number)) if spec.type in ("long", "integer", "short", "byte") else number)
    return out


def flatten_source(source: dict, prefix: str = "") -> dict[str, list]:
    """{dotted path: [leaf values]} for a JSON document (arrays flattened, objects in arrays too)."""
    out: dict[str, list] = {}
    _flatten_into(out, source, prefix)
    return out


def _flatten_into(out: dict[str, list], node: dict, prefix: str) -> None:
    for key, value in node.items():
        _flatten_value(out, value, f"{prefix}.{key}" if prefix else key)


def _flatten_value(out: dict[str, list], value, path: str) -> None:
    if isinstance(value, dict):
        _flatten_into(out, value, path)
    elif isinstance(value, list):
        for item in value:
            _flatten_value(out, item, path)
    elif path in out:
        out[path].append(value)
    else:
        out[path] = [value]


def pop_path(source: dict, path: str):
    node = source
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return source.pop(path, None) if path in source else None
    if isinstance(node, dict) and parts[-1] in node:
        return node.pop(parts[-1])
    return source.pop(path, None)


def set_path(source: dict, path: str, value) -> None:
    node = source
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
