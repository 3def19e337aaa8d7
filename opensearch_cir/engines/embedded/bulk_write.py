"""One index's share of a bulk request: validated once for the whole batch (every source in one
pass, each knn_vector field as one array), then logged in one acknowledged append (`writes.py`).

Item results follow OpenSearch's order of checks: the id, a `create` on an existing id (409), a
`delete` of a missing one (404), then the source against the mapping (400, `mapper_parsing_exception`).
A source whose top-level fields are all strings of mapped text/keyword fields (plus vectors) is
written as JSON by joining its strings, checked once per batch for escapes and lone surrogates;
any other goes through the JSON encoder, dynamic mapping and per-type parsing.
"""

from __future__ import annotations

import copy
import json
import re
import struct
import uuid

import numpy as np

from ...errors import EngineError
from . import data_types
from .documents import flatten_source, normalise, pop_path
from .persist import dumps_compact
from .requests import id_problem, item_error, printable, shards

_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # what JSON (ensure_ascii=False) escapes in a string


def write_bulk(store, index: str, actions: list, positions: list[int], items: list) -> None:
    """Apply `actions` (op, metadata, source) to `store` (write lock held), filling `items`."""
    entries = []
    for (op, meta, source), pos in zip(actions, positions):
        doc_id = meta.get("_id")
        if doc_id is None:
            if op == "delete":
                items[pos] = item_error(op, index, None, 400, "action_request_validation_exception", "id is missing")
                continue
            doc_id = uuid.uuid4().hex[:20]
        doc_id = str(doc_id)
        problem = id_problem(doc_id)
        if problem is not None:
            items[pos] = item_error(op, index, printable(doc_id), 400, *problem)
            continue
        entries.append((pos, op, doc_id, source))
    plain_ids = not _ESCAPED.search("".join(doc_id for _, _, doc_id, _ in entries))  # ids JSON writes as they are
    checker = SourceChecker(store)
    checked, vector_rows = checker.check_all([source for _, op, _, source in entries if op != "delete"])
    batch: dict[str, tuple[int | None, int]] = {}
    pending, id_to_ord, id_version = store.pending, store.id_to_ord, store.id_version
    lines: list[str] = []
    rows_used: list[int] = []
    written: list[tuple[int, dict]] = []  # item results, valid once the batch is acknowledged
    next_ord = store.log_n_ords
    vector_lists: dict[tuple, str] = {}
    k = -1
    for pos, op, doc_id, _source in entries:
        if op != "delete":
            k += 1
        state = batch.get(doc_id) or pending.get(doc_id)
        current, version = state if state is not None else (id_to_ord.get(doc_id), id_version.get(doc_id, 0))
        if op == "create" and current is not None:
            items[pos] = item_error(op, index, doc_id, 409, "version_conflict_engine_exception",
                                    f"[{doc_id}]: version conflict, document already exists (current version [{version}])")
            continue
        if op == "delete":
            if current is None:
                items[pos] = {op: {"_index": index, "_id": doc_id, "_version": version + 1, "result": "not_found", "status": 404, "_shards": shards()}}
                continue
            version += 1
            lines.append(dumps_compact({"op": "delete", "id": doc_id, "version": version, "replaced": current}) + "\n")
            batch[doc_id] = (None, version)
        else:
            result = checked[k]
            if isinstance(result, EngineError):
                items[pos] = item_error(op, index, doc_id, result.status, result.error_type, str(result))
                continue
            source_json, vectors = result
            if vectors not in vector_lists:
                vector_lists[vectors] = dumps_compact(list(vectors))
            id_json = f'"{doc_id}"' if plain_ids else dumps_compact(doc_id)
            lines.append(f'{{"op":"index","id":{id_json},"ord":{next_ord},"version":{version + 1},'
                         f'"replaced":{"null" if current is None else current},"source":{source_json},"vectors":{vector_lists[vectors]}}}\n')
            version += 1
            batch[doc_id] = (next_ord, version)
            rows_used.append(k)
            next_ord += 1
        if op == "delete":
            outcome, status = "deleted", 200
        else:
            outcome, status = ("updated", 200) if current is not None else ("created", 201)
        written.append((pos, {op: {"_index": index, "_id": doc_id, "_version": version, "result": outcome, "_shards": shards(), "status": status}}))
    if lines:
        rows = {path: matrix if len(rows_used) == len(matrix) else matrix[rows_used] for path, matrix in vector_rows.items()}
        store.append_batch("".join(lines).encode("utf-8"), rows, len(rows_used), batch)  # ids and sources are UTF-8: checked
    for pos, item in written:
        items[pos] = item


