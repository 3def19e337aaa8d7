"""Index setup: idempotent create/upgrade of the index template, the index and the search
pipelines, plus the ml-commons remote model so a cluster can embed by itself.

Works on any client with the interface documented in `opensearch_cir.engines` (a cluster's
opensearch-py client or the embedded engine). Every body is validated before it is sent.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .dsl import PIPELINES, validate_request
from .dsl.ml import INGEST_PIPELINE_ID, connector_body, ingest_pipeline_body, model_register_body
from .dsl.query import VECTOR_FIELDS
from .errors import CIRError, EngineError, IndexMismatchError
from .resources import index_templates_dir

log = logging.getLogger(__name__)

TEMPLATE_FILE = "cir-index-template.json"
DEFAULT_INDEX = "cir-images"
TEMPLATE_PRIORITY = 200  # above the generic `cir-*` template of the JSON file, if a user installed it


class ModelInfo(Protocol):
    """What setup needs from a model manifest (`opensearch_cir.encoders.manifest.Manifest`)."""

    model_id: str
    embedding_dim: int


@dataclass
class SetupReport:
    """What `setup_index` did: `index` is "created", "upgraded" or "unchanged"; pipelines by id."""

    index: str
    template: str
    index_action: str = "unchanged"
    added_fields: list[str] = field(default_factory=list)
    pipelines: dict[str, str] = field(default_factory=dict)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status carried by an engine error (embedded `EngineError` or opensearch-py `TransportError`)."""
    if isinstance(exc, EngineError):
        return exc.status
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def index_template(model: ModelInfo, index: str | None = None) -> dict:
    """The template JSON with the model's dimension and id; for `index`, a template matching only it."""
    template = json.loads((index_templates_dir() / TEMPLATE_FILE).read_text())
    mappings = template["template"]["mappings"]
    mappings["_meta"]["cir"] = {"model_id": model.model_id, "dimension": int(model.embedding_dim)}
    for name in VECTOR_FIELDS:
        mappings["properties"][name]["dimension"] = int(model.embedding_dim)
    if index is not None:
        template["index_patterns"] = [index]
        template["priority"] = TEMPLATE_PRIORITY
    return template


def index_body(model: ModelInfo) -> dict:
    """The `indices.create` body (settings + mappings) for an index of `model`."""
    return copy.deepcopy(index_template(model)["template"])


def template_name(index: str) -> str:
    return f"cir-template-{index}"


def index_model(mapping: dict) -> tuple[str | None, int | None]:
    """(model id, vector dimension) recorded in an index mapping (`_meta.cir`, else the vector field)."""
    meta = (mapping.get("_meta") or {}).get("cir") or {}
    vector = (mapping.get("properties") or {}).get("image_vector") or {}
    dimension = vector.get("dimension", meta.get("dimension"))
    return meta.get("model_id"), dimension


def _mapping_of(client: Any, index: str) -> dict:
    response = client.indices.get_mapping(index=index)
    if index in response:
        return response[index]["mappings"]
    return next(iter(response.values()))["mappings"]  # an alias: the concrete index's mapping


def check_index_model(client: Any, index: str, model: ModelInfo) -> dict:
    """Raise IndexMismatchError unless `index` holds vectors of `model`; returns its mapping."""
    mapping = _mapping_of(client, index)
    model_id, dimension = index_model(mapping)
    if dimension is not None and int(dimension) != int(model.embedding_dim):
        raise IndexMismatchError(
            f"index {index!r} holds {dimension}-dimensional vectors (model {model_id or 'unknown'}) but model "
            f"{model.model_id} makes {model.embedding_dim}-dimensional ones; use the index's model "
            f"(--model {model_id}) or another index name"
        )
    if model_id is not None and model_id != model.model_id:
        raise IndexMismatchError(
            f"index {index!r} was built with model {model_id!r}, not {model.model_id!r}: vectors of different "
            f"models are not comparable; use --model {model_id} or another index name"
        )
    return mapping


