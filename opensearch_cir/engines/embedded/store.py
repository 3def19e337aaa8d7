"""Durable on-disk storage of one embedded index, in one folder.

    meta.json        settings + mappings (replaced atomically when dynamic mapping adds fields)
    manifest.json    the refresh point: generation, log bytes and ordinals that readers see
    docs.log         append-only batches: a header line (size, count, crc32), then JSON lines of
                     index / delete records (sources without vectors)
    vectors/*.f32    append-only rows per knn_vector field (row = document ordinal; .i8 / .bits for
                     byte / binary fields)
    text/            tantivy index of the text fields (+ `_ord`)
    snapshot.npz     derived, optional: the in-memory state at some refresh (no pickle), so that
                     opening a large index replays only the log written since
    write.lock       held (flock) by the one writer, only while it writes a bulk or refreshes
    refresh.wanted   left by a reader that could not refresh while a bulk was being written

Writes are durable when acknowledged and searchable after a refresh, as in OpenSearch. A bulk
takes `write.lock` (waiting up to WRITE_LOCK_TIMEOUT_S for another process's bulk), appends the
vector rows and fsyncs them, then appends one framed batch to the log and fsyncs it: that is the
acknowledgement. A refresh (`writes.py`) indexes the log past the manifest into tantivy, commits
it, then replaces the manifest, the point readers follow. So `cir serve` and `cir ingest` can take
turns on one folder; readers never wait for the lock (they refresh themselves when it is free).

A crash before the log's fsync loses that batch only: the next writer truncates a torn batch
and vector rows past the last complete batch. A crash after it loses nothing: the next refresh
indexes the batch from the log (see `writes.py` for who refreshes, and when).
"""

from __future__ import annotations

import copy
import json
import os
from array import array
from pathlib import Path

import numpy as np

from ...errors import EngineError
from .analysis import build_analyzer
from .documents import Column, flatten_source, normalise, set_path
from .mapping import FieldSpec, Mapping
from .persist import Snapshots, atomic_write_json, read_json, read_records
from .textindex import ORD_FIELD, TextIndex, tantivy_name
from .vectors import VectorField
from .writes import Writes

__all__ = ["IndexStore", "ORD_FIELD", "WRITE_LOCK_TIMEOUT_S", "tantivy_name"]
SNAPSHOT_MIN_BYTES = 16 * 2**20  # write a snapshot once the log grew this much (and by 25 %)
WRITE_LOCK_TIMEOUT_S = 10.0  # how long a bulk waits for another process's bulk


def published(manifest: dict) -> tuple[int, int, int]:
    """(generation, log bytes, ordinals) that readers see. A manifest of the format before deferred
    refreshes could be ahead of its text index (`text`): readers then see the text's point."""
    text = manifest.get("text")
    if text is not None and text["generation"] != manifest["generation"]:
        return text["generation"], text["log_bytes"], text["n_ords"]
    return manifest["generation"], manifest["log_bytes"], manifest["n_ords"]


