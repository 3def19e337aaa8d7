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

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...dialect import EMBEDDED_DISTRIBUTION, EMBEDDED_VERSION
from ...errors import EngineError, UnsupportedQueryError
from . import store as store_module
from .bulk_write import write_bulk
from .hybrid import explanation, parse_pipeline, run_hybrid
from .multi_index import resolve, search_many, write_index
from .namespaces import Indices, SearchPipelines
from .query import Executor
from .requests import (
    check_query_vectors, filter_source, guard_requests, int_param, item_error, nested_probe, param_value, parse_bulk,
    plain_explanation, refresh_param, shards, source_spec, total_hits,
)
from .sorting import parse_sort, sort_hits
from .persist import atomic_write_json, read_json
from .store import IndexStore

__all__ = ["EmbeddedClient"]

DEFAULT_HNSW_THRESHOLD = 10_000
"""Below this many documents knn is exact (a 10k x 256-d scan is ~0.3 ms); above, HNSW. k-NN builds
a graph for every segment (KNNSettings `index.knn.advanced.approximate_threshold`, default 0)."""
DEFAULT_TRACK_TOTAL_HITS = 10_000
DEFAULT_MAX_RESULT_WINDOW = 10_000
# Keys of OpenSearch's search body that the embedded engine does not implement (refused as
# unsupported); any other unknown key is a 400 parsing_exception, as upstream.
_OPENSEARCH_SEARCH_BODY_KEYS = {
    "aggs", "aggregations", "highlight", "post_filter", "search_after", "collapse", "rescore",
    "suggest", "stored_fields", "docvalue_fields", "fields", "script_fields", "version", "seq_no_primary_term",
    "indices_boost", "profile", "stats", "terminate_after", "track_scores", "ext", "slice", "pit", "search_pipeline",
    "verbose_pipeline", "include_named_queries_score", "derived",
}
_GET_PARAMS = {"_source", "_source_includes", "_source_excludes", "realtime", "refresh", "preference", "routing"}
_SEARCH_BODY_KEYS = {"query", "size", "from", "_source", "track_total_hits", "explain", "timeout", "sort", "min_score", "track_scores"}
_SEARCH_PARAMS = {"search_pipeline", "size", "from", "track_total_hits", "explain", "_source", "_source_excludes", "_source_includes", "request_timeout", "timeout"}




