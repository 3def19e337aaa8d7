"""The embedded engine: a local, durable drop-in for the opensearch-py client subset we use.

    client = EmbeddedClient("/path/to/dir")        # or opensearch_cir.engines.connect("embedded:///path/to/dir")
    client.indices.put_index_template(name="cir", body=template)
    client.indices.create(index="cir-images")       # settings + mappings from the matching template
    client.bulk(body=[{"index": {"_index": "cir-images", "_id": "a"}}, {"caption": "a red car", ...}])
    client.search(index="cir-images", body={...}, params={"search_pipeline": "cir-min-max"})

One folder per index under the root (see `store.py` for the on-disk format); index templates and
search pipelines are JSON files in the root. Responses have OpenSearch's shapes; failures raise
EngineError (with an HTTP-like status); unsupported clauses and options raise UnsupportedQueryError.
Options: `legacy_bm25=True` gives OpenSearch 2.x BM25 scores (×2.2); `hnsw_threshold` is the
number of documents from which knn queries use an HNSW graph instead of exact search.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from ...errors import EngineError, UnsupportedQueryError
from .hybrid import explanation, parse_pipeline, run_hybrid
from .mapping import resolve_index_body
from .query import Executor
from .store import IndexStore, atomic_write_json, read_json

__all__ = ["EmbeddedClient"]

DEFAULT_HNSW_THRESHOLD = 10_000
"""Below this many documents knn is exact (a 10k x 256-d scan is ~0.3 ms); above, HNSW. k-NN builds
a graph for every segment (KNNSettings `index.knn.advanced.approximate_threshold`, default 0)."""
DEFAULT_TRACK_TOTAL_HITS = 10_000
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")
_SEARCH_BODY_KEYS = {"query", "size", "from", "_source", "track_total_hits", "explain", "timeout"}
_SEARCH_PARAMS = {"search_pipeline", "size", "from", "track_total_hits", "explain", "_source", "_source_excludes", "_source_includes", "request_timeout", "timeout"}


def _shards() -> dict:
    return {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


class EmbeddedClient:
    """opensearch-py `OpenSearch` subset over local folders (see module docstring)."""

    def __init__(self, path: str | Path, *, legacy_bm25: bool = False, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD):
        self.root = Path(path).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.legacy_bm25 = legacy_bm25
        self.hnsw_threshold = hnsw_threshold
        self._stores: dict[str, IndexStore] = {}
        self._lock = threading.RLock()
        self.indices = _Indices(self)
        self.search_pipeline = _SearchPipelines(self)

    def __repr__(self) -> str:
        return f"EmbeddedClient({str(self.root)!r})"

    # --- plumbing ----------------------------------------------------------------------------------
    def _store(self, index: str) -> IndexStore:
        if not isinstance(index, str) or "," in index or "*" in index:
            raise UnsupportedQueryError(f"index expressions ({index!r}) are not supported by the embedded engine; name one index")
        store = self._stores.get(index)
        folder = self.root / index
        if store is not None and not folder.exists():
            self._forget(index)
            store = None
        if store is None:
            if not (folder / "manifest.json").exists():
                raise EngineError(f"no such index [{index}]", 404, "index_not_found_exception")
            store = self._stores[index] = IndexStore(folder)
        else:
            store.refresh()
        return store

    def _forget(self, index: str) -> None:
        store = self._stores.pop(index, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        """Release writer locks and file handles."""
        with self._lock:
            for index in list(self._stores):
                self._forget(index)

    def _read_registry(self, name: str) -> dict:
        return read_json(self.root / f"_{name}.json", {})

    def _write_registry(self, name: str, value: dict) -> None:
        atomic_write_json(self.root / f"_{name}.json", value)

    # --- documents ---------------------------------------------------------------------------------
    def bulk(self, body, index: str | None = None, refresh=None, params: dict | None = None, **_ignored_transport) -> dict:
        """Index / create / delete documents; each index's part of the batch is committed atomically."""
        started = time.perf_counter()
        actions = list(_parse_bulk(body))
        with self._lock:
            items: list[dict | None] = [None] * len(actions)
            by_index: dict[str, list[int]] = {}
            for i, (op, meta, _source) in enumerate(actions):
                target = meta.get("_index", index)
                if target is None:
                    items[i] = _item_error(op, None, meta.get("_id"), 400, "action_request_validation_exception", "index is missing")
                    continue
                by_index.setdefault(target, []).append(i)
            for target, positions in by_index.items():
                self._bulk_one_index(target, [actions[i] for i in positions], positions, items)
        return {"took": int((time.perf_counter() - started) * 1000), "errors": any("error" in next(iter(it.values())) for it in items), "items": items}

    def _bulk_one_index(self, index: str, actions, positions, items) -> None:
        try:
            store = self._store(index)
        except EngineError as exc:
            if exc.status != 404:
                raise
            store = self._auto_create(index)
        store._acquire_writer()
        batch: dict[str, tuple] = {}
        prepared = []
        accepted: list[tuple[int, str, str, int, int | None]] = []
        next_ord = store.n_ords
        for (op, meta, source), pos in zip(actions, positions):
            doc_id = meta.get("_id")
            if doc_id is None:
                if op == "delete":
                    items[pos] = _item_error(op, index, None, 400, "action_request_validation_exception", "id is missing")
                    continue
                doc_id = uuid.uuid4().hex[:20]
            doc_id = str(doc_id)
            current, version = batch.get(doc_id, (store.id_to_ord.get(doc_id), store.id_version.get(doc_id, 0)))
            if op == "create" and current is not None:
                items[pos] = _item_error(op, index, doc_id, 409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, document already exists (current version [{version}])")
                continue
            if op == "delete" and current is None:
                items[pos] = {op: {"_index": index, "_id": doc_id, "_version": version + 1, "result": "not_found", "status": 404, "_shards": _shards()}}
                continue
            try:
                p = store.prepare("delete" if op == "delete" else "index", doc_id, source, batch, next_ord)
            except EngineError as exc:
                items[pos] = _item_error(op, index, doc_id, exc.status, exc.error_type, str(exc))
                continue
            prepared.append(p)
            if op == "delete":
                batch[doc_id] = (None, p.record["version"])
            else:
                batch[doc_id] = (next_ord, p.record["version"])
                next_ord += 1
            accepted.append((pos, op, doc_id, p.record["version"], current))
        store.commit(prepared)
        for pos, op, doc_id, version, current in accepted:
            if op == "delete":
                result, status = "deleted", 200
            else:
                result, status = ("updated", 200) if current is not None else ("created", 201)
            items[pos] = {op: {"_index": index, "_id": doc_id, "_version": version, "result": result, "_shards": _shards(), "status": status}}

    def _auto_create(self, index: str) -> IndexStore:
        self.indices.create(index=index)
        return self._store(index)

    def index(self, index: str, body: dict, id: str | None = None, refresh=None, params: dict | None = None, **_transport) -> dict:
        """Index one document (created or replaced)."""
        meta = {"_index": index}
        if id is not None:
            meta["_id"] = id
        item = self.bulk(body=[{"index": meta}, body])["items"][0]["index"]
        if "error" in item:
            raise EngineError(item["error"]["reason"], item["status"], item["error"]["type"])
        return {k: v for k, v in item.items() if k != "status"}

    def get(self, index: str, id: str, params: dict | None = None, **_transport) -> dict:
        """The stored document; EngineError 404 when it does not exist."""
        with self._lock:
            store = self._store(index)
            ordinal = store.current(str(id))
            if ordinal is None:
                raise EngineError(f"document [{id}] not found in [{index}]", 404, "not_found")
            return {"_index": index, "_id": str(id), "_version": store.id_version[str(id)], "found": True, "_source": store.source(ordinal)}

    def delete(self, index: str, id: str, refresh=None, params: dict | None = None, **_transport) -> dict:
        """Delete one document; EngineError 404 when it does not exist."""
        item = self.bulk(body=[{"delete": {"_index": index, "_id": id}}])["items"][0]["delete"]
        if item.get("status") == 404:
            raise EngineError(f"document [{id}] not found in [{index}]", 404, "not_found")
        return {k: v for k, v in item.items() if k != "status"}

    def count(self, index: str, body: dict | None = None, params: dict | None = None, **_transport) -> dict:
        """Number of documents matching `body["query"]` (all documents without one)."""
        body = body or {}
        if set(body) - {"query"}:
            raise UnsupportedQueryError(f"count body key(s) {sorted(set(body) - {'query'})} are not supported by the embedded engine")
        with self._lock:
            executor = self._executor(self._store(index))
            query = body.get("query", {"match_all": {}})
            return {"count": int(executor.matches(query).sum()), "_shards": _shards()}

    # --- search ------------------------------------------------------------------------------------
    def _executor(self, store: IndexStore) -> Executor:
        return Executor(store, legacy_bm25=self.legacy_bm25, hnsw_threshold=self.hnsw_threshold)

    def search(self, index: str, body: dict | None = None, params: dict | None = None, **kwargs) -> dict:
        """Run a search body; `params={"search_pipeline": NAME}` selects the pipeline for hybrid queries."""
        started = time.perf_counter()
        body = dict(body or {})  # only top-level keys are set below
        params = dict(params or {})
        params.update({k: v for k, v in kwargs.items() if k not in ("request_timeout", "headers")})
        unknown = set(body) - _SEARCH_BODY_KEYS
        if unknown:
            raise UnsupportedQueryError(f"search body key(s) {sorted(unknown)} are not supported by the embedded engine")
        unknown = set(params) - _SEARCH_PARAMS
        if unknown:
            raise UnsupportedQueryError(f"search parameter(s) {sorted(unknown)} are not supported by the embedded engine")
        for key in ("size", "from", "track_total_hits", "explain", "_source"):
            if key in params:
                body[key] = _param_value(params[key])
        if "_source_excludes" in params or "_source_includes" in params:
            body["_source"] = {"includes": _as_list(params.get("_source_includes")), "excludes": _as_list(params.get("_source_excludes"))}
        size, from_ = int(body.get("size", 10)), int(body.get("from", 0))
        if size < 0 or from_ < 0:
            raise EngineError("[size] and [from] must be non-negative", 400, "illegal_argument_exception")
        query = body.get("query", {"match_all": {}})
        with self._lock:
            store = self._store(index)
            executor = self._executor(store)
            name = next(iter(query)) if isinstance(query, dict) and len(query) == 1 else None
            explain = bool(body.get("explain", False))
            if name == "hybrid":
                pipeline = self._pipeline_for(store, params.get("search_pipeline"))
                hybrid_hits, total = run_hybrid(executor, query["hybrid"], pipeline, from_=from_, size=size)
                page = hybrid_hits[from_ : from_ + size]
                hits = [self._hit(store, index, h.ordinal, h.score, body.get("_source", True), explanation(h, pipeline) if explain else None) for h in page]
                max_score = hybrid_hits[0].score if hybrid_hits else None
            else:
                if params.get("search_pipeline") is not None:
                    self._pipeline_for(store, params["search_pipeline"])  # must exist; it only affects hybrid queries
                ranked, total = executor.top(query, from_ + size, count=body.get("track_total_hits", True) is not False)
                if from_ + size == 0:
                    ranked = executor.top(query, 1)[0]
                max_score = float(ranked.scores[0]) if len(ranked.ords) else None
                hits = [
                    self._hit(store, index, int(o), float(s), body.get("_source", True), _plain_explanation(name, float(s)) if explain else None)
                    for o, s in zip(ranked.ords[from_ : from_ + size], ranked.scores[from_ : from_ + size])
                ]
        response_hits: dict[str, Any] = {}
        total_field = _total(total, body.get("track_total_hits", DEFAULT_TRACK_TOTAL_HITS))
        if total_field is not None:
            response_hits["total"] = total_field
        response_hits["max_score"] = max_score
        response_hits["hits"] = hits
        return {"took": int((time.perf_counter() - started) * 1000), "timed_out": False, "_shards": _shards(), "hits": response_hits}

    def _pipeline_for(self, store: IndexStore, name: str | None):
        name = name or store.settings.get("index.search.default_pipeline")
        if name in (None, "_none"):
            raise EngineError("a hybrid query needs a search pipeline with a normalization-processor or score-ranker-processor "
                              "(params={'search_pipeline': NAME} or index.search.default_pipeline)", 400, "illegal_argument_exception")
        pipelines = self._read_registry("pipelines")
        if name not in pipelines:
            raise EngineError(f"Pipeline {name} is not defined", 404, "resource_not_found_exception")
        return parse_pipeline(name, pipelines[name])

    def _hit(self, store: IndexStore, index: str, ordinal: int, score: float, source_spec, explanation_body) -> dict:
        hit = {"_index": index, "_id": store.ids[ordinal], "_score": score}
        wanted_vectors = [p for p in store.vector_fields if filter_source(_nested(p), source_spec)]
        source = filter_source(store.source(ordinal, wanted_vectors), source_spec)
        if source is not None:
            hit["_source"] = source
        if explanation_body is not None:
            hit["_explanation"] = explanation_body
        return hit


def _nested(path: str) -> dict:
    """{"a": {"b": 0}} for "a.b": a probe document for _source filtering."""
    node: dict = {}
    root = node
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = 0
    return root


def _plain_explanation(clause: str | None, score: float) -> dict:
    return {"value": score, "description": f"score of [{clause}] query (embedded engine)", "details": []}


def _param_value(value):
    if isinstance(value, str):
        if value in ("true", "false"):
            return value == "true"
        if value.lstrip("-").isdigit():
            return int(value)
    return value


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return list(value)


def _total(total: int | None, track) -> dict | None:
    if track is False or total is None:
        return None
    if track is True:
        return {"value": total, "relation": "eq"}
    limit = int(track)
    if total > limit:
        return {"value": limit, "relation": "gte"}
    return {"value": total, "relation": "eq"}


def filter_source(source: dict, spec) -> dict | None:
    """Apply a `_source` spec (bool, pattern, list, or {includes, excludes}) to a document."""
    if spec is False:
        return None
    if spec is True or spec is None:
        return source
    if isinstance(spec, (str, list)):
        includes, excludes = _as_list(spec), []
    elif isinstance(spec, dict):
        unknown = set(spec) - {"includes", "excludes", "include", "exclude"}
        if unknown:
            raise EngineError(f"unknown _source key(s) {sorted(unknown)}", 400, "parsing_exception")
        includes = _as_list(spec.get("includes", spec.get("include")))
        excludes = _as_list(spec.get("excludes", spec.get("exclude")))
    else:
        raise EngineError(f"malformed _source {spec!r}", 400, "parsing_exception")

    def keep(path: str, is_object: bool) -> bool | None:
        if any(fnmatch.fnmatchcase(path, p) for p in excludes):
            return False
        if not includes or any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + ".*") for p in includes):
            return True
        if is_object and any(p.startswith(path + ".") or fnmatch.fnmatchcase(path + ".x", p.split(".")[0] + ".*") for p in includes):
            return None  # descend
        return False

    def walk(node: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            decision = keep(path, isinstance(value, dict))
            if decision is None and isinstance(value, dict):
                sub = walk(value, path + ".")
                if sub:
                    out[key] = sub
            elif decision:
                out[key] = walk_excludes(value, path + ".") if isinstance(value, dict) and excludes else value
        return out

    def walk_excludes(node: dict, prefix: str) -> dict:
        return {
            k: (walk_excludes(v, f"{prefix}{k}.") if isinstance(v, dict) else v)
            for k, v in node.items()
            if not any(fnmatch.fnmatchcase(f"{prefix}{k}", p) for p in excludes)
        }

    return walk(source, "")


def _item_error(op: str, index: str | None, doc_id, status: int, error_type: str, reason: str) -> dict:
    return {op: {"_index": index, "_id": doc_id, "status": status, "error": {"type": error_type, "reason": reason}}}


def _parse_bulk(body) -> Iterable[tuple[str, dict, dict | None]]:
    """(op, metadata, source) from a bulk body: a list of dicts/strings or an NDJSON string/bytes."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    if isinstance(body, str):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    else:
        lines = [json.loads(line) if isinstance(line, (str, bytes)) else line for line in body]
    i = 0
    while i < len(lines):
        action = lines[i]
        if not isinstance(action, dict) or len(action) != 1:
            raise EngineError(f"Malformed action/metadata line [{i + 1}]", 400, "illegal_argument_exception")
        (op, meta), = action.items()
        if op == "update":
            raise UnsupportedQueryError("bulk action [update] is not supported by the embedded engine; use index")
        if op not in ("index", "create", "delete"):
            raise EngineError(f"Malformed action/metadata line [{i + 1}], unknown action [{op}]", 400, "illegal_argument_exception")
        unknown = set(meta or {}) - {"_index", "_id", "routing", "pipeline"}
        if unknown or (meta or {}).get("pipeline"):
            raise UnsupportedQueryError(f"bulk metadata {sorted(unknown | ({'pipeline'} if (meta or {}).get('pipeline') else set()))} not supported by the embedded engine")
        if op == "delete":
            yield op, dict(meta or {}), None
            i += 1
        else:
            if i + 1 >= len(lines):
                raise EngineError(f"bulk action [{op}] on line [{i + 1}] has no document", 400, "illegal_argument_exception")
            yield op, dict(meta or {}), lines[i + 1]
            i += 2


class _Indices:
    """`client.indices`: create / delete / exists / refresh / put_index_template / get_mapping."""

    def __init__(self, client: EmbeddedClient):
        self._client = client

    def create(self, index: str, body: dict | None = None, params: dict | None = None, **_transport) -> dict:
        if not _INDEX_NAME.match(index or "") or index != index.lower() or len(index.encode()) > 255:
            raise EngineError(f"Invalid index name [{index}]", 400, "invalid_index_name_exception")
        with self._client._lock:
            folder = self._client.root / index
            if folder.exists():
                raise EngineError(f"index [{index}] already exists", 400, "resource_already_exists_exception")
            settings, mappings = resolve_index_body(index, body, self._client._read_registry("templates"))
            try:
                IndexStore(folder, settings=settings, mappings=mappings).close()
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        return {"acknowledged": True, "shards_acknowledged": True, "index": index}

    def delete(self, index: str, params: dict | None = None, **_transport) -> dict:
        with self._client._lock:
            folder = self._client.root / index
            if not (folder / "manifest.json").exists():
                raise EngineError(f"no such index [{index}]", 404, "index_not_found_exception")
            self._client._forget(index)
            trash = folder.with_name(f".deleted-{index}-{uuid.uuid4().hex[:8]}")
            folder.rename(trash)  # atomic: the index disappears at once
            shutil.rmtree(trash, ignore_errors=True)
        return {"acknowledged": True}

    def exists(self, index: str, params: dict | None = None, **_transport) -> bool:
        return (self._client.root / index / "manifest.json").exists()

    def refresh(self, index: str | None = None, params: dict | None = None, **_transport) -> dict:
        """Writes are visible on return already; this also builds/extends HNSW graphs above the threshold."""
        with self._client._lock:
            names = [index] if index else [p.name for p in self._client.root.iterdir() if (p / "manifest.json").exists()]
            for name in names:
                store = self._client._store(name)
                if store.n_ords >= self._client.hnsw_threshold:
                    for field in store.vector_fields.values():
                        field.ensure_hnsw(store.n_ords)
        return {"_shards": _shards()}

    def put_index_template(self, name: str, body: dict, params: dict | None = None, **_transport) -> dict:
        if not isinstance(body, dict) or not body.get("index_patterns"):
            raise EngineError("index template must have [index_patterns]", 400, "action_request_validation_exception")
        unknown = set(body) - {"index_patterns", "template", "priority", "version", "_meta", "composed_of", "data_stream"}
        if unknown or body.get("composed_of") or body.get("data_stream"):
            raise UnsupportedQueryError(f"index template key(s) {sorted(unknown | {'composed_of', 'data_stream'} & set(body))} not supported by the embedded engine")
        with self._client._lock:
            templates = self._client._read_registry("templates")
            templates[name] = copy.deepcopy(body)
            self._client._write_registry("templates", templates)
        return {"acknowledged": True}

    def get_mapping(self, index: str, params: dict | None = None, **_transport) -> dict:
        with self._client._lock:
            store = self._client._store(index)
            return {index: {"mappings": copy.deepcopy(store.mapping.raw)}}


class _SearchPipelines:
    """`client.search_pipeline`: put / get / delete (validated when stored)."""

    def __init__(self, client: EmbeddedClient):
        self._client = client

    def put(self, id: str, body: dict, params: dict | None = None, **_transport) -> dict:
        parse_pipeline(id, body)
        with self._client._lock:
            pipelines = self._client._read_registry("pipelines")
            pipelines[id] = copy.deepcopy(body)
            self._client._write_registry("pipelines", pipelines)
        return {"acknowledged": True}

    def get(self, id: str | None = None, params: dict | None = None, **_transport) -> dict:
        pipelines = self._client._read_registry("pipelines")
        if id is None:
            return pipelines
        if id not in pipelines:
            raise EngineError(f"Pipeline {id} is not defined", 404, "resource_not_found_exception")
        return {id: pipelines[id]}

    def delete(self, id: str, params: dict | None = None, **_transport) -> dict:
        with self._client._lock:
            pipelines = self._client._read_registry("pipelines")
            if id not in pipelines:
                raise EngineError(f"Pipeline {id} is not defined", 404, "resource_not_found_exception")
            del pipelines[id]
            self._client._write_registry("pipelines", pipelines)
        return {"acknowledged": True}
