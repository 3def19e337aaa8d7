"""Index mappings and settings for the embedded engine, read from the same JSON as OpenSearch's.

`resolve_index_body` applies a matching composable index template like OpenSearch does;
`Mapping` flattens `properties` into leaf fields, applies dynamic mapping to unseen fields, and
builds the tantivy analyzer for each text field from the index's `analysis` settings.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import EngineError, UnsupportedQueryError

NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
COMPRESSION_LEVELS = ("1x", "2x", "4x", "8x", "16x", "32x")  # quantize.LEVELS (64x is Lucene-only)
LEAF_TYPES = NUMERIC_TYPES | {"keyword", "text", "boolean", "knn_vector"}
KNN_SPACE_TYPES = {"l2", "cosinesimil", "innerproduct", "hamming"}
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
    if body.get("aliases"):
        raise UnsupportedQueryError("index aliases are not supported by the embedded engine")
    matching = [
        t for t in templates.values() if any(fnmatch.fnmatchcase(index, p) for p in _as_list(t.get("index_patterns")))
    ]
    template = max(matching, key=lambda t: t.get("priority", 0))["template"] if matching else {}
    settings = _merge(flatten_settings(template.get("settings")), flatten_settings(body.get("settings")))
    mappings = _merge(template.get("mappings", {}), body.get("mappings", {}))
    return settings, mappings


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
    def space_type(self) -> str:
        return self.params.get("space_type") or self.params.get("method", {}).get("space_type") or "l2"


class Mapping:
    """The mapping of one index: leaf fields by dotted path, dynamic rules, and analyzers."""

    def __init__(self, mappings: dict, settings: dict):
        self.raw = copy.deepcopy(mappings)
        self.settings = settings
        self.fields: dict[str, FieldSpec] = {}
        self.multi_fields: dict[str, list[str]] = {}
        self.objects: dict[str, dict] = {"": self.raw}
        unsupported = set(self.raw) - {"properties", "dynamic", "dynamic_templates", "_meta", "_source"}
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
        if kind == "text":
            analyzer = params.get("analyzer", "standard")
            if params.get("search_analyzer", analyzer) != analyzer:
                raise UnsupportedQueryError(f"search_analyzer different from analyzer on [{path}]")
        self.fields[path] = FieldSpec(path, kind, params)
        for sub, sub_spec in spec.get("fields", {}).items():
            self._add_leaf(f"{path}.{sub}", sub_spec.get("type"), sub_spec)
            self.multi_fields.setdefault(path, []).append(f"{path}.{sub}")

    def _check_knn(self, path: str, params: dict) -> None:
        dim = params.get("dimension")
        if not isinstance(dim, int) or not 1 <= dim <= MAX_KNN_DIMENSION:
            raise EngineError(f"[{path}] knn_vector dimension must be 1..{MAX_KNN_DIMENSION}", 400, "mapper_parsing_exception")
        space = params.get("space_type") or params.get("method", {}).get("space_type") or "l2"
        if space not in KNN_SPACE_TYPES:
            raise EngineError(f"[{path}] unknown space_type [{space}]", 400, "mapper_parsing_exception")
        data_type = params.get("data_type", "float")
        if data_type != "float":
            raise UnsupportedQueryError(f"knn_vector data_type {data_type!r} on [{path}] is not supported by the embedded engine")
        if params.get("mode", "in_memory") not in ("in_memory", "on_disk"):
            raise EngineError(f"[{path}] unknown knn_vector mode [{params['mode']}]", 400, "mapper_parsing_exception")
        if params.get("compression_level", "1x") not in COMPRESSION_LEVELS:
            raise EngineError(f"[{path}] invalid compression_level [{params['compression_level']}]: expected one of "
                              f"{list(COMPRESSION_LEVELS)}", 400, "mapper_parsing_exception")
        method = params.get("method", {})
        if method and (method.get("name", "hnsw") != "hnsw" or method.get("engine", "faiss") not in ("faiss", "lucene")):
            raise UnsupportedQueryError(f"knn method {method} on [{path}] is not supported by the embedded engine")

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

        Unmatched strings become `keyword` (OpenSearch would make `text` + `.keyword`: a documented
        deviation, since the text index schema is fixed when the index is created).
        """
        if not self._dynamic_allows(path):
            return None
        match_type = (
            "boolean" if isinstance(value, bool)
            else "long" if isinstance(value, int)
            else "double" if isinstance(value, float)
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
            spec = {"type": {"string": "keyword", "boolean": "boolean", "long": "long", "double": "float"}[match_type]}
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


# --- analyzers -----------------------------------------------------------------------------------
_NEGATED_CLASS = re.compile(r"^\[\^(.+)\]\+?$")


@dataclass(frozen=True)
class AnalyzerSpec:
    """A tantivy-reproducible analyzer: a regex tokenizer over the token pattern plus filters."""

    token_pattern: str
    filters: tuple[str, ...]

    def build(self):
        import tantivy

        builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(self.token_pattern))
        for name in self.filters:
            if name == "lowercase":
                builder = builder.filter(tantivy.Filter.lowercase())
            elif name == "asciifolding":
                builder = builder.filter(tantivy.Filter.ascii_fold())
            elif name == "english_snowball":
                builder = builder.filter(tantivy.Filter.stemmer("english"))
        return builder.build()