class IndexStore(Writes, TextIndex, Snapshots):
    """One index folder: refreshed documents, columns for filters, vectors and the text index."""

    def __init__(self, folder: Path, *, settings: dict | None = None, mappings: dict | None = None):
        self.folder = Path(folder)
        self.name = self.folder.name
        self.log_path = self.folder / "docs.log"
        self.wanted_path = self.folder / "refresh.wanted"
        if settings is not None:
            self._create(settings, mappings or {})
        if not (self.folder / "manifest.json").exists():
            raise EngineError(f"no such index [{self.name}]", 404, "index_not_found_exception")
        self._log_fd: int | None = None
        self._init_writer()
        self._load_meta()
        self._reset_state()
        self._load_snapshot()
        self.refresh()

    # --- creation and metadata -------------------------------------------------------------------
    def _create(self, settings: dict, mappings: dict) -> None:
        mapping = Mapping(mappings, settings)  # validates before anything is written
        for spec in mapping.text_fields():
            build_analyzer(spec.params.get("analyzer", "standard"), settings)
        self.folder.mkdir(parents=True)
        (self.folder / "vectors").mkdir()
        (self.folder / "text").mkdir()
        self.log_path.touch()
        self.tantivy_fields = [spec.path for spec in mapping.text_fields()]
        self.settings, self.mapping, self.meta_version = settings, mapping, 0
        atomic_write_json(self.folder / "meta.json", self._meta_body())
        self._open_text_index(mapping, create=True)
        atomic_write_json(self.folder / "manifest.json", {"generation": 0, "log_bytes": 0, "n_ords": 0, "meta_version": 0})

    def _meta_body(self) -> dict:
        return {"settings": self.settings, "mappings": self.mapping.raw, "version": self.meta_version, "tantivy_text_fields": self.tantivy_fields}

    def _load_meta(self) -> None:
        meta = read_json(self.folder / "meta.json")
        self.settings = meta["settings"]
        self.mapping = Mapping(meta["mappings"], self.settings)
        self.written_mappings = copy.deepcopy(meta["mappings"])
        self.meta_version = meta["version"]
        if "tantivy_text_fields" in meta:
            self.tantivy_fields = meta["tantivy_text_fields"]
        elif not hasattr(self, "tantivy_fields"):  # an index from before dynamic text fields
            self.tantivy_fields = [spec.path for spec in self.mapping.text_fields()]
        self.analyzers = {
            spec.path: self.__dict__.get("analyzers", {}).get(spec.path) or build_analyzer(spec.params.get("analyzer", "standard"), self.settings)
            for spec in self.mapping.text_fields()
        }
        self.vector_fields = {
            spec.path: self.__dict__.get("vector_fields", {}).get(spec.path) or VectorField(self.folder / "vectors", spec)
            for spec in self.mapping.vector_fields()
        }
        if not hasattr(self, "text_index"):
            self._open_text_index(self.mapping, create=False)
        for path, column in self.__dict__.get("columns", {}).items():
            column.spec = self.mapping.fields[path]

    def write_meta(self) -> None:
        """Publish the mapping and settings (before any record that uses a new field is logged)."""
        self.meta_version += 1
        atomic_write_json(self.folder / "meta.json", self._meta_body())
        self.written_mappings = copy.deepcopy(self.mapping.raw)

    def update_meta(self, *, mappings: dict | None = None, settings: dict | None = None) -> None:
        """put_mapping / put_settings: merge into the index metadata and publish it (new text
        fields are indexed in columns; a new knn_vector field needs an empty index)."""
        self._acquire_writer()
        try:
            mapping = Mapping(copy.deepcopy(self.mapping.raw), self.settings)
            if mappings:
                mapping.merge(mappings)
                added = {spec.path for spec in mapping.vector_fields()} - set(self.vector_fields)
                if added and self.log_n_ords:
                    raise EngineError(f"knn_vector field(s) {sorted(added)} can only be added to an empty index (embedded engine)", 400, "illegal_argument_exception")
                for spec in mapping.text_fields():
                    build_analyzer(spec.params.get("analyzer", "standard"), self.settings)
            self.mapping = mapping
            if settings:
                self.settings = {**self.settings, **settings}
            self.write_meta()
            self._publish(force=True)  # readers follow the new meta version
            self._load_meta()
        finally:
            self.release_writer()

    # --- the refreshed state, as a reader sees it ----------------------------------------------------
    def _reset_state(self) -> None:
        self._snapshot_log_pos = 0
        self.generation = -1
        self.log_pos = 0
        self.n_ords = 0
        self.ids: list[str] = []
        self.id_version: dict[str, int] = {}
        self.offsets = array("q")
        self.lengths = array("q")
        self.live_bytes = bytearray()
        self.id_to_ord: dict[str, int] = {}
        self.columns: dict[str, Column] = {}
        self._live_cache: np.ndarray | None = None
        self._array_cache: dict = {}

    def current(self, doc_id: str) -> int | None:
        """The ordinal of the live version of `doc_id`, or None."""
        return self.id_to_ord.get(doc_id)

    def refresh(self, *, publish: bool = False) -> bool:
        """Catch up with the manifest (cheap when nothing changed). True when the view moved.

        With `publish`, acknowledged writes not refreshed yet are refreshed first when no other
        process is writing (a search refreshes, like a search-idle shard in OpenSearch)."""
        manifest = read_json(self.folder / "manifest.json")
        if manifest is None:
            raise EngineError(f"no such index [{self.name}]", 404, "index_not_found_exception")
        if publish and self._lock_fd is None and self._unpublished(manifest):
            if self._publish_if_free():
                return True
            manifest = read_json(self.folder / "manifest.json")
        self.manifest = manifest
        generation, log_bytes, _ = published(manifest)
        if generation == self.generation:
            return False
        if manifest["meta_version"] != self.meta_version:
            self._load_meta()  # dynamic mapping added fields: only later records can use them
        self._replay(self.log_pos, log_bytes)
        self._moved_to(generation)
        return True

    def _unpublished(self, manifest: dict) -> bool:
        try:
            return os.stat(self.log_path).st_size > published(manifest)[1]
        except FileNotFoundError:
            return False

    def _moved_to(self, generation: int) -> None:
        self.generation = generation
        self._live_cache = None
        self._array_cache = {}
        self.text_index.reload()

    def _replay(self, start: int, end: int) -> None:
        self._apply_all(read_records(self.log_path, start, end), end)

    def _apply_all(self, records: list[tuple[dict, int, int]], end: int, flats: list | None = None) -> None:
        """Apply log records (with their sources flattened, when the caller has them) to the view."""
        for i, (record, offset, length) in enumerate(records):
            self._apply(record, offset, length, None if flats is None else flats[i])
        self.log_pos = max(self.log_pos, end)

    def _apply(self, record: dict, offset: int, length: int, flat: dict | None = None) -> None:
        doc_id = record["id"]
        self.id_version[doc_id] = record["version"]
        previous = self.id_to_ord.pop(doc_id, None)
        if previous is not None:
            self.live_bytes[previous] = 0
        if record["op"] == "delete":
            return
        ordinal = record["ord"]
        if ordinal != self.n_ords:
            raise EngineError(f"index [{self.name}] log is inconsistent at byte {offset}", 500, "corrupt_index_exception")
        self.ids.append(doc_id)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.live_bytes.append(1)
        self.id_to_ord[doc_id] = ordinal
        self.n_ords += 1
        for path, values in self._leaf_values(flatten_source(record["source"]) if flat is None else flat):
            column = self.columns.get(path)
            if column is None:
                spec = self.mapping.fields.get(path)
                if spec is None:
                    continue
                column = self.columns[path] = self._new_column(spec)
            column.add(ordinal, values)
        for path in record.get("vectors", ()):
            self._column_for(path).add(ordinal, [True])

    def _column_for(self, path: str) -> Column:
        column = self.columns.get(path)
        if column is None:
            column = self.columns[path] = self._new_column(self.mapping.fields[path])
        return column

    def is_column_text(self, path: str) -> bool:
        """A text field indexed in a Column (mapped after creation), not in tantivy."""
        spec = self.mapping.fields.get(path)
        return spec is not None and spec.type == "text" and path not in self.tantivy_fields

    def _new_column(self, spec: FieldSpec) -> Column:
        if not self.is_column_text(spec.path):
            return Column(spec)
        if spec.path not in self.analyzers:  # mapped by this writer since the meta was loaded
            self.analyzers[spec.path] = build_analyzer(spec.params.get("analyzer", "standard"), self.settings)
        return Column(spec, self.analyzers[spec.path])

    def _leaf_values(self, flat: dict[str, list]):
        """(path, normalised values) for every mapped leaf field of a flattened source (+ multi-fields)."""
        for path, raw_values in flat.items():
            spec = self.mapping.fields.get(path)
            if spec is None:
                continue
            yield path, normalise(spec, raw_values)
            for sub_path in self.mapping.multi_fields.get(path, ()):
                yield sub_path, normalise(self.mapping.fields[sub_path], raw_values)

    # --- read helpers used by the query executor ----------------------------------------------------
    def live(self) -> np.ndarray:
        """Bool mask over ordinals: the current version of every refreshed document."""
        if self._live_cache is None:
            self._live_cache = np.frombuffer(bytes(self.live_bytes), dtype=np.bool_).copy()
        return self._live_cache

    def ords_array(self, key: tuple, values: array) -> np.ndarray:
        cached = self._array_cache.get(key)
        if cached is None:
            cached = self._array_cache[key] = np.frombuffer(values, dtype=np.int64).copy() if len(values) else np.empty(0, np.int64)
        return cached

    def ords_mask(self, key: tuple, values: array, n: int) -> np.ndarray:
        """`ords_array` as a read-only boolean mask over `n` ordinals, cached the same way."""
        mask_key = (*key, "#mask", n)
        cached = self._array_cache.get(mask_key)
        if cached is None:
            cached = np.zeros(n, dtype=bool)
            cached[self.ords_array(key, values)] = True
            cached.flags.writeable = False
            self._array_cache[mask_key] = cached
        return cached

    def record(self, ordinal: int) -> dict:
        if self._log_fd is None:
            self._log_fd = os.open(self.log_path, os.O_RDONLY)
        return json.loads(os.pread(self._log_fd, self.lengths[ordinal], self.offsets[ordinal]))

    def source(self, ordinal: int, vector_paths=None) -> dict:
        """The stored `_source` of a document, vectors put back from the vector files
        (only those in `vector_paths` when given)."""
        record = self.record(ordinal)
        source = record["source"]
        for path in record.get("vectors", ()):
            if vector_paths is None or path in vector_paths:
                set_path(source, path, self.vector_fields[path].vector(ordinal, self.n_ords))
        return source

    def text_ordinals(self, searcher, hits) -> np.ndarray:
        if not hits:
            return np.empty(0, np.int64)
        return np.asarray(searcher.fast_field_values(ORD_FIELD, [addr for _, addr in hits]), dtype=np.int64)

    @staticmethod
    def lock_timeout_s() -> float:
        return WRITE_LOCK_TIMEOUT_S

    @staticmethod
    def snapshot_min_bytes() -> int:
        return SNAPSHOT_MIN_BYTES

    def manifest_on_disk(self) -> dict:
        return read_json(self.folder / "manifest.json")

    def close(self) -> None:
        """fsync what async durability left unsynced; release the writer lock and file handles."""
        self.sync()
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
        self.release_writer()
