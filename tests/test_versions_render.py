"""Every body the package sends, rendered for OpenSearch 2.19, 3.0, 3.1 and 3.3, checked against the
OpenAPI spec, our strict rules and that version's rules from the feature table
(`dsl.version_rules`): setup (template, index, mapping upgrade, search pipelines), ingest (the
ml-commons connector, model and ingest pipeline), and searches for every strategy × normalisation
with filters, negatives, references and explain. A body a version cannot take must be refused by
the builder with the first version that has the feature, never sent.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from opensearch_cir import admin, dsl
from opensearch_cir.compose.execute import execute
from opensearch_cir.compose.query import NORMALIZATIONS, STRATEGIES, CompositeQuery, PreparedQuery, Weights
from opensearch_cir.compose.rewrite import Rewrite
from opensearch_cir.dialect import TESTED_VERSIONS, Dialect, UnsupportedFeatureError, parse_version
from opensearch_cir.dsl.ml import connector_body, ingest_pipeline_body, model_register_body
from opensearch_cir.dsl.spec import find_spec_dir
from opensearch_cir.dsl.validate import validate_request

DIALECTS = [Dialect(version) for version in TESTED_VERSIONS]
IDS = [".".join(map(str, d.version)) for d in DIALECTS]
MODEL = SimpleNamespace(model_id="tiny-random-32", embedding_dim=32)
EQUAL = Weights(bm25=1.0, image=1.0, caption=1.0)


@pytest.fixture(scope="module")
def spec(api_spec_dir):
    root = find_spec_dir(api_spec_dir)
    assert root is not None
    return root


def check(kind, body, spec, dialect, **options):
    validate_request(kind, body, spec_dir=spec, dialect=dialect, **options)


def assert_refusal_is_right(exc: UnsupportedFeatureError, dialect: Dialect) -> None:
    """A refusal names a first version later than the cluster's."""
    needed = re.search(r"needs OpenSearch (\d+\.\d+\.\d+)", str(exc))
    assert needed and parse_version(needed.group(1)) > dialect.version, str(exc)


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=32).astype(np.float32)
    return vector / np.linalg.norm(vector)


def prepared(filters: dict, negative: bool, references: list[str]) -> PreparedQuery:
    query = CompositeQuery(text="in navy", negative="a hood" if negative else "", filters=filters)
    return PreparedQuery(query=query, image=unit(1), caption="a red jacket", rewrite=Rewrite(text="a navy jacket"),
                         text=unit(2), negative=unit(3) if negative else None, caption_vector=unit(4),
                         caption_with_text=unit(5), rewritten=unit(6), phi=unit(7), excluded_ids=references)


class Recorder:
    """A client that records searches and pipelines and answers with two hits."""

    def __init__(self):
        self.searches: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.search_pipeline = SimpleNamespace(put=lambda id, body: self.pipelines.__setitem__(id, body))

    def search(self, index, body, params=None):
        self.searches.append(body)
        return {"hits": {"hits": [{"_id": "a", "_score": 1.0, "_source": {}}, {"_id": "b", "_score": 0.5, "_source": {}}]}}


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
def test_setup_bodies(dialect, spec):
    template = admin.index_template(MODEL, "cir-products")
    check("indices.put_index_template", template, spec, dialect)
    check("indices.create", admin.index_body(MODEL), spec, dialect)
    mappings = template["template"]["mappings"]
    check("indices.put_mapping", {"properties": {"image_uri": mappings["properties"]["image_uri"]}, "_meta": mappings["_meta"]},
          spec, dialect)
    accepted, skipped = dsl.for_dialect(dsl.PIPELINES, dialect)
    assert set(accepted) | set(skipped) == set(dsl.PIPELINES)
    for body in accepted.values():
        check("search_pipeline.put", body, spec, dialect)
    for reason in skipped.values():
        assert_refusal_is_right(UnsupportedFeatureError(reason), dialect)
    assert ("cir-z-score" in skipped) == (dialect.version < (3, 0, 0))
    if dialect.version >= (3, 1, 0):
        assert accepted == dsl.PIPELINES  # the shipped JSON is what a current cluster gets


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
def test_ml_bodies(dialect, spec):
    check("ml.create_connector", connector_body("http://encoder:8000", api_key="k"), spec, dialect)
    check("ml.register_model", model_register_body("c1"), spec, dialect)
    check("ingest.put_pipeline", ingest_pipeline_body("m1", dialect), spec, dialect)
    check("search", dsl.search_body(dsl.neural_clause("image_vector", model_id="m1", k=5, query_image="aGk="), size=5),
          spec, dialect)


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_every_strategy_search_body(dialect, normalization, spec):
    rendered_count = refused = 0
    for strategy in STRATEGIES:
        for filters, negative, references in [({}, False, []), ({"metadata.color": ["navy", "blue"]}, True, ["r1"]),
                                              ({"metadata.gender": "Women"}, False, ["r1", "r2"])]:
            query = prepared(filters, negative, references)
            for weights in (Weights(normalization=normalization), Weights(normalization=normalization, bm25=1.0,
                                                                             image=1.0, caption=1.0)):
                try:
                    rendered = query.render(strategy, weights, dialect=dialect)
                except UnsupportedFeatureError as exc:
                    assert_refusal_is_right(exc, dialect)
                    refused += 1
                    continue
                rendered_count += 1
                if rendered.pipeline_body is not None:
                    check("search_pipeline.put", rendered.pipeline_body, spec, dialect)
                check("search", rendered.body, spec, dialect, pipeline=rendered.pipeline_body)
                recorder = Recorder()
                execute(recorder, "cir-products", rendered, explain=True)  # the explain sub-query searches
                for body in recorder.searches:
                    check("search", body, spec, dialect, pipeline=rendered.pipeline_body if "hybrid" in body["query"] else None)
    assert rendered_count > 0
    lacking = {"z_score": (3, 0, 0), "rrf": (3, 1, 0)}.get(normalization)  # z_score; weighted RRF
    if lacking and dialect.version < lacking:
        assert refused > 0  # only multi-sub-query strategies with unequal weights (rrf) or any weights (z_score)
    else:
        assert refused == 0


def test_old_version_bodies_differ_only_where_the_table_says(spec):
    """The same query for 2.19 and 3.3: the hybrid filter moves into the sub-queries, the rest is equal."""
    query = prepared({"metadata.color": "navy"}, True, ["r1"])
    old = query.render("hybrid", EQUAL, dialect=DIALECTS[0]).body
    new = query.render("hybrid", EQUAL, dialect=DIALECTS[-1]).body
    new_filter = new["query"]["hybrid"].pop("filter")
    pushed = [dsl.with_filter(q, new_filter) for q in new["query"]["hybrid"]["queries"]]
    assert old["query"]["hybrid"]["queries"] == pushed
    old["query"]["hybrid"].pop("queries"), new["query"]["hybrid"].pop("queries")
    assert old == new