class SourceChecker:
    """Validates the sources of one batch against the index's mapping (adding dynamic fields)."""

    def __init__(self, store):
        self.store = store
        self.mapping = store.mapping
        self.vector_fields = store.vector_fields
        self.vector_paths = sorted(self.vector_fields)
        self.nested_vectors = any("." in path for path in self.vector_fields)
        self.string_fields = {path for path, spec in self.mapping.fields.items()
                              if spec.type in ("text", "keyword") and "." not in path and not _ESCAPED.search(path)}

    def check_all(self, sources: list) -> tuple[list, dict[str, np.ndarray]]:
        """([(source JSON without vectors, vector paths) or EngineError per source], {vector field: rows}).
        Text that is not UTF-8 (a lone surrogate) fails its source; the batch is checked at once."""
        values = {path: [None] * len(sources) for path in self.vector_fields}
        results: list = []
        strings: list[str] = []  # the strings of the sources written by `_plain`
        spans: list[tuple[int, int, int]] = []  # (source, first string, end)
        for i, source in enumerate(sources):
            try:
                first = len(strings)
                results.append(self._check(source, i, values, strings))
                if len(strings) > first:
                    spans.append((i, first, len(strings)))
            except EngineError as exc:
                results.append(exc)
        if _ESCAPED.search("".join(strings)):  # some need escapes: those are written by json
            for i, first, end in spans:
                if any(_ESCAPED.search(text) for text in strings[first:end]):
                    results[i] = (dumps_compact(sources_without(sources[i], self.vector_fields)), results[i][1])
        _refuse_non_utf8(results)
        matrices = {}
        for path, field in self.vector_fields.items():
            matrices[path], errors = vector_rows(field, path, values[path])
            for i, error in errors.items():
                results[i] = error
        return results, matrices

    def _check(self, source, i: int, vectors: dict[str, list], strings: list[str]) -> tuple[str, tuple[str, ...]]:
        if not isinstance(source, dict):
            raise EngineError("the document source must be a JSON object", 400, "mapper_parsing_exception")
        if not self.nested_vectors:
            plain = self._plain(source, i, vectors, strings)
            if plain is not None:
                return plain
            found = [(path, source[path]) for path in self.vector_paths if path in source]
            if found:
                source = sources_without(source, self.vector_fields)
        else:
            source = copy.deepcopy(source)
            found = [(path, pop_path(source, path)) for path in self.vector_paths]
        paths = []
        for path, value in found:
            if value is not None:
                vectors[path][i] = value
                paths.append(path)
        try:
            source = json.loads(json.dumps(source, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise EngineError(f"the document is not valid JSON: {exc}", 400, "mapper_parsing_exception") from None
        self.store.mapping_may_grow = True
        map_dynamic(self.mapping, source, "")
        for path, leaf_values in flatten_source(source).items():
            spec = self.mapping.fields.get(path)
            if spec is not None:
                normalise(spec, leaf_values)  # raises mapper_parsing_exception on bad values
        return dumps_compact(source), tuple(paths)

    def _plain(self, source: dict, i: int, vectors: dict[str, list], strings: list[str]) -> tuple[str, tuple[str, ...]] | None:
        """(JSON of the source without its vectors, vector paths) when every other field is a
        string (or a list of strings) of a mapped top-level text/keyword field: written as
        `dumps_compact` would on the assumption that no string needs an escape (`check_all` checks
        that for the whole batch), its vectors taken aside. None for any other source, which goes
        through dynamic mapping and parsing."""
        parts = []
        paths = []
        first = len(strings)
        vector_fields, string_fields = self.vector_fields, self.string_fields
        for key, value in source.items():
            if key in vector_fields:
                if value is None:
                    parts.append(f'"{key}":null')
                else:
                    vectors[key][i] = value
                    paths.append(key)
                continue
            if type(key) is not str or key not in string_fields:
                break
            if type(value) is str:
                parts.append(f'"{key}":"{value}"')
                strings.append(value)
            elif type(value) is list and all(type(item) is str for item in value):
                parts.append(f'"{key}":[' + ",".join(f'"{item}"' for item in value) + "]")
                strings.extend(value)
            else:
                break
        else:
            if len(paths) > 1:
                paths.sort()
            return "{" + ",".join(parts) + "}", tuple(paths)
        del strings[first:]
        return None


def sources_without(source: dict, vector_fields) -> dict:
    """A top-level source without its vector values (their rows are stored apart); a null vector
    stays in the source, which OpenSearch returns as it was sent."""
    return {key: value for key, value in source.items() if value is None or key not in vector_fields}


def _refuse_non_utf8(results: list) -> None:
    """Replace the results whose source JSON cannot be written as UTF-8 (lone surrogates) by errors."""
    texts = [result[0] for result in results if type(result) is tuple]
    try:
        "".join(texts).encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    for i, result in enumerate(results):
        if type(result) is tuple:
            try:
                result[0].encode("utf-8")
            except UnicodeEncodeError as exc:
                results[i] = EngineError(f"failed to parse: invalid UTF-8 text ({exc.reason} {exc.object[exc.start:exc.end]!a})",
                                         400, "mapper_parsing_exception")


def vector_rows(field, path: str, values: list) -> tuple[np.ndarray, dict[int, EngineError]]:
    """([len(values), width] float32 rows, zeros where a source has no vector; {source: error}).
    Float vectors of the right shape are checked as one block; anything else (and byte / binary
    fields) value by value with `data_types.parse`, which gives k-NN's message for each."""
    present = [i for i, value in enumerate(values) if value is not None]
    errors: dict[int, EngineError] = {}
    if not present:
        return np.zeros((len(values), field.width), dtype=np.float32), errors
    given = [values[i] for i in present]
    shape = (field.dim,)
    regular = False
    if field.data_type == "float":
        try:
            if all(type(value) is np.ndarray and value.shape == shape for value in given):
                block = np.concatenate(given).reshape(len(given), field.dim).astype(np.float32, copy=False)
                regular = True
            elif all(type(value) is list for value in given) and (block := _number_lists(given, field.dim)) is not None:
                regular = True
            else:
                block = np.asarray(given, dtype=np.float32)
                regular = block.shape == (len(present), field.dim) and all(isinstance(value, (list, np.ndarray)) for value in given)
        except (TypeError, ValueError):
            pass
        if regular:
            for j in np.flatnonzero(~np.isfinite(block).all(axis=1)):
                block[j] = 0.0
                errors[present[j]] = _parse_error(given[j], field, path)
    if not regular:
        block = np.zeros((len(present), field.width), dtype=np.float32)
        for j, value in enumerate(given):
            try:
                block[j] = data_types.parse(value.tolist() if isinstance(value, np.ndarray) else value, field.data_type, field.dim)
            except EngineError as exc:
                errors[present[j]] = exc
    if field.space == "cosinesimil" and field.spec.params.get("method", {}).get("engine") == "lucene":
        zero = EngineError("zero vector is not supported when space type is [cosinesimil]", 400, "mapper_parsing_exception")
        for j in np.flatnonzero(~block.any(axis=1)):
            errors.setdefault(present[j], zero)
    if len(present) == len(values):
        return block, errors
    rows = np.zeros((len(values), field.width), dtype=np.float32)
    rows[present] = block
    return rows, errors


def _number_lists(values: list[list], dim: int) -> np.ndarray | None:
    """[len(values), dim] float32 rows from lists of `dim` numbers each (a JSON body's vectors),
    packed as doubles by `struct` (2-3x faster than numpy reading the lists); None when any list
    is not that (numpy and `data_types.parse` then decide, with k-NN's message)."""
    packer = struct.Struct(f"{dim}d")
    try:
        packed = b"".join([packer.pack(*value) for value in values])
    except Exception:  # struct.error: a length or an item that is not a number
        return None
    with np.errstate(over="ignore"):  # out of float32's range: infinity, refused by the finiteness check
        return np.frombuffer(packed, dtype=np.float64).reshape(len(values), dim).astype(np.float32)


def _parse_error(value, field, path: str) -> EngineError:
    """k-NN's message for a float vector the block check refused (NaN or infinity)."""
    try:
        data_types.parse(value.tolist() if isinstance(value, np.ndarray) else value, field.data_type, field.dim)
    except EngineError as exc:
        return exc
    return EngineError(f"[{path}]: KNN vector values must be finite", 400, "mapper_parsing_exception")


def map_dynamic(mapping, node: dict, prefix: str) -> None:
    """Map the new fields of a source (OpenSearch's dynamic mapping); objects where leaves are mapped are refused."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                if path in mapping.fields:
                    raise EngineError(f"field [{path}] is not an object", 400, "mapper_parsing_exception")
                if path not in mapping.objects and not mapping.map_new_object(path):
                    continue
                map_dynamic(mapping, item, path + ".")
            elif item is not None and path not in mapping.fields and path not in mapping.objects:
                mapping.map_new_field(path, item)
