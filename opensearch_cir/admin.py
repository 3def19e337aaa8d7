"""Index setup: idempotent create/upgrade of the index template, the index and the search
pipelines, plus the ml-commons remote model so a cluster can embed by itself.

Works on any client with the interface documented in `opensearch_cir.engines` (a cluster's
opensearch-py client or the embedded engine). Every body is validated before it is sent, and is
the one the cluster's version accepts (`opensearch_cir.dialect`): setup puts what the version
supports, says what it skipped and why, and carries on past a failed step (the failures are raised
together at the end as `SetupIncomplete`, which carries the report).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .dialect import Dialect, detect
from .dsl import PIPELINES, for_dialect, validate_request
from .dsl.ml import INGEST_PIPELINE_ID, connector_body, ingest_pipeline_body, model_register_body
from .dsl.query import VECTOR_FIELDS
from .errors import CIRError, EngineError, IndexMismatchError
from .resources import index_templates_dir

log = logging.getLogger(__name__)

TEMPLATE_FILE = "cir-index-template.json"
VECTOR_STORAGE_FILE = "vector-storage.json"
DEFAULT_INDEX = "cir-images"
TEMPLATE_PRIORITY = 200  # above the generic `cir-*` template of the JSON file, if a user installed it
API_KEY_ENV = "CIR_API_KEY"
NEURAL_PLUGIN = "opensearch-neural-search"
ML_PLUGIN = "opensearch-ml"
KNN_PLUGIN = "opensearch-knn"


class ModelInfo(Protocol):
    """What setup needs from a model manifest (`opensearch_cir.encoders.manifest.Manifest`)."""

    model_id: str
    embedding_dim: int


@dataclass
class SetupReport:
    """What `setup_index` did: `index` is "created", "upgraded" or "unchanged"; pipelines by id;
    `skipped` and `failed` map a step (e.g. "search pipeline cir-z-score") to the reason."""

    index: str
    template: str
    index_action: str = "unchanged"
    added_fields: list[str] = field(default_factory=list)
    pipelines: dict[str, str] = field(default_factory=dict)
    dialect: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    remote_model: str | None = None

    def run(self, step: str, action):
        """Run one step; a failure is recorded under `step` instead of stopping the setup
        (an index of another model is a refusal, not a failure: it is raised)."""
        try:
            return action()
        except IndexMismatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the rest
            log.warning("setup step %s failed: %s", step, exc)
            self.failed[step] = str(exc)
            return None


class SetupIncomplete(CIRError):
    """Some setup steps failed (the others were done); `report` says which and why."""

    def __init__(self, report: SetupReport):
        self.report = report
        steps = "; ".join(f"{step}: {reason}" for step, reason in report.failed.items())
        super().__init__(f"setup finished with {len(report.failed)} failed step(s): {steps}")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status carried by an engine error (embedded `EngineError` or opensearch-py `TransportError`)."""
    if isinstance(exc, EngineError):
        return exc.status
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def vector_storages() -> dict[str, dict]:
    """`index_templates/vector-storage.json`: the vector fields' mapping overrides per storage name."""
    table = json.loads((index_templates_dir() / VECTOR_STORAGE_FILE).read_text())
    return {name: value for name, value in table.items() if not name.startswith("_")}


def storage_of(mapping: dict) -> str | None:
    """The storage name (`vector-storage.json`) of an index mapping's image_vector field, if it is one."""
    field = (mapping.get("properties") or {}).get("image_vector") or {}
    for name, override in vector_storages().items():
        keys = ("data_type", "mode", "compression_level")
        if all(field.get(key, "float" if key == "data_type" else None) == override.get(key, "float" if key == "data_type" else None)
               for key in keys):
            return name
    return None


