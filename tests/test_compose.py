"""Vector maths of each composition strategy, and CompositeQuery rendering + search end to end."""

import json

import numpy as np
import pytest

from opensearch_cir.compose import strategies as S
from opensearch_cir.errors import InputError

I = np.array([1.0, 0.0, 0.0], np.float32)
T = np.array([0.0, 1.0, 0.0], np.float32)
C = np.array([0.0, 0.0, 1.0], np.float32)


def test_normalize_and_zero_vector():
    assert np.allclose(S.normalize([3.0, 4.0]), [0.6, 0.8])
    with pytest.raises(InputError):
        S.normalize([0.0, 0.0])


def test_single_modalities_and_mean():
    assert np.allclose(S.image_only(2 * I), I)
    assert np.allclose(S.text_only(T), T)
    assert np.allclose(S.mean_vector([I, T]), [2**-0.5, 2**-0.5, 0])


def test_weighted_fusion():
    q = S.weighted_fusion(I, T, 0.8)  # norm(0.2 i + 0.8 t)
    assert np.allclose(q, np.array([0.2, 0.8, 0]) / np.hypot(0.2, 0.8))
    assert np.allclose(S.weighted_fusion(I, T, 0.0), I)
    with pytest.raises(InputError):
        S.weighted_fusion(I, T, 1.5)


def test_slerp_walks_the_great_circle():
    q = S.slerp(I, T, 1 / 3)  # 90° apart: a third of the way is 30°
    assert np.allclose(q, [np.cos(np.pi / 6), np.sin(np.pi / 6), 0], atol=1e-6)
    assert np.allclose(S.slerp(I, T, 0.0), I) and np.allclose(S.slerp(I, T, 1.0), T)
    assert np.allclose(S.slerp(I, I, 0.5), I)  # parallel inputs fall back to lerp


def test_prompt_directional_vector():
    composed_caption = S.normalize(C + T)  # E_T(caption + T)
    delta = composed_caption - C
    expected = S.normalize(0.3 * (I + 2.0 * delta) + 0.7 * (C + 1.5 * delta))
    q = S.prompt_directional_vector(I, C, composed_caption, alpha_text=1.5, alpha_image=2.0, beta=0.3)
    assert np.allclose(q, expected)
    # beta = 1, alpha_image = 0 is the image alone
    assert np.allclose(S.prompt_directional_vector(I, C, composed_caption, alpha_text=1, alpha_image=0, beta=1), I)


def test_weighted_sum_and_negative():
    assert np.allclose(S.weighted_sum([I, T], [1.0, -0.5]), np.array([1, -0.5, 0]) / np.hypot(1, 0.5))
    q = S.with_negative(S.normalize(I + T), T, 0.5)
    assert np.dot(q, T) < np.dot(S.normalize(I + T), T)
    with pytest.raises(InputError):
        S.with_negative(I, T, -1)
    with pytest.raises(InputError):
        S.weighted_sum([I], [1, 2])


def test_caption_aware_scores():
    images = np.stack([I, T])
    captions = np.stack([T, I])
    # s = 0.9·cos(q, v) + 0.1·cos(q, c) with q = I: doc0 0.9, doc1 0.1
    assert np.allclose(S.caption_aware_scores(I, images, captions, 0.1), [0.9, 0.1])
    per_caption = np.stack([np.stack([T, I]), np.stack([I, I])])  # [N=2, K=2, D]
    assert np.allclose(S.caption_aware_scores(I, images, per_caption, 0.5), [0.5 * 1 + 0.5 * 0.5, 0.5 * 0 + 0.5 * 1])


# -- CompositeQuery rendering -------------------------------------------------------------------

import io  # noqa: E402

from PIL import Image  # noqa: E402

from opensearch_cir import dsl  # noqa: E402
from opensearch_cir.compose import CompositeQuery, Weights, prepare  # noqa: E402
from opensearch_cir.compose.query import STRATEGIES  # noqa: E402
from opensearch_cir.errors import EngineError  # noqa: E402