def analyzer_spec(name: str, settings: dict) -> AnalyzerSpec:
    """The tantivy equivalent of analyzer `name` in the index `analysis` settings.

    Supported exactly: a `custom` analyzer whose tokenizer is a `pattern` tokenizer splitting on a
    negated character class (`[^X]+`, reproduced as tokens matching `[X]+`), followed by
    `lowercase`, `asciifolding` and `snowball`/`stemmer` English (Porter2) filters. Anything else
    (the `standard` analyzer included: UAX#29 cannot be reproduced token for token) raises
    UnsupportedQueryError.
    """
    analysis = settings.get("index.analysis", {})
    spec = analysis.get("analyzer", {}).get(name)
    if spec is None:
        raise UnsupportedQueryError(
            f"analyzer [{name}] cannot be reproduced by the embedded engine; define a custom analyzer with a "
            "pattern tokenizer in the index settings (see index_templates/cir-index-template.json)"
        )
    if spec.get("type", "custom") != "custom" or spec.get("char_filter"):
        raise UnsupportedQueryError(f"analyzer [{name}]: only custom analyzers without char_filter are supported")
    tokenizer = analysis.get("tokenizer", {}).get(spec.get("tokenizer"))
    if not tokenizer or tokenizer.get("type") != "pattern" or tokenizer.get("group", -1) != -1 or tokenizer.get("flags"):
        raise UnsupportedQueryError(f"analyzer [{name}]: tokenizer {spec.get('tokenizer')!r} is not a supported pattern tokenizer")
    negated = _NEGATED_CLASS.match(tokenizer.get("pattern", r"\W+"))
    if not negated:
        raise UnsupportedQueryError(
            f"analyzer [{name}]: pattern {tokenizer.get('pattern')!r} must be a negated character class like [^\\p{{L}}\\p{{N}}]+"
        )
    filters = []
    for filter_name in spec.get("filter", []):
        definition = analysis.get("filter", {}).get(filter_name, {"type": filter_name})
        kind = definition.get("type")
        language = str(definition.get("language", definition.get("name", ""))).lower()
        if kind in ("lowercase", "asciifolding") and len(definition) == 1:
            filters.append(kind)
        elif (kind == "snowball" and language == "english") or (kind == "stemmer" and language == "porter2"):
            filters.append("english_snowball")
        else:
            raise UnsupportedQueryError(f"analyzer [{name}]: token filter {filter_name!r} ({definition}) is not supported")
    return AnalyzerSpec(f"[{negated.group(1)}]+", tuple(filters))
