"""What each OpenSearch version accepts: one table of features, and the `Dialect` of one cluster.

    dialect = detect(client)                 # GET / (+ _cat/plugins) once per client
    dialect.supports("hybrid_filter")        # False on 2.19
    dialect.require("z_score", "z_score normalisation")   # raises UnsupportedFeatureError on 2.19

`FEATURES` is the single source of truth for "since which version" (docs/opensearch-versions.md
mirrors it); each row names the upstream file (at the plugin's `X.Y.Z.0` tag) that proves it.
Every body builder in `opensearch_cir.dsl` takes a dialect and either emits the body that version
accepts or refuses with a message naming the first version that has the feature.

Versions come from `GET /` (`version.number`, `version.distribution`). Amazon OpenSearch Service in
compatibility mode answers `7.10.2` without a distribution: the installed plugins' versions
(`_cat/plugins`, `2.19.0.0` -> 2.19.0) give the real one. OpenSearch Serverless has no `GET /`
version: give it with `CIR_OPENSEARCH_VERSION` (or `connect(..., opensearch_version=)`); without it the
oldest supported version's rules are used, so every body still works. The embedded engine answers
`info()` like a 3.x cluster (distribution `opensearch-cir-embedded`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import CIRError, UnsupportedQueryError

log = logging.getLogger(__name__)

VERSION_ENV = "CIR_OPENSEARCH_VERSION"
Version = tuple[int, int, int]


@dataclass(frozen=True)
class Feature:
    """A request feature, the first version that accepts it, and the upstream file showing it."""

    name: str
    since: Version
    source: str
    what: str


def _feature(name: str, since: str, source: str, what: str) -> tuple[str, Feature]:
    return name, Feature(name, parse_version(since), source, what)


def parse_version(text: str) -> Version:
    """`"2.19.0"`, `"3.1"`, `"2.19.0.0"` (a plugin version) -> (major, minor, patch)."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not match:
        raise ValueError(f"not an OpenSearch version: {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


NS = "neural-search src/main/java/org/opensearch/neuralsearch/"
KNN = "k-NN src/main/java/org/opensearch/knn/"
ML = "ml-commons "

FEATURES: dict[str, Feature] = dict([
    _feature("pagination_depth", "2.19.0", NS + "query/HybridQueryBuilder.java (PAGINATION_DEPTH_FIELD; "
             "common/MinClusterVersionUtil.java V_2_19_0)", "hybrid `pagination_depth`"),
    _feature("rrf", "2.19.0", NS + "processor/factory/RRFProcessorFactory.java", "score-ranker-processor (rrf)"),
    _feature("neural_query_image", "2.19.0", NS + "common/MinClusterVersionUtil.java (QUERY_IMAGE_FIX)",
             "`neural` with only `query_image`"),
    _feature("hybrid_filter", "3.0.0", NS + "query/HybridQueryBuilder.java (FILTER_FIELD)", "hybrid `filter`"),
    _feature("z_score", "3.0.0", NS + "processor/normalization/ZScoreNormalizationTechnique.java, "
             "ScoreNormalizationFactory.java", "z_score normalisation"),
    _feature("min_max_lower_bounds", "3.0.0", NS + "processor/normalization/MinMaxScoreNormalizationTechnique.java "
             "(lower_bounds)", "min_max `lower_bounds`"),
    _feature("min_max_upper_bounds", "3.2.0", NS + "processor/normalization/MinMaxScoreNormalizationTechnique.java "
             "(upper_bounds)", "min_max `upper_bounds`"),
    _feature("skip_existing", "3.0.0", NS + "processor/factory/TextImageEmbeddingProcessorFactory.java (SKIP_EXISTING)",
             "`skip_existing` in text_image_embedding"),
    _feature("rrf_weights", "3.1.0", NS + "processor/factory/RRFProcessorFactory.java (parameters -> combination; "
             "rank_constant beside technique)", "weighted RRF (`combination.parameters.weights`)"),
    _feature("knn_method_parameters", "2.16.0", KNN + "index/query/KNNQueryBuilder.java (method_parameters)",
             "knn `method_parameters`"),
    _feature("knn_rescore", "2.17.0", KNN + "index/query/parser/RescoreParser.java", "knn `rescore`"),
    _feature("knn_byte_vector", "2.17.0", KNN + "index/engine/faiss/FaissHNSWMethod.java (SUPPORTED_DATA_TYPES: "
             "BYTE on faiss since 2.17; lucene since 2.9)", "knn_vector `data_type: byte`"),
    _feature("knn_binary_vector", "2.16.0", KNN + "index/engine/faiss/FaissHNSWMethod.java (SUPPORTED_DATA_TYPES: "
             "BINARY on faiss since 2.16)", "knn_vector `data_type: binary`"),
    _feature("knn_binary_lucene", "2.19.0", KNN + "index/engine/lucene/LuceneHNSWMethod.java (SUPPORTED_DATA_TYPES)",
             "`data_type: binary` on the lucene engine"),
    _feature("knn_disk_mode", "2.17.0", KNN + "index/mapper/CompressionLevel.java, Mode.java",
             "knn_vector `mode` / `compression_level`"),
    # behaviour: 4x on_disk fields rescore by default (oversample 1.0) only from 3.1
    _feature("knn_4x_default_rescore", "3.1.0", KNN + "index/mapper/CompressionLevel.java "
             "(getDefaultRescoreContext: x4 before V_3_1_0 -> null)", "default rescoring of 4x on_disk fields"),
    _feature("knn_top_level_space_type", "2.17.0", KNN + "index/mapper/KNNVectorFieldMapper.java "
             "(TOP_LEVEL_PARAMETER_SPACE_TYPE)", "knn_vector `space_type` beside `method`"),
    _feature("nmslib_blocked", "3.0.0", KNN + "index/engine/KNNEngine.java (NMSLIB deprecated V_3_0_0)",
             "no new nmslib indices"),
    # scoring behaviour, not request rules: no body changes, but scores differ across the line
    _feature("bm25_similarity", "3.0.0", "OpenSearch core server/src/main/java/org/opensearch/index/similarity/"
             "SimilarityService.java (default BM25Similarity, 2.x LegacyBM25Similarity: scores / 2.2)",
             "BM25 scores without the legacy (k1 + 1) factor"),
    _feature("keyword_term_constant_score", "3.0.0", "OpenSearch core server/src/main/java/org/opensearch/index/"
             "mapper/KeywordFieldMapper.java (useSimilarity false by default, OpenSearch PR #17889)",
             "constant-score term queries on keyword fields"),
])

OLDEST: Version = (2, 19, 0)
LATEST: Version = (3, 3, 0)
TESTED_VERSIONS: tuple[Version, ...] = ((2, 19, 0), (3, 0, 0), (3, 1, 0), (3, 3, 0))
EMBEDDED_DISTRIBUTION = "opensearch-cir-embedded"
EMBEDDED_VERSION = "3.3.0"
_PLUGIN_FOR_VERSION = ("opensearch-neural-search", "opensearch-knn", "opensearch-ml")


class UnsupportedFeatureError(UnsupportedQueryError):
    """The cluster's version lacks a feature a request needs (the message names the first version with it);
    the service answers it with 400, like any query the engine cannot run."""


@dataclass(frozen=True)
class Dialect:
    """The request rules of one cluster: its version, distribution and (when known) installed plugins."""

    version: Version = LATEST
    distribution: str = "opensearch"
    plugins: frozenset[str] | None = None

    @classmethod
    def of(cls, version: str | Version, distribution: str = "opensearch", plugins: Iterable[str] | None = None) -> "Dialect":
        parsed = parse_version(version) if isinstance(version, str) else tuple(version)
        return cls(parsed, distribution, frozenset(plugins) if plugins is not None else None)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"OpenSearch {format_version(self.version)} ({self.distribution})"

    def supports(self, feature: str) -> bool:
        return self.version >= FEATURES[feature].since

    def require(self, feature: str, what: str | None = None) -> None:
        """Raise UnsupportedFeatureError naming the first version with `feature` unless this one has it."""
        if not self.supports(feature):
            raise UnsupportedFeatureError(self.refusal(feature, what))

    def refusal(self, feature: str, what: str | None = None) -> str:
        spec = FEATURES[feature]
        return (f"{what or spec.what} needs OpenSearch {format_version(spec.since)} or later; this cluster is "
                f"{format_version(self.version)} (upstream: {spec.source})")

    def has_plugin(self, name: str) -> bool:
        """Whether plugin `name` (e.g. "opensearch-ml") is installed; True when the plugin list is unknown."""
        return self.plugins is None or name in self.plugins


def dialect_from_info(info: dict, plugins: dict[str, str] | None = None, override: str | None = None) -> Dialect:
    """The dialect from a `GET /` answer and `{plugin: version}`; `override` (a version) wins."""
    version = info.get("version") or {}
    distribution = version.get("distribution") or ("elasticsearch" if version.get("number") else "unknown")
    names = frozenset(plugins) if plugins is not None else None
    if distribution == EMBEDDED_DISTRIBUTION:  # it runs one version's rules: an override cannot change them
        return Dialect(parse_version(version["number"]), distribution, names)
    if override:
        return Dialect(parse_version(override), distribution if distribution != "elasticsearch" else "opensearch", names)
    number = version.get("number")
    plugin_version = next((plugins[name] for name in _PLUGIN_FOR_VERSION if plugins and name in plugins), None)
    if distribution == "opensearch" and number:
        return Dialect(parse_version(number), distribution, names)
    if plugin_version:  # Amazon OpenSearch Service in compatibility mode reports 7.10.2 and no distribution
        return Dialect(parse_version(plugin_version), "opensearch (compatibility mode)", names)
    raise CIRError(
        f"cannot tell the OpenSearch version (GET / says {version or 'nothing'}); set {VERSION_ENV}=X.Y.Z "
        "(Amazon OpenSearch Service in compatibility mode without plugin versions, OpenSearch Serverless)"
    )


def _plugins_of(client: Any) -> dict[str, str] | None:
    cat = getattr(client, "cat", None)
    if cat is None or not hasattr(cat, "plugins"):
        return None
    try:
        rows = cat.plugins(format="json")
    except Exception as exc:  # noqa: BLE001 - a restricted _cat API only costs us the plugin list
        log.info("could not list plugins: %s", exc)
        return None
    return {row.get("component", ""): row.get("version", "") for row in rows if isinstance(row, dict)}


def detect(client: Any) -> Dialect:
    """The dialect of `client`, asked once and remembered on the client (`client.cir_dialect`).

    Order: an explicit `client.cir_dialect`, `$CIR_OPENSEARCH_VERSION`, then `GET /` and the plugins.
    A client without `info()` (test doubles) gets the latest version's rules. A Serverless client
    (`aws_service="aoss"`, no `GET /`), or one whose `GET /` is refused (401/403/404), without a
    version gets the oldest supported version's rules: every body it then sends works on all.
    """
    known = getattr(client, "cir_dialect", None)
    if isinstance(known, Dialect):
        return known
    override = os.environ.get(VERSION_ENV) or None
    info_call = getattr(client, "info", None)
    if info_call is None:
        dialect = Dialect.of(override) if override else Dialect()
    elif getattr(client, "cir_serverless", False):
        dialect = Dialect.of(override or format_version(OLDEST), "aoss")
        if not override:
            log.warning("OpenSearch Serverless reports no version; using %s rules (set %s)", dialect, VERSION_ENV)
    else:
        try:
            info = info_call() or {}
        except Exception as exc:  # a user without cluster:monitor/main, or a proxy hiding GET /
            if getattr(exc, "status_code", None) not in (401, 403, 404):
                raise
            log.warning("GET / refused (%s): using OpenSearch %s rules; set %s", exc, format_version(OLDEST), VERSION_ENV)
            info = {"version": {"distribution": "opensearch", "number": override or format_version(OLDEST)}}
        dialect = dialect_from_info(info, _plugins_of(client), override)
    try:
        client.cir_dialect = dialect
    except AttributeError:
        pass
    return dialect


def latest() -> Dialect:
    """The rules of the newest version we test (what a body builder uses when given no dialect)."""
    return Dialect()
