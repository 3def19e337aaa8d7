"""Request parsing and response shaping shared by the embedded client's APIs: `_source`
filtering, bulk bodies, index names, parameters, totals."""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from typing import Iterable

import numpy as np

from ...errors import CIRError, EngineError, UnsupportedQueryError

# What a malformed request can raise inside the engine: answered as a 400, never a raw exception.
_REQUEST_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError)


def guard_requests(cls):
    """Class decorator: every public method turns an unexpected parsing error into EngineError 400
    (`parsing_exception`), as a cluster answers a malformed request."""

    def wrap(method):
        @functools.wraps(method)
        def guarded(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except CIRError:
                raise
            except _REQUEST_ERRORS as exc:
                raise EngineError(f"failed to parse the request: {type(exc).__name__}: {exc}", 400, "parsing_exception") from exc

        return guarded

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, wrap(member))
    return cls

# MetadataCreateIndexService.validateIndexOrAliasName: any (unicode) name without these characters
_INDEX_NAME_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:]')

def shards() -> dict:
    return {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


def nested_probe(path: str) -> dict:
    """{"a": {"b": 0}} for "a.b": a probe document for _source filtering."""
    node: dict = {}
    root = node
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = 0
    return root


def plain_explanation(clause: str | None, score: float) -> dict:
    return {"value": score, "description": f"score of [{clause}] query (embedded engine)", "details": []}


def param_value(value):
    if isinstance(value, str):
        if value in ("true", "false"):
            return value == "true"
        if value.lstrip("-").isdigit():
            return int(value)
    return value


def source_spec(params: dict):
    """The `_source` filter of request parameters (`_source`, `_source_includes`, `_source_excludes`)."""
    includes, excludes = as_list(params.get("_source_includes")), as_list(params.get("_source_excludes"))
    source = param_value(params.get("_source", True))
    if includes or excludes:
        if source is False:
            return False
        if isinstance(source, (str, list)):
            includes = includes or as_list(source)
        return {"includes": includes, "excludes": excludes}
    return source


def as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return list(value)


def total_hits(total: int | None, track) -> dict | None:
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
        includes, excludes = as_list(spec), []
    elif isinstance(spec, dict):
        unknown = set(spec) - {"includes", "excludes", "include", "exclude"}
        if unknown:
            raise EngineError(f"unknown _source key(s) {sorted(unknown)}", 400, "parsing_exception")
        includes = as_list(spec.get("includes", spec.get("include")))
        excludes = as_list(spec.get("excludes", spec.get("exclude")))
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


def nested_settings(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        if key.startswith("index.analysis"):
            parts = ["index", "analysis"]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value if isinstance(value, dict) else json.dumps(value) if isinstance(value, bool) else str(value)
    return out


def validate_index_name(index) -> None:
    """OpenSearch's index name rules (MetadataCreateIndexService.validateIndexOrAliasName)."""
    def invalid(why: str) -> EngineError:
        return EngineError(f"Invalid index name [{index}], {why}", 400, "invalid_index_name_exception")

    if not isinstance(index, str) or not index:
        raise invalid("must not be empty")
    if _INDEX_NAME_FORBIDDEN.search(index):
        raise invalid('must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]')
    if index[0] in "_-+":
        raise invalid("must not start with '_', '-', or '+'")
    if index != index.lower():
        raise invalid("must be lowercase")
    if index in (".", ".."):
        raise invalid("must not be '.' or '..'")
    if len(index.encode("utf-8")) > 255:
        raise invalid(f"index name is too long, ({len(index.encode('utf-8'))} > 255)")


def item_error(op: str, index: str | None, doc_id, status: int, error_type: str, reason: str) -> dict:
    return {op: {"_index": index, "_id": doc_id, "status": status, "error": {"type": error_type, "reason": reason}}}


_BULK_META_KEYS = frozenset({"_index", "_id", "routing", "pipeline"})


def parse_bulk(body) -> Iterable[tuple[str, dict, dict | None]]:
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
        meta = meta or {}
        if not isinstance(meta, dict) or "op_type" in meta:
            meta = dict(meta)  # a copy: the caller's metadata is only read
            if op == "index" and str(meta.pop("op_type", "index")) == "create":
                op = "create"
        if not _BULK_META_KEYS.issuperset(meta) or meta.get("pipeline"):
            unknown = set(meta) - _BULK_META_KEYS
            raise UnsupportedQueryError(f"bulk metadata {sorted(unknown | ({'pipeline'} if meta.get('pipeline') else set()))} not supported by the embedded engine")
        if op == "delete":
            yield op, meta, None
            i += 1
        else:
            if i + 1 >= len(lines):
                raise EngineError(f"bulk action [{op}] on line [{i + 1}] has no document", 400, "illegal_argument_exception")
            yield op, meta, lines[i + 1]
            i += 2


MAX_ID_BYTES = 512


def id_problem(doc_id: str) -> tuple[str, str] | None:
    """(error type, reason) when a document id fails OpenSearch's checks (rest-api-spec bulk/10_basic.yml
    "Empty _id", IndexRequest.validate: at most 512 UTF-8 bytes), or it is not valid Unicode text."""
    if not doc_id:
        return "illegal_argument_exception", "if _id is specified it must not be empty"
    try:
        size = len(doc_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "action_request_validation_exception", f"id [{printable(doc_id)}] is not valid Unicode text"
    if size > MAX_ID_BYTES:
        return ("action_request_validation_exception",
                f"Validation Failed: 1: id [{doc_id[:64]}...] is too long, must be no longer than 512 bytes but was: {size};")
    return None


def int_param(value, name: str) -> int:
    """An integer request parameter (as OpenSearch, "10" is accepted); 400 otherwise."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise EngineError(f"failed to parse [{name}]: {value!r} is not an integer", 400, "illegal_argument_exception") from None


def check_query_vectors(query) -> None:
    """k-NN refuses a query vector with NaN or Infinity (instead of silently matching nothing)."""
    if isinstance(query, dict):
        for key, value in query.items():
            if key == "vector" and isinstance(value, list):
                try:
                    finite = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
                except (TypeError, ValueError):
                    continue  # not numbers: the knn clause reports it
                if not finite:
                    raise EngineError("[knn] query vector values cannot be NaN or Infinity", 400, "illegal_argument_exception")
            else:
                check_query_vectors(value)
    elif isinstance(query, list):
        for item in query:
            check_query_vectors(item)


def printable(text: str) -> str:
    """`text` with lone surrogates escaped, safe to encode as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def refresh_param(value) -> bool:
    """The `refresh` parameter of a write: True for `true`, `wait_for` and the empty string."""
    if value is None or value is False or value == "false":
        return False
    if value is True or value in ("true", "", "wait_for"):
        return True
    raise EngineError(f"Unknown value for refresh: [{value}].", 400, "illegal_argument_exception")
