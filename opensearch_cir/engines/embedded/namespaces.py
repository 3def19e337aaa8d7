"""`client.indices` and `client.search_pipeline` of the embedded client."""

from __future__ import annotations

import copy
import fnmatch
import shutil
import time
import uuid

from ...errors import EngineError, UnsupportedQueryError
from .hybrid import parse_pipeline
from .mapping import flatten_settings, resolve_index_body
from .requests import guard_requests, nested_settings, shards, validate_index_name
from .multi_index import resolve
from . import store as store_module
from .store import IndexStore

DYNAMIC_INDEX_SETTINGS = {
    "index.max_result_window", "index.search.default_pipeline", "index.knn.algo_param.ef_search",
    "index.number_of_replicas", "index.refresh_interval", "index.search.concurrent_segment_search.mode",
    "index.translog.durability", "index.translog.sync_interval", "index.search.idle.after",
}


@guard_requests
class Indices:
    """`client.indices`: create / delete / exists / refresh / put_index_template / get_mapping."""

    def __init__(self, client):
        self._client = client

    def create(self, index: str, body: dict | None = None, params: dict | None = None, **_transport) -> dict:
        validate_index_name(index)
        with self._client._lock:
            folder = self._client.root / index
            if folder.exists():
                raise EngineError(f"index [{index}] already exists", 400, "resource_already_exists_exception")
            settings, mappings = resolve_index_body(index, body, self._client._read_registry("templates"))
            aliases = (body or {}).get("aliases") or {}
            for name, config in aliases.items():
                self._check_alias(name, config)
            try:
                IndexStore(folder, settings=settings, mappings=mappings).close()
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            for name in aliases:
                self._edit_aliases([("add", index, name)])
        return {"acknowledged": True, "shards_acknowledged": True, "index": index}

    def delete(self, index: str, params: dict | None = None, **_transport) -> dict:
        with self._client._lock:
            folder = self._client.root / index
            if not (folder / "manifest.json").exists():
                raise EngineError(f"no such index [{index}]", 404, "index_not_found_exception")
            self._client._forget(index)
            self._edit_aliases([("remove", index, name) for name, members in self.aliases().items() if index in members])
            trash = folder.with_name(f".deleted-{index}-{uuid.uuid4().hex[:8]}")
            folder.rename(trash)  # atomic: the index disappears at once
            shutil.rmtree(trash, ignore_errors=True)
        return {"acknowledged": True}

    def exists(self, index: str, params: dict | None = None, **_transport) -> bool:
        return (self._client.root / index / "manifest.json").exists()

    def refresh(self, index: str | None = None, params: dict | None = None, **_transport) -> dict:
        """Make every acknowledged write searchable (waiting for a bulk of another process to end),
        and build/extend HNSW graphs above the threshold."""
        with self._client._lock:
            names = [index] if index else [p.name for p in self._client.root.iterdir() if (p / "manifest.json").exists()]
        for name in names:
            deadline = time.monotonic() + store_module.WRITE_LOCK_TIMEOUT_S
            while True:  # wait outside the client's lock, so that searches go on meanwhile
                with self._client._lock:
                    store = self._client._store(name, publish=False)
                    try:
                        store.publish(wait_s=0.0)
                        break
                    except EngineError as exc:
                        if exc.error_type != "lock_obtain_failed_exception" or time.monotonic() >= deadline:
                            raise
                time.sleep(0.02)
            with self._client._lock:
                if store.n_ords >= self._client.hnsw_threshold:
                    for field in store.vector_fields.values():
                        field.ensure_hnsw(store.n_ords)
        return {"_shards": shards()}

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

    # --- aliases (plain: no filter, routing or write index flag) ------------------------------------
    def aliases(self) -> dict[str, list[str]]:
        """{alias: [index, ...]} from the alias registry."""
        return self._client._read_registry("aliases")

    def _check_alias(self, name: str, config) -> None:
        if config:
            raise UnsupportedQueryError(f"alias [{name}] options {sorted(config)} are not supported by the embedded engine")
        if (self._client.root / name / "manifest.json").exists():
            raise EngineError(f"an index or data stream exists with the same name as the alias [{name}]", 400, "invalid_alias_name_exception")
        validate_index_name(name)

    def _edit_aliases(self, actions: list[tuple[str, str, str]]) -> None:
        registry = self.aliases()
        for action, index, name in actions:
            members = registry.setdefault(name, [])
            if action == "add" and index not in members:
                members.append(index)
            elif action == "remove":
                if index not in members:
                    raise EngineError(f"aliases [{name}] missing", 404, "aliases_not_found_exception")
                members.remove(index)
            if not members:
                del registry[name]
        self._client._write_registry("aliases", registry)

    def put_alias(self, index, name: str, body: dict | None = None, params: dict | None = None, **_transport) -> dict:
        self.update_aliases(body={"actions": [{"add": {"indices": index.split(",") if isinstance(index, str) else list(index), "alias": name, **(body or {})}}]})
        return {"acknowledged": True}

    def delete_alias(self, index, name: str, params: dict | None = None, **_transport) -> dict:
        self.update_aliases(body={"actions": [{"remove": {"indices": index.split(",") if isinstance(index, str) else list(index), "alias": name}}]})
        return {"acknowledged": True}

    def update_aliases(self, body: dict, params: dict | None = None, **_transport) -> dict:
        """`add` / `remove` actions, applied atomically."""
        edits = []
        with self._client._lock:
            for action in (body or {}).get("actions", []):
                (kind, config), = action.items()
                if kind not in ("add", "remove"):
                    raise UnsupportedQueryError(f"alias action [{kind}] is not supported by the embedded engine")
                config = dict(config)
                indices = config.pop("indices", None) or [config.pop("index", None)]
                names = config.pop("aliases", None) or [config.pop("alias", None)]
                config.pop("index", None), config.pop("alias", None)
                for index in indices:
                    if not (self._client.root / str(index) / "manifest.json").exists():
                        raise EngineError(f"no such index [{index}]", 404, "index_not_found_exception")
                    for name in names:
                        if kind == "add":
                            self._check_alias(name, config)
                        edits.append((kind, index, name))
            self._edit_aliases(edits)
        return {"acknowledged": True}

    def get_alias(self, index: str | None = None, name: str | None = None, params: dict | None = None, **_transport) -> dict:
        wanted = resolve(self._client, index) if index else None
        out: dict = {}
        for alias, members in self.aliases().items():
            if name and not any(fnmatch.fnmatchcase(alias, n) for n in name.split(",")):
                continue
            for member in members:
                if wanted is None or member in wanted:
                    out.setdefault(member, {"aliases": {}})["aliases"][alias] = {}
        if name and not out:
            raise EngineError(f"alias [{name}] missing", 404, "aliases_not_found_exception")
        return out

    def exists_alias(self, name: str, index: str | None = None, params: dict | None = None, **_transport) -> bool:
        try:
            return bool(self.get_alias(index=index, name=name))
        except EngineError:
            return False

    def put_mapping(self, body: dict, index: str | None = None, params: dict | None = None, **_transport) -> dict:
        """Add fields (or sub-fields) to an index's mapping; changing a field's type is a 400."""
        if not isinstance(body, dict):
            raise EngineError("mapping body must be an object", 400, "parse_exception")
        with self._client._lock:
            self._client._store(index).update_meta(mappings=body)
        return {"acknowledged": True}

    def get_settings(self, index: str, params: dict | None = None, **_transport) -> dict:
        """The index settings, nested under `index` with string values as OpenSearch returns them."""
        with self._client._lock:
            store = self._client._store(index)
            return {index: {"settings": nested_settings(store.settings)}}

    def put_settings(self, body: dict, index: str | None = None, params: dict | None = None, **_transport) -> dict:
        """Update dynamic index settings (max_result_window, default search pipeline, ef_search...)."""
        settings = flatten_settings((body or {}).get("settings", body) if isinstance(body, dict) else None)
        static = sorted(k for k in settings if k not in DYNAMIC_INDEX_SETTINGS)
        if static:
            raise EngineError(f"Can't update non dynamic settings [{static}] for open indices [[{index}]]", 400, "illegal_argument_exception")
        with self._client._lock:
            self._client._store(index).update_meta(settings=settings)
        return {"acknowledged": True}

    def get_mapping(self, index: str, params: dict | None = None, **_transport) -> dict:
        with self._client._lock:
            store = self._client._store(index)
            return {index: {"mappings": copy.deepcopy(store.mapping.raw)}}


@guard_requests
class SearchPipelines:
    """`client.search_pipeline`: put / get / delete (validated when stored)."""

    def __init__(self, client):
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
