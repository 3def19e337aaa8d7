"""The `phi` and `phi_hybrid` strategies: vectors, rendering, fallbacks, end to end and in the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_compose import _EmptyIndex, _png, small_index, tiny_encoder  # noqa: F401 - fixtures
from opensearch_cir.compose import CompositeQuery, Weights, prepare, search
from opensearch_cir.compose.query import PHI_STRATEGIES, STRATEGIES, available_strategies
from opensearch_cir.errors import InputError


@pytest.fixture(scope="module")
def plain_encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("plain")), device="cpu", threads=1)


def _prepared(encoder, **changes):
    query = CompositeQuery(images=[_png((200, 10, 10))], text="in navy blue instead", caption="Puma Men Black T-shirt",
                           **changes)
    return prepare(_EmptyIndex(), "cir-test", query, encoder)


def test_phi_vector_is_the_composed_prompt(tiny_encoder):
    prepared = _prepared(tiny_encoder)
    expected = tiny_encoder.phi.compose(prepared.image[None], ["in navy blue instead"])[0]
    np.testing.assert_allclose(prepared.vector("phi", Weights()), expected, atol=1e-6)
    assert abs(float(prepared.vector("phi", Weights()) @ prepared.text)) < 0.999  # not just the text
    knn = prepared.render("phi").sub_queries["image_knn"]["knn"]["image_vector"]["vector"]
    np.testing.assert_allclose(knn, expected, atol=1e-6)


def test_phi_hybrid_uses_phi_for_knn_and_the_rewrite_for_bm25(tiny_encoder):
    prepared = _prepared(tiny_encoder)
    rendered = prepared.render("phi_hybrid", Weights(bm25=0.2, image=0.5, caption=0.3))
    assert list(rendered.sub_queries) == ["caption_bm25", "image_knn", "caption_knn"]
    assert rendered.weights == [0.2, 0.5, 0.3]
    assert rendered.sub_queries["caption_bm25"]["match"]["caption"]["query"] == "Puma Men navy blue T-shirt"
    knn = rendered.sub_queries["image_knn"]["knn"]["image_vector"]["vector"]
    np.testing.assert_allclose(knn, prepared.vector("phi", Weights()), atol=1e-6)
    assert Weights(hybrid_vector="phi").hybrid_vector == "phi"  # also selectable inside the plain hybrid


def test_without_phi_the_strategies_are_refused_or_fall_back(plain_encoder):
    assert available_strategies(plain_encoder) == [s for s in STRATEGIES if s not in PHI_STRATEGIES]
    prepared = _prepared(plain_encoder)
    assert prepared.phi is None
    with pytest.raises(InputError, match="φ graph"):
        prepared.render("phi")
    hybrid = prepared.render("phi_hybrid").sub_queries["image_knn"]["knn"]["image_vector"]["vector"]
    np.testing.assert_allclose(hybrid, prepared.vector("fusion", Weights()), atol=1e-6)


def test_phi_needs_a_reference_image(tiny_encoder):
    prepared = prepare(_EmptyIndex(), "cir-test", CompositeQuery(text="a red dress"), tiny_encoder)
    with pytest.raises(InputError, match="reference image"):
        prepared.render("phi")


@pytest.mark.parametrize("strategy", sorted(PHI_STRATEGIES))
def test_phi_search_end_to_end_on_the_embedded_engine(small_index, tiny_encoder, strategy):
    from opensearch_cir.ingest.records import document_id

    _, client, blobs = small_index
    reference = blobs[("Men", "red")]
    response = search(client, "cir-small", CompositeQuery(images=[reference], text="in blue instead", k=3,
                                                          strategy=strategy), tiny_encoder, explain=True)
    assert len(response) == 3 and document_id(reference) not in response.ids
    assert all(set(hit.sub_scores) == set(response.rendered.sub_queries) for hit in response)


def test_cir_search_with_phi(small_index, tiny_encoder, tmp_path):
    from typer.testing import CliRunner

    from opensearch_cir.cli import app

    folder, _, blobs = small_index
    image = tmp_path / "ref.png"
    image.write_bytes(blobs[("Women", "green")])
    result = CliRunner().invoke(app, ["search", "--image", str(image), "--text", "make it black", "--url",
                                      f"embedded://{folder}", "--index", "cir-small", "--model",
                                      str(tiny_encoder.model_dir), "--k", "2", "--json", "--strategy", "phi"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["results"]) == 2


def test_eval_harness_skips_phi_for_models_without_it(plain_encoder, tmp_path):
    from opensearch_cir.engines import connect
    from opensearch_cir.eval import scenes

    result = scenes.run(connect(f"embedded://{tmp_path / 'engine'}"), plain_encoder, seed=3, n_queries=24,
                        n_distractors=10, tune_subset=4)
    assert "phi" not in result["strategies"] and "fusion" in result["strategies"]
