"""The official OpenSearch OpenAPI spec (../shared/opensearch-api-spec, or $CIR_OPENSEARCH_API_SPEC):
where it is, the JSON Schema of each operation's request body, and cached verdicts on bodies."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

# kind -> (namespace file, request body name)
OPERATIONS: dict[str, tuple[str, str]] = {
    "indices.create": ("indices.yaml", "indices.create"),
    "indices.put_index_template": ("indices.yaml", "indices.put_index_template"),
    "indices.put_mapping": ("indices.yaml", "indices.put_mapping"),
    "bulk": ("_core.yaml", "bulk"),
    "index": ("_core.yaml", "index"),
    "search": ("_core.yaml", "search"),
    "count": ("_core.yaml", "count"),
    "search_pipeline.put": ("search_pipeline.yaml", "search_pipeline.put"),
    "ingest.put_pipeline": ("ingest.yaml", "ingest.put_pipeline"),
    "ml.create_connector": ("ml.yaml", "ml.create_connector"),
    "ml.register_model": ("ml.yaml", "ml.register_model"),
}

_SPEC_ENV = "CIR_OPENSEARCH_API_SPEC"
_DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared" / "opensearch-api-spec"


# Documented gaps of the spec, patched in memory when its files load (file -> patch).
def _allow_z_score(document: dict) -> None:
    # z_score normalisation exists since OpenSearch 3.0 (neural-search ZScoreNormalizationTechnique).
    enum = document["components"]["schemas"]["ScoreNormalizationTechnique"]["enum"]
    if "z_score" not in enum:
        enum.append("z_score")


_SPEC_PATCHES: dict[str, Callable[[dict], None]] = {"search_pipeline._common.yaml": _allow_z_score}


def find_spec_dir(spec_dir: str | os.PathLike | None = None) -> Path | None:
    """The spec root (the folder holding `spec/`), or None when it is not available."""
    for candidate in (spec_dir, os.environ.get(_SPEC_ENV), _DEFAULT_SPEC):
        if candidate and (Path(candidate) / "spec" / "namespaces").is_dir():
            return Path(candidate).resolve()
    return None


@lru_cache(maxsize=4)
def _registry(spec_root: Path):
    import yaml
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    @lru_cache(maxsize=None)
    def retrieve(uri: str) -> Resource:
        path = Path(uri.removeprefix("file://"))
        document = yaml.load(path.read_text(), Loader=loader)
        patch = _SPEC_PATCHES.get(path.name)
        if patch:
            patch(document)
        return Resource.from_contents(document, default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)


@lru_cache(maxsize=64)
def validator(spec_root: Path, kind: str):
    from jsonschema import Draft202012Validator

    namespace, body_name = OPERATIONS[kind]
    uri = (spec_root / "spec" / "namespaces" / namespace).as_uri()
    registry = _registry(spec_root)
    request_body = registry.get_or_retrieve(uri).value.contents["components"]["requestBodies"][body_name]
    media_type = next(iter(request_body["content"]))
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("components", "requestBodies", body_name, "content", media_type, "schema")
    )
    return Draft202012Validator({"$ref": f"{uri}#/{pointer}"}, registry=registry)


_MEMO_MAX_CHARS = 64_000  # small bodies (templates, pipelines, queries) repeat: remember their verdicts


def spec_errors(kind: str, body: Any, spec_root: Path) -> list[str]:
    """The spec's best-matching complaint about a request body of `kind` (none: [])."""
    try:
        text = json.dumps(body, sort_keys=True)
    except (TypeError, ValueError):
        return _spec_errors_uncached(kind, body, spec_root)
    if len(text) > _MEMO_MAX_CHARS:
        return _spec_errors_uncached(kind, body, spec_root)
    return list(_spec_errors_memo(kind, text, spec_root))


@lru_cache(maxsize=512)
def _spec_errors_memo(kind: str, text: str, spec_root: Path) -> tuple[str, ...]:
    return tuple(_spec_errors_uncached(kind, json.loads(text), spec_root))


def _spec_errors_uncached(kind: str, body: Any, spec_root: Path) -> list[str]:
    from jsonschema.exceptions import best_match

    error = best_match(validator(spec_root, kind).iter_errors(body))
    return [] if error is None else [f"{error.json_path}: {error.message} (OpenAPI spec)"]
