"""Durable on-disk storage of one embedded index, in one folder.

    meta.json        settings + mappings (replaced atomically when dynamic mapping adds fields)
    manifest.json    the commit point: generation, committed log bytes and ordinals, text state
    docs.log         append-only JSON lines: index / delete records (sources without vectors)
    vectors/*.f32    append-only rows per knn_vector field (row = document ordinal; .i8 / .bits for
                     byte / binary fields)
    text/            tantivy index of the text fields (+ `_ord`)
    snapshot.npz     derived, optional: the in-memory state at some commit (no pickle), so that
                     opening a large index replays only the log written since
    write.lock       held (flock) by the one writer, only while it writes a bulk

One writer at a time, the lock held only while writing: a bulk takes `write.lock` (waiting up to
WRITE_LOCK_TIMEOUT_S for another process's bulk to finish), writes, and releases it with the
tantivy writer, so `cir serve` and `cir ingest` can take turns on one folder. Readers never take
the lock: they read the committed prefix named by the manifest.

A bulk appends to the log and vector files and fsyncs them, then atomically replaces the manifest
(the acknowledgement point), then commits tantivy and records that in the manifest again. A crash
before the manifest loses only that batch: the writer truncates the files to the manifest on
open. A crash after it is repaired by replaying the log into tantivy. Readers see exactly the
committed prefix of the log; tantivy hits past it are ignored.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EngineError
from . import data_types
from .analysis import build_analyzer
from .dates import to_millis
from .mapping import FieldSpec, Mapping
from .persist import Snapshots, atomic_write_json, dumps_compact, read_json
from .vectors import VectorField

ORD_FIELD = "_ord"
# Text is analysed in Python (analysis/); tantivy receives the tokens joined by this character and
# only splits them apart again.
TOKEN_SEPARATOR = "\x00"
WRITE_LOCK_TIMEOUT_S = 10.0
SNAPSHOT_MIN_BYTES = 16 * 2**20  # write a snapshot once the log grew this much (and by 25 %)


def tantivy_name(path: str) -> str:
    return path.replace(".", "__")


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


@dataclass
class Prepared:
    """One validated bulk operation, ready to be logged."""

    record: dict
    vectors: dict[str, np.ndarray]


class IndexStore(Snapshots):
    """One index folder: committed documents, columns for filters, vectors and the text index."""

    def __init__(self, folder: Path, *, settings: dict | None = None, mappings: dict | None = None):
        self.folder = Path(folder)
        self.name = self.folder.name
        if settings is not None:
            self._create(settings, mappings or {})
        if not (self.folder / "manifest.json").exists():
            raise EngineError(f"no such index [{self.name}]", 404, "index_not_found_exception")
        self._lock_fd: int | None = None
        self._log_fd: int | None = None
        self._text_writer = None
        self._load_meta()
        self._reset_state()
        self._load_snapshot()
        self.refresh()

    def _repair_after_crash(self) -> None:
        """A writer died between its manifest and its text commit: if no writer holds the lock now,
        replay the missing batches into the text index (what the next writer would do anyway)."""
        try:
            self._acquire_writer(timeout=0.0)
        except EngineError:
            return  # a live writer owns the index and repairs it
        self.close()

    # --- creation and metadata -------------------------------------------------------------------
    def _create(self, settings: dict, mappings: dict) -> None:
        mapping = Mapping(mappings, settings)  # validates before anything is written
        for spec in mapping.text_fields():
            build_analyzer(spec.params.get("analyzer", "standard"), settings)
        self.folder.mkdir(parents=True)
        (self.folder / "vectors").mkdir()
        (self.folder / "text").mkdir()
        (self.folder / "docs.log").touch()
        self.tantivy_fields = [spec.path for spec in mapping.text_fields()]
        self.settings, self.mapping, self.meta_version = settings, mapping, 0
        atomic_write_json(self.folder / "meta.json", self._meta_body())
        self._open_text_index(mapping, create=True)
        atomic_write_json(self.folder / "manifest.json", self._manifest_body(0, 0, 0, 0, {"generation": 0, "log_bytes": 0, "n_ords": 0}))

    @staticmethod
    def _manifest_body(generation, log_bytes, n_ords, meta_version, text_state) -> dict:
        return {"generation": generation, "log_bytes": log_bytes, "n_ords": n_ords, "meta_version": meta_version, "text": text_state}

    def _meta_body(self) -> dict:
        return {"settings": self.settings, "mappings": self.mapping.raw, "version": self.meta_version, "tantivy_text_fields": self.tantivy_fields}

    def _load_meta(self) -> None:
        meta = read_json(self.folder / "meta.json")
        self.settings = meta["settings"]
        self.mapping = Mapping(meta["mappings"], self.settings)
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

    def update_meta(self, *, mappings: dict | None = None, settings: dict | None = None) -> None:
        """put_mapping / put_settings: merge into the index metadata and publish it (new text
        fields are indexed in columns; a new knn_vector field needs an empty index)."""
        self._acquire_writer()
        mapping = Mapping(copy.deepcopy(self.mapping.raw), self.settings)
        if mappings:
            mapping.merge(mappings)
            added = {spec.path for spec in mapping.vector_fields()} - set(self.vector_fields)
            if added and self.n_ords:
                raise EngineError(f"knn_vector field(s) {sorted(added)} can only be added to an empty index (embedded engine)", 400, "illegal_argument_exception")
            for spec in mapping.text_fields():
                build_analyzer(spec.params.get("analyzer", "standard"), self.settings)
        self.mapping = mapping
        if settings:
            self.settings = {**self.settings, **settings}
        self.meta_version += 1
        atomic_write_json(self.folder / "meta.json", self._meta_body())
        self.manifest["meta_version"] = self.meta_version
        self._write_manifest(text_committed=False)
        self._load_meta()
        for path, column in self.columns.items():
            column.spec = self.mapping.fields[path]

    def _open_text_index(self, mapping: Mapping, *, create: bool) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_unsigned_field(ORD_FIELD, stored=False, indexed=True, fast=True)
        specs = [mapping.fields[path] for path in self.tantivy_fields]
        for spec in specs:
            builder.add_text_field(tantivy_name(spec.path), tokenizer_name=spec.params.get("analyzer", "standard"), index_option="freq")
        schema = builder.build()
        index = tantivy.Index(schema, path=str(self.folder / "text"), reuse=not create)
        splitter = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(f"[^{TOKEN_SEPARATOR}]+")).build()
        for spec in specs:
            index.register_tokenizer(spec.params.get("analyzer", "standard"), splitter)
        self.text_schema, self.text_index = schema, index

    # --- the committed state, as a reader sees it ---------------------------------------------------
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

    def refresh(self) -> bool:
        """Catch up with the latest commit (cheap when nothing changed). True when the view moved.

        The view is the longest prefix of the log whose text is committed too: while a live writer
        is between its manifest and its text commit, readers keep the previous batch boundary, so
        text, filters and vectors always agree. A lag left by a dead writer is repaired here.
        """
        manifest = read_json(self.folder / "manifest.json")
        if manifest is None:
            raise EngineError(f"no such index [{self.name}]", 404, "index_not_found_exception")
        if manifest["text"]["generation"] != manifest["generation"] and self._lock_fd is None:
            self._repair_after_crash()
            manifest = read_json(self.folder / "manifest.json")
        self.manifest = manifest
        view = manifest if manifest["text"]["generation"] == manifest["generation"] else manifest["text"]
        if view["generation"] == self.generation:
            return False
        if manifest["meta_version"] != self.meta_version:
            self._load_meta()  # dynamic mapping added fields: only later records can use them
            for path, column in self.columns.items():
                column.spec = self.mapping.fields[path]
        self._replay(self.log_pos, view["log_bytes"])
        self.generation = view["generation"]
        self._live_cache = None
        self._array_cache = {}
        self.text_index.reload()
        return True

    def _replay(self, start: int, end: int) -> None:
        if end <= start:
            return
        with open(self.folder / "docs.log", "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        offset = start
        for line in data.splitlines(keepends=True):
            self._apply(json.loads(line), offset, len(line))
            offset += len(line)
        self.log_pos = end

    def _apply(self, record: dict, offset: int, length: int) -> None:
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
        for path, values in self._leaf_values(record["source"]):
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

    def _leaf_values(self, source: dict):
        """(path, normalised values) for every mapped leaf field in a source document (+ multi-fields)."""
        for path, raw_values in flatten_source(source).items():
            spec = self.mapping.fields.get(path)
            if spec is None:
                continue
            yield path, self._normalise(spec, raw_values)
            for sub_path in self.mapping.multi_fields.get(path, ()):
                yield sub_path, self._normalise(self.mapping.fields[sub_path], raw_values)

    @staticmethod
    def _normalise(spec: FieldSpec, values: list) -> list:
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

    # --- read helpers used by the query executor ----------------------------------------------------
    def live(self) -> np.ndarray:
        """Bool mask over ordinals: the current version of every committed document."""
        if self._live_cache is None:
            self._live_cache = np.frombuffer(bytes(self.live_bytes), dtype=np.bool_).copy()
        return self._live_cache

    def ords_array(self, key: tuple, values: array) -> np.ndarray:
        cached = self._array_cache.get(key)
        if cached is None:
            cached = self._array_cache[key] = np.frombuffer(values, dtype=np.int64).copy() if len(values) else np.empty(0, np.int64)
        return cached

    def record(self, ordinal: int) -> dict:
        if self._log_fd is None:
            self._log_fd = os.open(self.folder / "docs.log", os.O_RDONLY)
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

    # --- writing -----------------------------------------------------------------------------------
    def _acquire_writer(self, timeout: float | None = None) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.folder / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + (WRITE_LOCK_TIMEOUT_S if timeout is None else timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EngineError(
                        f"index [{self.name}] is being written by another process", 409, "lock_obtain_failed_exception"
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd
        self.refresh()
        self._recover()

    def _recover(self) -> None:
        """Make the files match the manifest: truncate uncommitted bytes, bring tantivy up to date."""
        manifest = self.manifest
        with open(self.folder / "docs.log", "r+b") as f:
            if os.fstat(f.fileno()).st_size > manifest["log_bytes"]:
                f.truncate(manifest["log_bytes"])
                os.fsync(f.fileno())
        for field in self.vector_fields.values():
            field.truncate(manifest["n_ords"])
        text = manifest["text"]
        if text["generation"] != manifest["generation"]:
            self._replay_text(text["log_bytes"], text["n_ords"])

    def _text_writer_handle(self):
        if self._text_writer is None:
            self._text_writer = self.text_index.writer(heap_size=64_000_000, num_threads=1)
        return self._text_writer

    def _replay_text(self, log_start: int, n_ords_start: int) -> None:
        import tantivy

        writer = self._text_writer_handle()
        writer.delete_documents_by_query(
            tantivy.Query.range_query(self.text_schema, ORD_FIELD, tantivy.FieldType.Unsigned, lower_bound=n_ords_start)
        )
        with open(self.folder / "docs.log", "rb") as f:
            f.seek(log_start)
            data = f.read(self.manifest["log_bytes"] - log_start)
        self._index_text(writer, [json.loads(line) for line in data.splitlines()])
        writer.commit()
        self._write_manifest(text_committed=True)
        self.refresh()

    def _index_text(self, writer, records: list[dict]) -> None:
        """Apply log records to the text index, in order (a delete only hits earlier additions)."""
        for record in records:
            if record["replaced"] is not None:
                writer.delete_documents_by_term(ORD_FIELD, record["replaced"])
            if record["op"] == "index":
                doc = self._text_document(record["ord"], record["source"])
                if doc is not None:
                    writer.add_document(doc)

    def _text_document(self, ordinal: int, source: dict):
        """The tantivy document of a source, or None when no text field has a token: such documents
        stay out of the text index so that its document count is Lucene's per-field `docCount`
        (exact for indices with one text field, like the CIR template)."""
        import tantivy

        doc = tantivy.Document()
        doc.add_unsigned(ORD_FIELD, ordinal)
        flat = flatten_source(source)
        has_tokens = False
        for spec in (self.mapping.fields[path] for path in self.tantivy_fields):
            for value in self._normalise(spec, flat.get(spec.path, [])):
                tokens = [t.replace(TOKEN_SEPARATOR, "") for t in self.analyzers[spec.path](value)]
                if any(tokens):
                    doc.add_text(tantivy_name(spec.path), TOKEN_SEPARATOR.join(tokens))
                    has_tokens = True
        return doc if has_tokens else None

    def prepare(self, op: str, doc_id: str, source: dict | None, batch: dict[str, tuple], next_ord: int) -> Prepared:
        """Validate one operation against the mapping (adding dynamic fields) and build its log record.

        `batch` maps ids already in this batch to (ordinal or None if deleted, version).
        """
        previous, version = batch.get(doc_id, (self.id_to_ord.get(doc_id), self.id_version.get(doc_id, 0)))
        version += 1
        if op == "delete":
            return Prepared({"op": "delete", "id": doc_id, "version": version, "replaced": previous}, {})
        if not isinstance(source, dict):
            raise EngineError("the document source must be a JSON object", 400, "mapper_parsing_exception")
        # a private copy (vectors popped before the JSON round trip that keeps only JSON values)
        source = copy.deepcopy(source) if any("." in path for path in self.vector_fields) else dict(source)
        vectors = {}
        for path, field in self.vector_fields.items():
            value = pop_path(source, path)
            if value is None:
                continue
            vector = data_types.parse(value, field.data_type, field.dim)
            if field.space == "cosinesimil" and field.spec.params.get("method", {}).get("engine") == "lucene" and not vector.any():
                raise EngineError("zero vector is not supported when space type is [cosinesimil]", 400, "mapper_parsing_exception")
            vectors[path] = vector
        try:
            source = json.loads(json.dumps(source, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise EngineError(f"the document is not valid JSON: {exc}", 400, "mapper_parsing_exception") from None
        self._map_dynamic(source, "")
        for path, values in flatten_source(source).items():
            spec = self.mapping.fields.get(path)
            if spec is not None:
                self._normalise(spec, values)  # raises mapper_parsing_exception on bad values
        record = {
            "op": "index",
            "id": doc_id,
            "ord": next_ord,
            "version": version,
            "replaced": previous,
            "source": source,
            "vectors": sorted(vectors),
        }
        return Prepared(record, vectors)

    def _map_dynamic(self, node: dict, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    if path in self.mapping.fields:
                        raise EngineError(f"field [{path}] is not an object", 400, "mapper_parsing_exception")
                    if path not in self.mapping.objects and not self.mapping.map_new_object(path):
                        continue
                    self._map_dynamic(item, path + ".")
                elif item is not None and path not in self.mapping.fields and path not in self.mapping.objects:
                    self.mapping.map_new_field(path, item)

    def commit(self, prepared: list[Prepared]) -> None:
        """Durably append a batch; returns once it is acknowledged (manifest replaced)."""
        if not prepared:
            return
        self._acquire_writer()
        lines = [(dumps_compact(p.record) + "\n").encode("utf-8") for p in prepared]
        with open(self.folder / "docs.log", "ab") as f:
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        added = [p for p in prepared if p.record["op"] == "index"]
        for path, field in self.vector_fields.items():
            if added:
                rows = np.zeros((len(added), field.width), dtype=np.float32)
                for i, p in enumerate(added):
                    if path in p.vectors:
                        rows[i] = p.vectors[path]
                field.append(rows)
        if self.mapping.raw != read_json(self.folder / "meta.json")["mappings"]:
            self.meta_version += 1
            atomic_write_json(self.folder / "meta.json", self._meta_body())
        text_before = dict(self.manifest["text"])
        new_log_bytes = self.manifest["log_bytes"] + sum(len(line) for line in lines)
        new_n_ords = self.manifest["n_ords"] + len(added)
        self.manifest = self._manifest_body(self.manifest["generation"] + 1, new_log_bytes, new_n_ords, self.meta_version, text_before)
        atomic_write_json(self.folder / "manifest.json", self.manifest)  # <- acknowledged
        writer = self._text_writer_handle()
        self._index_text(writer, [p.record for p in prepared])
        writer.commit()
        self._write_manifest(text_committed=True)
        self.refresh()
        if self.log_pos - self._snapshot_log_pos >= max(SNAPSHOT_MIN_BYTES, self._snapshot_log_pos // 4):
            self._save_snapshot()

    def manifest_on_disk(self) -> dict:
        return read_json(self.folder / "manifest.json")

    def _write_manifest(self, *, text_committed: bool) -> None:
        m = self.manifest
        if text_committed:
            m["text"] = {"generation": m["generation"], "log_bytes": m["log_bytes"], "n_ords": m["n_ords"]}
        atomic_write_json(self.folder / "manifest.json", m)

    def close(self) -> None:
        """Release the writer lock and file handles (the index stays consistent without it)."""
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
        self.release_writer()

    def release_writer(self) -> None:
        """Give up the writer role: the tantivy writer (which holds tantivy's own lock) and `write.lock`."""
        if self._text_writer is not None:
            self._text_writer.wait_merging_threads()
            self._text_writer = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


# --- source helpers ----------------------------------------------------------------------------
def flatten_source(source: dict, prefix: str = "") -> dict[str, list]:
    """{dotted path: [leaf values]} for a JSON document (arrays flattened, objects in arrays too)."""
    out: dict[str, list] = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for item in value:
                walk(item, path)
        else:
            out.setdefault(path, []).append(value)

    walk(source, prefix)
    return out


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
