"""Index mappings and settings for the embedded engine, read from the same JSON as OpenSearch's.

`resolve_index_body` applies a matching composable index template like OpenSearch does;
`Mapping` flattens `properties` into leaf fields, applies dynamic mapping to unseen fields, and
builds the tantivy analyzer for each text field from the index's `analysis` settings.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ...errors import EngineError, UnsupportedQueryError
from .dates import check_format, looks_like_date

NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
COMPRESSION_LEVELS = ("1x", "2x", "4x", "8x", "16x", "32x")  # quantize.LEVELS (64x is Lucene-only)
LEAF_TYPES = NUMERIC_TYPES | {"keyword", "text", "boolean", "knn_vector", "date"}
# Types whose values live in the numeric column (dates as epoch milliseconds).
COLUMN_NUMBER_TYPES = NUMERIC_TYPES | {"date"}
KNN_SPACE_TYPES = {"l2", "cosinesimil", "innerproduct", "hamming"}
KNN_DATA_TYPES = ("binary", "byte", "float")  # k-NN VectorDataType (SUPPORTED_VECTOR_DATA_TYPES order)
MAX_KNN_DIMENSION = 16_000


def flatten_settings(settings: dict | None, prefix: str = "") -> dict[str, Any]:
    """Nested or dotted settings -> flat dotted keys, every key starting with `index.` (as OpenSearch stores them)."""
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.startswith("index.analysis") and key != "analysis":
            flat.update(flatten_settings(value, name + "."))
        else:
            flat[name] = value
    if prefix:
        return flat
    return {(k if k.startswith("index.") else f"index.{k}"): v for k, v in flat.items()}


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_index_body(index: str, body: dict | None, templates: dict[str, dict]) -> tuple[dict, dict]:
    """(settings, mappings) for a new index: the highest-priority template whose `index_patterns`
    match, merged with the create body (the body wins), as OpenSearch composable templates do."""
    body = body or {}
    unknown = set(body) - {"settings", "mappings", "aliases"}
    if unknown:
        raise EngineError(f"unknown key(s) {sorted(unknown)} in index creation body", 400, "parse_exception")
    matching = [
        t for t in templates.values() if any(fnmatch.fnmatchcase(index, p) for p in _as_list(t.get("index_patterns")))
    ]
    template = max(matching, key=lambda t: t.get("priority", 0))["template"] if matching else {}
    if template.get("aliases"):
        raise UnsupportedQueryError("aliases in index templates are not supported by the embedded engine")
    settings = _merge(flatten_settings(template.get("settings")), flatten_settings(body.get("settings")))
    mappings = _merge(template.get("mappings", {}), body.get("mappings", {}))
    return settings, mappings


def _expand_dots(properties: dict) -> dict:
    """{"a.b": spec} -> {"a": {"properties": {"b": spec}}}; an empty name is a 400."""
    out: dict = {}
    for name, spec in properties.items():
        if not name or any(not part for part in name.split(".")):
            raise EngineError(f"field name cannot be an empty string (in [{name}])", 400, "illegal_argument_exception")
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}}).setdefault("properties", {})
        node[parts[-1]] = spec
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class FieldSpec:
    """One indexed leaf field: its dotted path, OpenSearch type and mapping parameters."""

    path: str
    type: str
    params: dict = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        return int(self.params["dimension"])

    @property
    def data_type(self) -> str:
        return self.params.get("data_type", "float")

    @property
    def space_type(self) -> str:
        """The mapped space type, else k-NN's default for the data type (SpaceType.DEFAULT / DEFAULT_BINARY)."""
        mapped = self.params.get("space_type") or self.params.get("method", {}).get("space_type")
        return mapped or ("hamming" if self.data_type == "binary" else "l2")