@guard_requests
class EmbeddedClient:
    """opensearch-py `OpenSearch` subset over local folders (see module docstring)."""

    def __init__(self, path: str | Path, *, legacy_bm25: bool = False, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD):
        self.root = Path(path).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.legacy_bm25 = legacy_bm25
        self.hnsw_threshold = hnsw_threshold
        self._stores: dict[str, IndexStore] = {}
        self._lock = threading.RLock()
        self._pipelines: tuple | None = None  # (registry file identity, its pipelines, those parsed so far)
        self.indices = Indices(self)
        self.search_pipeline = SearchPipelines(self)

    def __repr__(self) -> str:
        return f"EmbeddedClient({str(self.root)!r})"

    # --- plumbing ----------------------------------------------------------------------------------
    def info(self, **_transport) -> dict:
        """`GET /`: the OpenSearch version whose request rules this engine follows (3.x; `legacy_bm25`
        changes only BM25 scores), so `dialect.detect` answers alike for both executors."""
        return {"name": "embedded", "cluster_name": str(self.root), "tagline": "opensearch-cir embedded engine",
                "version": {"distribution": EMBEDDED_DISTRIBUTION, "number": EMBEDDED_VERSION}}

    def _store(self, index: str, *, publish: bool = True, catch_up: bool = True) -> IndexStore:
        """The open store of `index`, caught up with the latest refresh (unless not `catch_up`: a
        writer catches up when it takes the lock); `publish` (reads) first refreshes acknowledged
        writes unless another process is writing."""
        if not isinstance(index, str) or "," in index or "*" in index or index == "_all":
            raise UnsupportedQueryError(f"index expressions ({index!r}) are not supported here; name one index")
        store = self._stores.get(index)
        folder = self.root / index
        if store is not None and not folder.exists():
            self._forget(index)
            store = None
        if store is None:
            if not (folder / "manifest.json").exists():
                raise EngineError(f"no such index [{index}]", 404, "index_not_found_exception")
            store = self._stores[index] = IndexStore(folder)
        if catch_up:
            store.refresh(publish=publish)
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
        """Index / create / delete documents; each index's part of the batch is acknowledged atomically
        (durable on return), and searchable after a refresh (`refresh=true|wait_for` refreshes now;
        see `writes.py` for when else)."""
        started = time.perf_counter()
        refresh = refresh_param(refresh if refresh is not None else (params or {}).get("refresh"))
        actions = list(parse_bulk(body))
        items: list[dict | None] = [None] * len(actions)
        by_index: dict[str, list[int]] = {}
        with self._lock:
            targets: dict[str, str | EngineError] = {}
            for i, (op, meta, _source) in enumerate(actions):
                target = meta.get("_index", index)
                if target is None:
                    items[i] = item_error(op, None, meta.get("_id"), 400, "action_request_validation_exception", "index is missing")
                    continue
                if target not in targets:
                    try:
                        targets[target] = write_index(self, target)
                    except EngineError as exc:
                        targets[target] = exc
                resolved = targets[target]
                if isinstance(resolved, EngineError):
                    items[i] = item_error(op, target, meta.get("_id"), resolved.status, resolved.error_type, str(resolved))
                    continue
                by_index.setdefault(resolved, []).append(i)
        wait_s = store_module.WRITE_LOCK_TIMEOUT_S
        deadline = time.monotonic() + wait_s
        while True:  # wait for another process's bulk outside self._lock, so that searches go on meanwhile
            with self._lock:
                stores = self._writers(list(by_index))
                if stores is not None:
                    try:
                        for target, positions in by_index.items():
                            write_bulk(stores[target], target, [actions[i] for i in positions], positions, items)
                            stores[target].after_bulk(refresh)
                    finally:  # the lock is held only while writing
                        for store in stores.values():
                            store.release_writer()
                    break
            if time.monotonic() >= deadline:
                raise EngineError(f"index {sorted(by_index)} is being written by another process for more than "
                                  f"{wait_s:g} s; retry later", 409, "lock_obtain_failed_exception")
            time.sleep(0.02)
        return {"took": int((time.perf_counter() - started) * 1000), "errors": any("error" in next(iter(it.values())) for it in items), "items": items}

    def _writers(self, indices: list[str]) -> dict[str, IndexStore] | None:
        """The stores of `indices` (created if missing), each with its write lock; None when another
        process holds one of the locks (none is kept then)."""
        stores: dict[str, IndexStore] = {}
        try:
            for index in indices:
                try:
                    store = self._store(index, publish=False, catch_up=False)
                except EngineError as exc:
                    if exc.status != 404:
                        raise
                    store = self._auto_create(index)
                stores[index] = store
                store._acquire_writer(timeout=0.0)
        except EngineError as exc:
            for store in stores.values():
                store.release_writer()
            if exc.error_type == "lock_obtain_failed_exception":
                return None
            raise
        return stores

    def _auto_create(self, index: str) -> IndexStore:
        self.indices.create(index=index)
        return self._store(index, publish=False)

    def index(self, index: str, body: dict, id: str | None = None, refresh=None, params: dict | None = None, op_type: str | None = None, **_transport) -> dict:
        """Index one document (created or replaced); `op_type="create"` fails with 409 when the id exists."""
        op = str(op_type or (params or {}).get("op_type") or "index")
        if op not in ("index", "create"):
            raise EngineError(f"opType must be 'create' or 'index', found: [{op}]", 400, "illegal_argument_exception")
        meta = {"_index": index}
        if id is not None:
            meta["_id"] = id
        item = self.bulk(body=[{op: meta}, body], refresh=refresh, params=params)["items"][0][op]
        if "error" in item:
            raise EngineError(item["error"]["reason"], item["status"], item["error"]["type"])
        return {k: v for k, v in item.items() if k != "status"}

    def create(self, index: str, id: str, body: dict, refresh=None, params: dict | None = None, **_transport) -> dict:
        """Index a new document; EngineError 409 when the id exists."""
        return self.index(index=index, body=body, id=id, op_type="create", refresh=refresh, params=params)

    def get(self, index: str, id: str, params: dict | None = None, **kwargs) -> dict:
        """The stored document (`_source`, `_source_includes`, `_source_excludes` filter it);
        EngineError 404 when it does not exist."""
        params = {**(params or {}), **{k: v for k, v in kwargs.items() if k not in ("request_timeout", "headers")}}
        if set(params) - _GET_PARAMS:
            raise UnsupportedQueryError(f"get parameter(s) {sorted(set(params) - _GET_PARAMS)} are not supported by the embedded engine")
        spec = source_spec(params)
        with self._lock:
            index = write_index(self, index)
            store = self._store(index)
            store.last_read = time.monotonic()
            ordinal = store.current(str(id))
            if ordinal is None:
                raise EngineError(f"document [{id}] not found in [{index}]", 404, "not_found")
            response = {"_index": index, "_id": str(id), "_version": store.id_version[str(id)], "found": True}
            source = filter_source(store.source(ordinal), spec)
            if source is not None:
                response["_source"] = source
            return response

    def delete(self, index: str, id: str, refresh=None, params: dict | None = None, **_transport) -> dict:
        """Delete one document; EngineError 404 when it does not exist."""
        item = self.bulk(body=[{"delete": {"_index": index, "_id": id}}], refresh=refresh, params=params)["items"][0]["delete"]
        if item.get("status") == 404:
            raise EngineError(f"document [{id}] not found in [{index}]", 404, "not_found")
        return {k: v for k, v in item.items() if k != "status"}

    def count(self, index: str, body: dict | None = None, params: dict | None = None, **_transport) -> dict:
        """Number of documents matching `body["query"]` (all documents without one)."""
        body = body or {}
        if set(body) - {"query"}:
            raise UnsupportedQueryError(f"count body key(s) {sorted(set(body) - {'query'})} are not supported by the embedded engine")
        query = body.get("query", {"match_all": {}})
        with self._lock:
            count = sum(int(self._executor(self._store(name)).matches(query).sum()) for name in resolve(self, index))
            return {"count": count, "_shards": shards()}

    # --- search ------------------------------------------------------------------------------------
    def _executor(self, store: IndexStore) -> Executor:
        store.last_read = time.monotonic()  # searcher access: the index is not search idle
        return Executor(store, legacy_bm25=self.legacy_bm25, hnsw_threshold=self.hnsw_threshold)

    def search(self, index: str, body: dict | None = None, params: dict | None = None, **kwargs) -> dict:
        """Run a search body; `params={"search_pipeline": NAME}` selects the pipeline for hybrid queries."""
        started = time.perf_counter()
        body = dict(body or {})  # only top-level keys are set below
        params = dict(params or {})
        params.update({k: v for k, v in kwargs.items() if k not in ("request_timeout", "headers")})
        unknown = set(body) - _SEARCH_BODY_KEYS
        if unknown - _OPENSEARCH_SEARCH_BODY_KEYS:
            key = sorted(unknown - _OPENSEARCH_SEARCH_BODY_KEYS)[0]
            raise EngineError(f"Unknown key for a START_OBJECT in [{key}].", 400, "parsing_exception")
        if unknown:
            raise UnsupportedQueryError(f"search body key(s) {sorted(unknown)} are not supported by the embedded engine")
        unknown = set(params) - _SEARCH_PARAMS
        if unknown:
            raise UnsupportedQueryError(f"search parameter(s) {sorted(unknown)} are not supported by the embedded engine")
        for key in ("size", "from", "track_total_hits", "explain"):
            if key in params:
                body[key] = param_value(params[key])
        if any(key in params for key in ("_source", "_source_includes", "_source_excludes")):
            body["_source"] = source_spec(params)
        size, from_ = int_param(body.get("size", 10), "size"), int_param(body.get("from", 0), "from")
        check_query_vectors(body.get("query"))
        if from_ < 0:
            raise EngineError("[from] parameter cannot be negative", 400, "illegal_argument_exception")
        if size < 0:
            raise EngineError(f"[size] parameter cannot be negative, found [{size}]", 400, "illegal_argument_exception")
        query = body.get("query", {"match_all": {}})
        with self._lock:
            names = resolve(self, index)
            if len(names) != 1:
                hits, total, max_score = search_many(self, names, query, body, params, from_, size)
                return self._response(started, body, hits, total, max_score)
            index = names[0]
            store = self._store(index)
            window = int(store.settings.get("index.max_result_window", DEFAULT_MAX_RESULT_WINDOW))
            if from_ + size > window:
                raise EngineError(
                    f"Result window is too large, from + size must be less than or equal to: [{window}] but was [{from_ + size}]. "
                    "See the scroll api for a more efficient way to request large data sets. This limit can be set by changing "
                    "the [index.max_result_window] index level setting.", 400, "illegal_argument_exception")
            executor = self._executor(store)
            name = next(iter(query)) if isinstance(query, dict) and len(query) == 1 else None
            explain = bool(body.get("explain", False))
            if name == "hybrid":
                pipeline = self._pipeline_for(store, params.get("search_pipeline"))
                hybrid_hits, total = run_hybrid(executor, query["hybrid"], pipeline, from_=from_, size=size, max_result_window=window,
                                                count=body.get("track_total_hits", True) is not False)
                page = hybrid_hits[from_ : from_ + size]
                hits = [self._hit(store, index, h.ordinal, h.score, body.get("_source", True), explanation(h, pipeline) if explain else None) for h in page]
                max_score = hybrid_hits[0].score if hybrid_hits else 0.0  # neural-search reports 0.0
            else:
                if params.get("search_pipeline") is not None:
                    self._pipeline_for(store, params["search_pipeline"], hybrid=False)  # must exist and be valid
                if "sort" in body or "min_score" in body:
                    hits, total, max_score = self._sorted_search(store, index, executor, query, body, from_, size)
                else:
                    ranked, total = executor.top(query, from_ + size, count=body.get("track_total_hits", True) is not False)
                    if from_ + size == 0:
                        ranked = executor.top(query, 1)[0]
                    max_score = float(ranked.scores[0]) if len(ranked.ords) else None
                    hits = [
                        self._hit(store, index, int(o), float(s), body.get("_source", True), plain_explanation(name, float(s)) if explain else None)
                        for o, s in zip(ranked.ords[from_ : from_ + size], ranked.scores[from_ : from_ + size])
                    ]
        return self._response(started, body, hits, total, max_score)

    @staticmethod
    def _response(started: float, body: dict, hits: list, total: int | None, max_score) -> dict:
        response_hits: dict[str, Any] = {}
        total_field = total_hits(total, body.get("track_total_hits", DEFAULT_TRACK_TOTAL_HITS))
        if total_field is not None:
            response_hits["total"] = total_field
        response_hits["max_score"] = max_score
        response_hits["hits"] = hits
        return {"took": int((time.perf_counter() - started) * 1000), "timed_out": False, "_shards": shards(), "hits": response_hits}

    def _sorted_search(self, store: IndexStore, index: str, executor: Executor, query, body: dict, from_: int, size: int):
        """Hits with `min_score` and/or `sort` applied: (hits, total, max_score). Sorting by a field
        leaves `_score` null (and max_score null) unless `track_scores` or a `_score` key asks for it."""
        scored = executor.scored(query)
        ords, scores = scored.ords, scored.scores
        if body.get("min_score") is not None:
            keep = scores >= np.float32(float(body["min_score"]))
            ords, scores = ords[keep], scores[keep]
        keys = parse_sort(body.get("sort", "_score"))
        ords, scores, sort_values = sort_hits(store, ords, scores, keys)
        with_scores = any(k.field == "_score" for k in keys) or bool(body.get("track_scores"))
        hits = []
        for i in range(from_, min(from_ + size, len(ords))):
            hit = self._hit(store, index, int(ords[i]), float(scores[i]) if with_scores else None, body.get("_source", True), None)
            if "sort" in body:
                hit["sort"] = sort_values[i]
            hits.append(hit)
        # search/400_max_score.yml: max_score only when tracking scores or sorting by _score desc first
        tracked = bool(body.get("track_scores")) or (keys[0].field == "_score" and keys[0].descending)
        max_score = float(scores.max()) if tracked and len(scores) else None
        return hits, len(ords), max_score

    def _pipeline_for(self, store: IndexStore, name: str | None, *, hybrid: bool = True):
        name = name or store.settings.get("index.search.default_pipeline")
        pipeline = None
        if name not in (None, "_none"):
            _, pipelines, parsed = self._pipeline_registry()
            if name not in pipelines:
                raise EngineError(f"Pipeline {name} is not defined", 404, "resource_not_found_exception")
            if name not in parsed:
                parsed[name] = parse_pipeline(name, pipelines[name])
            pipeline = parsed[name]
        if hybrid and (pipeline is None or not pipeline.phase):
            raise EngineError("a hybrid query needs a search pipeline with a normalization-processor or score-ranker-processor "
                              "(params={'search_pipeline': NAME} or index.search.default_pipeline)", 400, "illegal_argument_exception")
        return pipeline

    def _pipeline_registry(self) -> tuple:
        """The search pipelines, read again only when their file changed (another process may put one)."""
        try:
            status = (self.root / "_pipelines.json").stat()
            identity = (status.st_ino, status.st_mtime_ns, status.st_size)
        except FileNotFoundError:
            identity = None
        cached = self._pipelines
        if cached is None or cached[0] != identity:
            cached = self._pipelines = (identity, self._read_registry("pipelines"), {})
        return cached

    def _hit(self, store: IndexStore, index: str, ordinal: int, score: float, source_spec, explanation_body) -> dict:
        hit = {"_index": index, "_id": store.ids[ordinal], "_score": score}
        wanted_vectors = [p for p in store.vector_fields if filter_source(nested_probe(p), source_spec)]
        source = filter_source(store.source(ordinal, wanted_vectors), source_spec)
        if source is not None:
            hit["_source"] = source
        if explanation_body is not None:
            hit["_explanation"] = explanation_body
        return hit