class _EmptyIndex:
    """Only `get`, answering 404 like the engines do: rendering needs nothing else."""

    def get(self, index, id):
        raise EngineError(f"document {id} not found", status=404)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny"), phi=True), device="cpu", threads=1)


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def prepared(tiny_encoder):
    query = CompositeQuery(images=[_png((200, 10, 10))], text="in navy blue instead", negative="a hood",
                           caption="Puma Men Black T-shirt", filters={"metadata.gender": "Men"}, k=7)
    return prepare(_EmptyIndex(), "cir-test", query, tiny_encoder)


def test_prepare_rewrites_and_encodes(prepared, tiny_encoder):
    assert prepared.rewrite.text == "Puma Men navy blue T-shirt"
    for vector in (prepared.image, prepared.text, prepared.negative, prepared.caption_vector, prepared.rewritten):
        assert vector.shape == (tiny_encoder.dim,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert prepared.excluded_ids == []  # the image is not in the index


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_renders_a_valid_body(prepared, strategy):
    rendered = prepared.render(strategy)
    dsl.validate_request("search", rendered.body)
    assert rendered.body["size"] == 7
    if len(rendered.sub_queries) > 1:
        assert "hybrid" in rendered.body["query"] and rendered.pipeline_id.startswith("cir-adhoc-")
        assert sum(rendered.weights) == pytest.approx(1.0)
        dsl.validate_request("search_pipeline.put", rendered.pipeline_body)
        assert rendered.body["query"]["hybrid"]["filter"]["bool"]["filter"] == [{"term": {"metadata.gender": "Men"}}]
    else:
        assert rendered.pipeline_id is None
        clause = rendered.body["query"]
        assert "filter" in clause["knn"]["image_vector"] if "knn" in clause else clause["bool"]["filter"]


def test_hybrid_sub_queries_weights_and_normalisations(prepared):
    rendered = prepared.render("hybrid", Weights(bm25=0.2, image=0.6, caption=0.2))
    assert list(rendered.sub_queries) == ["caption_bm25", "image_knn", "caption_knn"]
    assert rendered.weights == [0.2, 0.6, 0.2]
    assert rendered.sub_queries["caption_bm25"] == dsl.match_clause("caption", "Puma Men navy blue T-shirt")
    processor = rendered.pipeline_body["phase_results_processors"][0]["normalization-processor"]
    assert processor["combination"]["parameters"]["weights"] == [0.2, 0.6, 0.2]
    rrf = prepared.render("hybrid", Weights(normalization="rrf"))
    assert "score-ranker-processor" in rrf.pipeline_body["phase_results_processors"][0]
    assert prepared.render("hybrid", Weights(bm25=0.3, image=0.4, caption=0.0)).weights == pytest.approx([3 / 7, 4 / 7], abs=1e-4)
    ids_only = prepared.render("hybrid", source=False).body
    assert ids_only["_source"] is False
    # a composed search never reads hits.total, so it does not ask the engine to count
    assert ids_only["track_total_hits"] is False and prepared.render("fusion").body["track_total_hits"] is False
    dsl.validate_request("search", ids_only)


def test_composed_vectors_follow_the_formulas(prepared):
    w = Weights(alpha=0.7, negative=0.0)
    expected = S.weighted_fusion(prepared.image, prepared.text, 0.7)
    vector = prepared.render("fusion", w).sub_queries["image_knn"]["knn"]["image_vector"]["vector"]
    assert np.allclose(vector, expected, atol=1e-6)
    negated = prepared.vector("fusion", Weights(alpha=0.7, negative=0.5))
    assert np.allclose(negated, S.with_negative(expected, prepared.negative, 0.5))
    caption_aware = prepared.render("caption_aware", Weights(beta=0.25))
    assert caption_aware.weights == [0.75, 0.25] and set(caption_aware.sub_queries) == {"image_knn", "caption_knn"}


def test_equal_texts_are_encoded_once_and_each_gets_its_vector(tiny_encoder):
    # text == negative, and the rewrite of an empty caption with "red" is "red" too
    prepared = prepare(_EmptyIndex(), "i", CompositeQuery(text="red", negative="red", caption="a blue car"), tiny_encoder)
    red, rewritten = tiny_encoder.encode_texts(["red", "a red car"])
    assert np.allclose(prepared.text, red, atol=1e-6) and np.allclose(prepared.negative, red, atol=1e-6)
    assert np.allclose(prepared.rewritten, rewritten, atol=1e-6)


class _Recording:
    """`encoder` that records what `encode_texts` and `encode_images` are given."""

    def __init__(self, encoder):
        self.encoder, self.texts, self.images = encoder, [], []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_texts(self, texts):
        self.texts.append(list(texts))
        return self.encoder.encode_texts(texts)

    def encode_images(self, blobs):
        self.images.append(len(blobs))
        return self.encoder.encode_images(blobs)


def test_without_a_caption_the_text_is_encoded_once_for_both_knn_clauses(tiny_encoder):
    recording = _Recording(tiny_encoder)
    calls = recording.texts
    prepared = prepare(_EmptyIndex(), "i", CompositeQuery(text="A dog runs on the beach ."), recording, only_strategy=True)
    assert calls == [["A dog runs on the beach ."]]
    assert prepared.rewrite.text == "dog runs on the beach"  # BM25 still gets the cleaned text
    assert np.array_equal(prepared.rewritten, prepared.text)
    hybrid = prepared.render("hybrid").sub_queries
    assert hybrid["caption_bm25"]["match"]["caption"]["query"] == "dog runs on the beach"
    assert hybrid["caption_knn"]["knn"]["caption_vector"]["vector"] == hybrid["image_knn"]["knn"]["image_vector"]["vector"]
    with_caption = prepare(_EmptyIndex(), "i", CompositeQuery(text="in red", caption="a blue car"), recording, only_strategy=True)
    assert calls[-1] == ["in red", "a red car"] and not np.array_equal(with_caption.rewritten, with_caption.text)


def test_an_uploaded_image_that_is_indexed_brings_its_stored_vector_instead_of_being_encoded(tiny_encoder):
    from opensearch_cir.ingest.records import document_id

    indexed, novel = _png((10, 200, 10)), _png((10, 10, 200))
    stored = np.full(tiny_encoder.dim, 1 / np.sqrt(tiny_encoder.dim), np.float32)
    recording = _Recording(tiny_encoder)
    encoded = recording.images

    class _Indexed(_EmptyIndex):
        def get(self, index, id):
            if id == document_id(indexed):
                return {"_id": id, "found": True, "_source": {"image_vector": stored.tolist(), "caption": "a green square"}}
            return super().get(index, id)

    alone = prepare(_Indexed(), "i", CompositeQuery(images=[indexed], text="in red"), recording)
    assert encoded == [] and np.allclose(alone.image, stored) and alone.caption == "a green square"
    assert alone.excluded_ids == [document_id(indexed)]
    both = prepare(_Indexed(), "i", CompositeQuery(images=[novel, indexed], text="in red"), recording)
    assert encoded == [1]  # only the image the index does not hold
    expected = (tiny_encoder.encode_images([novel])[0] + stored) / 2
    assert np.allclose(both.image / np.linalg.norm(both.image), expected / np.linalg.norm(expected), atol=1e-5)


def test_reference_exclusion_and_input_errors(tiny_encoder):
    class _Indexed(_EmptyIndex):
        def get(self, index, id):
            if id == "ref1":
                return {"_id": id, "found": True, "_source": {"image_vector": [1.0] + [0.0] * (tiny_encoder.dim - 1),
                                                             "caption": ["a red dress", "a dress"]}}
            return super().get(index, id)

    prepared = prepare(_Indexed(), "i", CompositeQuery(doc_ids=["ref1"], text="in blue"), tiny_encoder)
    assert prepared.caption == "a red dress" and prepared.rewrite.text == "a blue dress"
    rendered = prepared.render("fusion")
    must_not = rendered.body["query"]["knn"]["image_vector"]["filter"]["bool"]["must_not"]
    assert must_not == [{"ids": {"values": ["ref1"]}}] and rendered.body["size"] == 11
    with pytest.raises(InputError, match="not in index"):
        prepare(_Indexed(), "i", CompositeQuery(doc_ids=["nope"], text="x"), tiny_encoder)
    text_only = prepare(_Indexed(), "i", CompositeQuery(text="a red dress"), tiny_encoder)
    with pytest.raises(InputError, match="reference image"):
        text_only.render("image_only")
    with pytest.raises(InputError, match="caption"):
        prepare(_Indexed(), "i", CompositeQuery(images=[_png((1, 2, 3))], text="red"), tiny_encoder).render("pdv")
    with pytest.raises(InputError, match="unknown strategy"):
        CompositeQuery(text="x", strategy="magic")
    with pytest.raises(InputError):
        CompositeQuery()


# -- search end to end and the `cir search` command ---------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, tiny_encoder):
    from opensearch_cir.admin import setup_index
    from opensearch_cir.engines import connect
    from opensearch_cir.ingest import Ingestor, Record

    folder = tmp_path_factory.mktemp("engine")
    client = connect(f"embedded://{folder}")
    setup_index(client, "cir-small", tiny_encoder.manifest)
    colours = {"red": (220, 20, 20), "blue": (20, 40, 220), "green": (20, 180, 40), "black": (5, 5, 5)}
    blobs = {}
    with Ingestor(client, "cir-small", tiny_encoder) as ingestor:
        for gender in ("Men", "Women"):
            for name, rgb in colours.items():
                blob = _png(tuple(min(255, c + (9 if gender == "Women" else 0)) for c in rgb))
                blobs[(gender, name)] = blob
                ingestor.add(Record(image=blob, captions=[f"Brand {gender} {name} shirt"], uri=f"{gender}-{name}.png",
                                    metadata={"gender": gender}))
    return folder, client, blobs


def test_search_hybrid_excludes_reference_filters_and_explains(small_index, tiny_encoder):
    from opensearch_cir.compose import search
    from opensearch_cir.ingest.records import document_id

    _, client, blobs = small_index
    reference = blobs[("Men", "red")]
    query = CompositeQuery(images=[reference], text="in blue instead", filters={"metadata.gender": "Men"}, k=3)
    response = search(client, "cir-small", query, tiny_encoder, explain=True)
    assert response.rewrite.text == "Brand Men blue shirt"  # the indexed caption of the reference, rewritten
    assert document_id(reference) not in response.ids and len(response) == 3
    assert all(hit.metadata["gender"] == "Men" for hit in response)
    assert response[0].caption == "Brand Men blue shirt"  # BM25 on the rewritten caption decides on this toy index
    assert set(response[0].sub_scores) == {"caption_bm25", "image_knn", "caption_knn"}
    assert all(score is not None for score in response[0].sub_scores.values())


def test_cir_search_command(small_index, tiny_encoder, tmp_path):
    from typer.testing import CliRunner

    from opensearch_cir.cli import app

    folder, _, blobs = small_index
    image = tmp_path / "ref.png"
    image.write_bytes(blobs[("Women", "green")])
    args = ["search", "--image", str(image), "--text", "make it black", "--url", f"embedded://{folder}",
            "--index", "cir-small", "--model", str(tiny_encoder.model_dir), "--k", "2"]
    result = CliRunner().invoke(app, [*args, "--explain", "--filter", "metadata.gender=Women"])
    assert result.exit_code == 0, result.output
    assert "rewritten caption: Brand Women black shirt" in result.output
    assert "  1. " in result.output and "caption_bm25=" in result.output and "[32 floats]" in result.output
    as_json = CliRunner().invoke(app, [*args, "--json", "--strategy", "fusion", "--alpha", "0.3"])
    payload = json.loads(as_json.output)
    assert len(payload["results"]) == 2 and payload["pipeline"] is None
    bad = CliRunner().invoke(app, [*args, "--strategy", "nope"])
    assert bad.exit_code == 2 and "unknown strategy" in bad.output