class Mapping:
    """The mapping of one index: leaf fields by dotted path, dynamic rules, and analyzers."""

    def __init__(self, mappings: dict, settings: dict):
        self.raw = copy.deepcopy(mappings)
        self.settings = settings
        self.fields: dict[str, FieldSpec] = {}
        self.multi_fields: dict[str, list[str]] = {}
        self.objects: dict[str, dict] = {"": self.raw}
        unsupported = set(self.raw) - {"properties", "dynamic", "dynamic_templates", "_meta", "_source", "date_detection"}
        if unsupported:
            raise UnsupportedQueryError(f"mapping parameter(s) {sorted(unsupported)} are not supported by the embedded engine")
        if self.raw.get("_source") not in (None, {"enabled": True}):
            raise UnsupportedQueryError("mappings._source options are not supported by the embedded engine")
        self._collect(self.raw.get("properties", {}), "")

    def _collect(self, properties: dict, prefix: str) -> None:
        for name, spec in properties.items():
            path = f"{prefix}{name}"
            kind = spec.get("type", "object" if "properties" in spec else None)
            if kind == "object":
                self.objects[path] = spec
                self._collect(spec.get("properties", {}), path + ".")
                continue
            self._add_leaf(path, kind, spec)

    def _add_leaf(self, path: str, kind: str | None, spec: dict) -> None:
        if kind not in LEAF_TYPES:
            raise UnsupportedQueryError(f"field type {kind!r} (field [{path}]) is not supported by the embedded engine")
        params = {k: v for k, v in spec.items() if k not in ("type", "fields")}
        if kind == "knn_vector":
            self._check_knn(path, params)
        if kind == "date":
            check_format(path, params.get("format"))
        if kind == "text":
            analyzer = params.get("analyzer", "standard")
            if params.get("search_analyzer", analyzer) != analyzer:
                raise UnsupportedQueryError(f"search_analyzer different from analyzer on [{path}]")
        self.fields[path] = FieldSpec(path, kind, params)
        for sub, sub_spec in spec.get("fields", {}).items():
            self._add_leaf(f"{path}.{sub}", sub_spec.get("type"), sub_spec)
            self.multi_fields.setdefault(path, []).append(f"{path}.{sub}")

    def _check_knn(self, path: str, params: dict) -> None:
        """k-NN's mapping checks with its messages (KNNVectorFieldMapper, VectorDataType, SpaceType,
        AbstractKNNLibrary at 2.19.0.0 / 3.3.0.0)."""
        dim = params.get("dimension")
        if isinstance(dim, str) and dim.strip().isdigit():  # OpenSearch parses "4" as 4
            dim = params["dimension"] = int(dim)
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_KNN_DIMENSION:
            raise EngineError(f"[{path}] knn_vector dimension must be 1..{MAX_KNN_DIMENSION}", 400, "mapper_parsing_exception")
        data_type = params.get("data_type", "float")
        if data_type not in KNN_DATA_TYPES:
            raise EngineError("Invalid value provided for [data_type] field. Supported values are "
                              f"[{','.join(KNN_DATA_TYPES)}]", 400, "mapper_parsing_exception")
        mapped_space = params.get("space_type") or params.get("method", {}).get("space_type")
        space = mapped_space or ("hamming" if data_type == "binary" else "l2")
        if space not in KNN_SPACE_TYPES:
            raise EngineError(f"[{path}] unknown space_type [{space}]", 400, "mapper_parsing_exception")
        if (space == "hamming") != (data_type == "binary"):
            raise EngineError(f"Space type [{space}] is not supported with [{data_type}] data type", 400, "mapper_parsing_exception")
        if data_type == "binary" and dim % 8:
            raise EngineError("Validation Failed: 1: Dimension should be multiply of 8 for binary vector data type;",
                              400, "validation_exception")
        if data_type != "float" and ("mode" in params or "compression_level" in params):
            raise EngineError(f"Compression and mode cannot be used for non-float32 data type for field {path}",
                              400, "mapper_parsing_exception")
        if params.get("mode", "in_memory") not in ("in_memory", "on_disk"):
            raise EngineError(f"[{path}] unknown knn_vector mode [{params['mode']}]", 400, "mapper_parsing_exception")
        if params.get("compression_level", "1x") not in COMPRESSION_LEVELS:
            raise EngineError(f"[{path}] invalid compression_level [{params['compression_level']}]: expected one of "
                              f"{list(COMPRESSION_LEVELS)}", 400, "mapper_parsing_exception")
        method = params.get("method", {})
        if method and (method.get("name", "hnsw") != "hnsw" or method.get("engine", "faiss") not in ("faiss", "lucene")):
            raise UnsupportedQueryError(f"knn method {method} on [{path}] is not supported by the embedded engine")

    def merge(self, body: dict) -> None:
        """Apply a put_mapping body: new fields and objects are added; an existing field keeps its
        type (400 otherwise) and may gain new sub-fields."""
        if "_doc" in body:
            raise EngineError("Types cannot be provided in put mapping requests", 400, "illegal_argument_exception")
        unknown = set(body) - {"properties", "dynamic", "_meta"}
        if unknown:
            raise UnsupportedQueryError(f"put_mapping key(s) {sorted(unknown)} are not supported by the embedded engine")
        for key in ("dynamic", "_meta"):
            if key in body:
                self.raw[key] = copy.deepcopy(body[key])
        self._merge_properties(body.get("properties", {}), "")

    def _merge_properties(self, properties: dict, prefix: str) -> None:
        for name, spec in _expand_dots(properties).items():
            path = f"{prefix}{name}"
            kind = spec.get("type", "object" if "properties" in spec else None)
            if kind == "object":
                if path in self.fields:
                    raise EngineError(f"can't merge a non object mapping [{path}] with an object mapping", 400, "illegal_argument_exception")
                if path not in self.objects:
                    self.objects[path] = {"type": "object"}
                    self._record_in_raw(path, {"type": "object", "properties": {}})
                self._merge_properties(spec.get("properties", {}), path + ".")
                continue
            existing = self.fields.get(path)
            if existing is None:
                self._add_leaf(path, kind, spec)
                self._record_in_raw(path, spec)
                continue
            if existing.type != kind:
                raise EngineError(f"mapper [{path}] cannot be changed from type [{existing.type}] to [{kind}]", 400, "illegal_argument_exception")
            changed = {k for k in set(spec) | set(existing.params) if k not in ("type", "fields", "meta") and spec.get(k) != existing.params.get(k)}
            if changed:
                raise EngineError(f"Mapper for [{path}] conflicts with existing mapper: cannot update parameter(s) {sorted(changed)}", 400, "illegal_argument_exception")
            if "meta" in spec:  # per-field metadata is replaced
                existing.params["meta"] = copy.deepcopy(spec["meta"])
                self._raw_node(path)["meta"] = copy.deepcopy(spec["meta"])
            for sub, sub_spec in spec.get("fields", {}).items():
                if f"{path}.{sub}" not in self.fields:
                    self._add_leaf(f"{path}.{sub}", sub_spec.get("type"), sub_spec)
                    self.multi_fields.setdefault(path, []).append(f"{path}.{sub}")
                    node = self._raw_node(path)
                    node.setdefault("fields", {})[sub] = copy.deepcopy(sub_spec)

    def _raw_node(self, path: str) -> dict:
        node = self.raw["properties"]
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]["properties"]
        return node[parts[-1]]

    # --- dynamic mapping -------------------------------------------------------------------------
    def dynamic_for(self, path: str) -> str:
        """The effective `dynamic` setting (true|false|strict) for a new field at `path`."""
        parts = path.split(".")
        for i in range(len(parts) - 1, -1, -1):
            obj = self.objects.get(".".join(parts[:i]))
            if obj is not None and "dynamic" in obj:
                return str(obj["dynamic"]).lower()
        return "true"

    def _dynamic_allows(self, path: str) -> bool:
        """Whether a new field at `path` gets mapped (raises for `dynamic: strict`)."""
        dynamic = self.dynamic_for(path)
        if dynamic == "strict":
            raise EngineError(
                f"mapping set to strict, dynamic introduction of [{path}] is not allowed", 400, "strict_dynamic_mapping_exception"
            )
        return dynamic != "false"

    def map_new_field(self, path: str, value: Any) -> FieldSpec | None:
        """Map an unseen leaf field like OpenSearch's dynamic mapping; returns None when not indexed.

        Unmatched strings become `text` with a `keyword` sub-field (ignore_above 256), as in OpenSearch.
        """
        if not self._dynamic_allows(path):
            return None
        match_type = (
            "boolean" if isinstance(value, bool)
            else "long" if isinstance(value, int)
            else "double" if isinstance(value, float)
            else "date" if isinstance(value, str) and self.raw.get("date_detection", True) is not False and looks_like_date(value)
            else "string"
        )
        for entry in self.raw.get("dynamic_templates", []):
            (name, rule), = entry.items()
            if "path_match" in rule and not fnmatch.fnmatchcase(path, rule["path_match"]):
                continue
            if "match" in rule and not fnmatch.fnmatchcase(path.rsplit(".", 1)[-1], rule["match"]):
                continue
            if rule.get("match_mapping_type", "*") not in ("*", match_type):
                continue
            spec = dict(rule["mapping"])
            break
        else:
            spec = (
                {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
                if match_type == "string"
                else {"type": {"boolean": "boolean", "long": "long", "double": "float", "date": "date"}[match_type]}
            )
        self._add_leaf(path, spec["type"], spec)
        self._record_in_raw(path, spec)
        return self.fields[path]

    def map_new_object(self, path: str) -> bool:
        """Record a dynamically introduced object; False when dynamic mapping does not index it."""
        if not self._dynamic_allows(path):
            return False
        self.objects[path] = {"type": "object"}
        self._record_in_raw(path, {"type": "object", "properties": {}})
        return True

    def _record_in_raw(self, path: str, spec: dict) -> None:
        node = self.raw.setdefault("properties", {})
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}}).setdefault("properties", {})
        node.setdefault(parts[-1], copy.deepcopy(spec))

    def text_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields.values() if f.type == "text"]

    def vector_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields.values() if f.type == "knn_vector"]