def index_template(model: ModelInfo, index: str | None = None, vectors: str = "float") -> dict:
    """The template JSON with the model's dimension and id; for `index`, a template matching only it;
    `vectors`: a storage of `vector-storage.json` (float, byte, binary, on_disk-8x, ...)."""
    template = json.loads((index_templates_dir() / TEMPLATE_FILE).read_text())
    storages = vector_storages()
    if vectors not in storages:
        raise ValueError(f"unknown vector storage {vectors!r}; choose one of {sorted(storages)}")
    mappings = template["template"]["mappings"]
    mappings["_meta"]["cir"] = {"model_id": model.model_id, "dimension": int(model.embedding_dim)}
    for name in VECTOR_FIELDS:
        mappings["properties"][name]["dimension"] = int(model.embedding_dim)
        mappings["properties"][name].update(storages[vectors])
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
    dialect: Dialect | None = None,
    raise_on_failure: bool = True,
    vectors: str | None = None,
) -> SetupReport:
    """Create or upgrade the template, the index and the search pipelines for `manifest`'s model.

    Idempotent: running it again changes nothing. An existing index gains fields the template has
    and it lacks; one whose vector dimension or model id differs raises IndexMismatchError before
    anything is written. pipelines: the search pipelines to put (default: all of `dsl.PIPELINES`),
    each as the cluster's version reads it; those the version lacks are skipped (`report.skipped`).
    default_pipeline: one of them to set as the new index's `index.search.default_pipeline`
    (only at creation), so hybrid queries work without `?search_pipeline=`.
    A failed step does not stop the others; with `raise_on_failure` they raise `SetupIncomplete` at the end.
    vectors: the vector storage of a new index (`vector-storage.json`; default float); an existing
    index keeps its own (a different one given here is an error).
    """
    dialect = dialect or detect(client)
    if not dialect.has_plugin(KNN_PLUGIN):
        raise CIRError(f"the index's knn_vector fields need the {KNN_PLUGIN} plugin, which {dialect} does not have installed")
    pipelines = PIPELINES if pipelines is None else pipelines
    if default_pipeline and default_pipeline not in pipelines:
        raise ValueError(f"unknown search pipeline {default_pipeline!r}; choose one of {sorted(pipelines)}")
    report = SetupReport(index=index, template=template_name(index), dialect=str(dialect))
    accepted, skipped = for_dialect(pipelines, dialect)
    if not dialect.has_plugin(NEURAL_PLUGIN):
        skipped.update({name: f"plugin {NEURAL_PLUGIN} is not installed" for name in accepted})
        accepted = {}
    report.skipped.update({f"search pipeline {name}": reason for name, reason in skipped.items()})
    if default_pipeline and default_pipeline not in accepted:
        raise ValueError(f"default pipeline {default_pipeline!r} cannot be put on this cluster: {skipped[default_pipeline]}")
    exists = client.indices.exists(index=index)
    if exists:
        current = storage_of(_mapping_of(client, index)) or "float"
        if vectors not in (None, current):
            raise CIRError(f"index {index!r} stores its vectors as {current!r}, not {vectors!r}: re-create it to change that")
        vectors = current
    template = index_template(manifest, index, vectors or "float")
    validate_request("indices.put_index_template", template, dialect=dialect)
    for pipeline_id, body in accepted.items():
        validate_request("search_pipeline.put", body, dialect=dialect)

    if exists:
        _upgrade_index(client, index, manifest, template, report)
    else:
        body = copy.deepcopy(template["template"])
        if default_pipeline:
            body["settings"]["index"]["search.default_pipeline"] = default_pipeline
        validate_request("indices.create", body)
        report.run(f"index {index}", lambda: _create_index(client, index, body, manifest, report))
    report.run(f"template {report.template}", lambda: client.indices.put_index_template(name=report.template, body=template))
    for pipeline_id, body in accepted.items():
        action = report.run(f"search pipeline {pipeline_id}", lambda: ensure_search_pipeline(client, pipeline_id, body))
        if action:
            report.pipelines[pipeline_id] = action
    if report.failed and raise_on_failure:
        raise SetupIncomplete(report)
    return report


def _upgrade_index(client: Any, index: str, manifest: ModelInfo, template: dict, report: SetupReport) -> None:
    mapping = check_index_model(client, index, manifest)
    wanted = template["template"]["mappings"]["properties"]
    missing = {name: spec for name, spec in wanted.items() if name not in (mapping.get("properties") or {})}
    if not missing and "cir" in (mapping.get("_meta") or {}):
        return
    body = {"properties": missing, "_meta": template["template"]["mappings"]["_meta"]}
    validate_request("indices.put_mapping", body)
    put_mapping = getattr(client.indices, "put_mapping", None)
    if put_mapping is None:
        raise CIRError(
            f"index {index!r} lacks {sorted(missing) or ['_meta.cir']} and this engine cannot add "
            "mappings to an existing index: re-create it (delete it, then run setup again)"
        )
    if report.run(f"index {index} mapping", lambda: put_mapping(index=index, body=body) or True):
        report.index_action = "upgraded"
        report.added_fields = sorted(missing)


def _create_index(client: Any, index: str, body: dict, manifest: ModelInfo, report: SetupReport) -> None:
    try:
        client.indices.create(index=index, body=body)
        report.index_action = "created"
    except Exception as exc:  # created concurrently by another process: check it instead
        if status_of(exc) != 400 or "already_exists" not in str(exc):
            raise
        check_index_model(client, index, manifest)


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
    api_key: str | None = None,
    deploy_timeout: float = 120.0,
    dialect: Dialect | None = None,
    report: SetupReport | None = None,
) -> str:
    """Create the connector to `encoder_url`, register and deploy the remote model, and put the
    `cir-embed` ingest pipeline (text_image_embedding) as the cluster's version reads it. Returns the model id.

    api_key: what the connector sends as `X-API-Key` (default `$CIR_API_KEY`, the key `cir serve`
    checks). The cluster must trust the URL (`plugins.ml_commons.trusted_connector_endpoints_regex`;
    private addresses also need `plugins.ml_commons.connector.private_ip_enabled: true`).
    `report` (from `setup_index`) records what was skipped for this version.
    """
    dialect = dialect or detect(client)
    for plugin in (ML_PLUGIN, NEURAL_PLUGIN):
        if not dialect.has_plugin(plugin):
            raise CIRError(f"the remote model needs the {plugin} plugin, which {dialect} does not have installed")
    api_key = api_key or os.environ.get(API_KEY_ENV) or "none"
    connector = connector_body(encoder_url, model_name=model_name, api_key=api_key)
    validate_request("ml.create_connector", connector)
    connector_id = client.ml.create_connector(body=connector)["connector_id"]
    register = model_register_body(connector_id, model_name=model_name)
    validate_request("ml.register_model", register)
    response = client.ml.register_model(body=register, params={"deploy": "true"})
    model_id = response.get("model_id") or _wait_for_task(client, response["task_id"], deploy_timeout)
    pipeline = ingest_pipeline_body(model_id, dialect)
    validate_request("ingest.put_pipeline", pipeline, dialect=dialect)
    if report is not None:
        report.remote_model = model_id
        if not dialect.supports("skip_existing"):
            report.skipped[f"ingest pipeline {INGEST_PIPELINE_ID}: skip_existing"] = dialect.refusal("skip_existing")
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