def setup_index(
    client: Any,
    index: str,
    manifest: ModelInfo,
    *,
    pipelines: dict[str, dict] | None = None,
    default_pipeline: str | None = None,
) -> SetupReport:
    """Create or upgrade the template, the index and the search pipelines for `manifest`'s model.

    Idempotent: running it again changes nothing. An existing index gains fields the template has
    and it lacks; one whose vector dimension or model id differs raises IndexMismatchError.
    pipelines: the search pipelines to put (default: all of `dsl.PIPELINES`).
    default_pipeline: one of them to set as the new index's `index.search.default_pipeline`
    (only at creation), so hybrid queries work without `?search_pipeline=`.
    """
    pipelines = PIPELINES if pipelines is None else pipelines
    if default_pipeline and default_pipeline not in pipelines:
        raise ValueError(f"unknown search pipeline {default_pipeline!r}; choose one of {sorted(pipelines)}")
    report = SetupReport(index=index, template=template_name(index))
    template = index_template(manifest, index)
    validate_request("indices.put_index_template", template)

    if client.indices.exists(index=index):
        mapping = check_index_model(client, index, manifest)
        wanted = template["template"]["mappings"]["properties"]
        missing = {name: spec for name, spec in wanted.items() if name not in (mapping.get("properties") or {})}
        if missing or "cir" not in (mapping.get("_meta") or {}):
            body = {"properties": missing, "_meta": template["template"]["mappings"]["_meta"]}
            validate_request("indices.put_mapping", body)
            put_mapping = getattr(client.indices, "put_mapping", None)
            if put_mapping is None:
                raise CIRError(
                    f"index {index!r} lacks {sorted(missing) or ['_meta.cir']} and this engine cannot add "
                    "mappings to an existing index: re-create it (delete it, then run setup again)"
                )
            put_mapping(index=index, body=body)
            report.index_action = "upgraded"
            report.added_fields = sorted(missing)
    else:
        body = copy.deepcopy(template["template"])
        if default_pipeline:
            body["settings"]["index"]["search.default_pipeline"] = default_pipeline
        validate_request("indices.create", body)
        try:
            client.indices.create(index=index, body=body)
            report.index_action = "created"
        except Exception as exc:  # created concurrently by another process: check it instead
            if status_of(exc) != 400 or "already_exists" not in str(exc):
                raise
            check_index_model(client, index, manifest)
    client.indices.put_index_template(name=report.template, body=template)

    for pipeline_id, body in pipelines.items():
        report.pipelines[pipeline_id] = ensure_search_pipeline(client, pipeline_id, body)
    return report


def ensure_search_pipeline(client: Any, pipeline_id: str, body: dict) -> str:
    """Put search pipeline `pipeline_id` unless it already has this body: "created", "updated" or "unchanged"."""
    validate_request("search_pipeline.put", body)
    try:
        current = client.search_pipeline.get(id=pipeline_id).get(pipeline_id)
    except Exception as exc:
        if status_of(exc) != 404:
            raise
        current = None
    if current == body:
        return "unchanged"
    client.search_pipeline.put(id=pipeline_id, body=body)
    return "created" if current is None else "updated"


# -- ml-commons: a remote model over our encoder service (clusters only) ----------------------

def setup_remote_model(
    client: Any,
    encoder_url: str,
    *,
    model_name: str = "opensearch-cir-encoder",
    api_key: str = "none",
    deploy_timeout: float = 120.0,
) -> str:
    """Create the connector to `encoder_url`, register and deploy the remote model, and put the
    `cir-embed` ingest pipeline (text_image_embedding). Returns the model id.

    The cluster must trust the URL (`plugins.ml_commons.trusted_connector_endpoints_regex`; private
    addresses also need `plugins.ml_commons.connector.private_ip_enabled: true`).
    """
    connector = connector_body(encoder_url, model_name=model_name, api_key=api_key)
    validate_request("ml.create_connector", connector)
    connector_id = client.ml.create_connector(body=connector)["connector_id"]
    register = model_register_body(connector_id, model_name=model_name)
    validate_request("ml.register_model", register)
    response = client.ml.register_model(body=register, params={"deploy": "true"})
    model_id = response.get("model_id") or _wait_for_task(client, response["task_id"], deploy_timeout)
    pipeline = ingest_pipeline_body(model_id)
    validate_request("ingest.put_pipeline", pipeline)
    client.ingest.put_pipeline(id=INGEST_PIPELINE_ID, body=pipeline)
    return model_id


def _wait_for_task(client: Any, task_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.ml.get_task(task_id=task_id)
        if task.get("state") == "COMPLETED" and task.get("model_id"):
            return task["model_id"]
        if task.get("state") in ("FAILED", "COMPLETED_WITH_ERROR"):
            raise CIRError(f"ml-commons task {task_id} failed: {task.get('error', task)}")
        time.sleep(1.0)
    raise CIRError(f"ml-commons task {task_id} did not finish within {timeout:.0f} s")
