"""byte / binary vectors and `rescore` on the OpenSearch request path: encoding, rendering,
validation against the API spec and the version table (k-NN FaissHNSWMethod / LuceneHNSWMethod
SUPPORTED_DATA_TYPES, RescoreParser, CompressionLevel at their tags)."""

from __future__ import annotations

import numpy as np
import pytest

from opensearch_cir import dsl
from opensearch_cir.dialect import Dialect, UnsupportedFeatureError
from opensearch_cir.dsl.validate import validate_request
from opensearch_cir.errors import BodyValidationError
from opensearch_cir.dsl.vector_encoding import byte_scale, decode, encode, encode_list, field_data_types
from opensearch_cir.dsl.version_rules import version_errors


def test_byte_encoding_keeps_inner_product_order():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, 256)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    query = rows[0] + 0.1 * rng.normal(size=256).astype(np.float32)
    codes = encode(rows, "byte")
    assert codes.dtype == np.int8 and codes.shape == rows.shape
    assert np.abs(codes.astype(np.float32) / byte_scale(256) - rows).max() <= 0.5 / byte_scale(256) + 1e-6
    exact = np.argsort(-(rows @ query))[:10]
    approx = np.argsort(-(codes.astype(np.float32) @ encode(query, "byte").astype(np.float32)))[:10]
    assert len(set(exact) & set(approx)) >= 9
    assert encode([10.0, -10.0], "byte").tolist() == [127, -128]  # saturates, never wraps


def test_binary_encoding_packs_sign_bits_as_int8():
    vector = np.array([1, -1, 1, 1, -1, -1, -1, 1, -1] + [1] * 7, dtype=np.float32)
    packed = encode(vector, "binary")
    assert packed.tolist() == [np.uint8(0b10110001).astype(np.int8), np.uint8(0b01111111).astype(np.int8)]
    assert encode_list(vector, "binary") == [-79, 127]
    with pytest.raises(ValueError, match="multiple of 8"):
        encode(np.ones(12), "binary")


def test_stored_vectors_decode_back_to_the_float_scale():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for vector in vectors:
        assert np.array_equal(decode(vector.tolist()), vector)
        byte = decode(encode_list(vector, "byte"), "byte")
        assert np.abs(byte - vector).max() <= 0.5 / byte_scale(64) + 1e-7
        binary = decode(encode_list(vector, "binary"), "binary")
        assert binary.shape == (64,) and np.isclose(np.linalg.norm(binary), 1.0)
        assert np.array_equal(binary > 0, vector > 0)
    with pytest.raises(ValueError, match="data_type"):
        decode([1.0], "half")


def test_knn_clause_renders_rescore_and_encoded_vectors():
    clause = dsl.knn_clause("image_vector", [0.5, -0.25, 0.1, 0.0, 0.3, -0.2, 0.9, -0.9], 10,
                            rescore=3, data_type="binary")
    params = clause["knn"]["image_vector"]
    assert params["rescore"] == {"oversample_factor": 3.0} and params["vector"] == [int(np.int8(np.uint8(0b10101010)))]
    assert dsl.knn_clause("v", [0.1, 0.2], 5, rescore=False)["knn"]["v"]["rescore"] is False
    assert all(isinstance(x, int) for x in dsl.knn_clause("v", [0.1, 0.2], 5, data_type="byte")["knn"]["v"]["vector"])
    assert "rescore" not in dsl.knn_clause("v", [0.1, 0.2], 5)["knn"]["v"]
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        dsl.knn_clause("v", [0.1, 0.2], 5, rescore=0.5)
    with pytest.raises(UnsupportedFeatureError, match="2.17.0"):
        dsl.knn_clause("v", [0.1, 0.2], 5, rescore=2.0, dialect=Dialect.of("2.16.0"))


def test_requests_are_validated():
    body = {"query": {"knn": {"v": {"vector": [1.0, 2.0], "k": 5, "rescore": {"oversample_factor": 2.0}}}}}
    validate_request("search", body)  # accepted by our rules and the OpenAPI spec's KnnQueryRescore
    for bad in ({"oversample_factor": 0.5}, {"oversample": 2}, "yes"):
        with pytest.raises(BodyValidationError, match="rescore"):
            validate_request("search", {"query": {"knn": {"v": {"vector": [1.0], "k": 1, "rescore": bad}}}})
    mapping = {"settings": {"index": {"knn": True}}, "mappings": {"properties": {
        "bits": {"type": "knn_vector", "dimension": 256, "data_type": "binary"},
        "ints": {"type": "knn_vector", "dimension": 256, "data_type": "byte", "space_type": "innerproduct"},
        "disk": {"type": "knn_vector", "dimension": 256, "mode": "on_disk", "compression_level": "16x"}}}}
    validate_request("indices.create", mapping)
    for field, message in (({"data_type": "binary", "dimension": 12}, "multiple of 8"),
                           ({"data_type": "byte", "mode": "on_disk"}, "float only"),
                           ({"compression_level": "3x"}, "compression_level")):
        bad = {"settings": {"index": {"knn": True}},
               "mappings": {"properties": {"v": {"type": "knn_vector", "dimension": 16, **field}}}}
        with pytest.raises(BodyValidationError, match=message):
            validate_request("indices.create", bad)


def test_version_table_rules_for_vector_types():
    template = {"template": {"mappings": {"properties": {
        "b": {"type": "knn_vector", "dimension": 64, "data_type": "binary", "method": {"name": "hnsw", "engine": "lucene"}},
        "d": {"type": "knn_vector", "dimension": 64, "mode": "on_disk"}}}}}
    assert version_errors("indices.put_index_template", template, Dialect.of("2.19.0")) == []
    errors = version_errors("indices.put_index_template", template, Dialect.of("2.16.0"))
    assert any("data_type: binary` on the lucene engine needs OpenSearch 2.19.0" in e for e in errors)
    assert any("mode" in e and "2.17.0" in e for e in errors)


def test_field_data_types_read_a_mapping():
    mapping = {"mappings": {"properties": {"image_vector": {"type": "knn_vector", "dimension": 8, "data_type": "byte"},
                                           "caption_vector": {"type": "knn_vector", "dimension": 8},
                                           "caption": {"type": "text"}}}}
    assert field_data_types(mapping) == {"image_vector": "byte", "caption_vector": "float"}


@pytest.mark.parametrize("storage", ["byte", "binary", "on_disk-8x"])
def test_setup_ingest_and_search_with_a_vector_storage(tmp_path, storage):
    """`cir setup --vectors`: the template's vector fields take the storage's overrides
    (index_templates/vector-storage.json); ingestion writes and compose queries send vectors the
    way the field takes them; the index keeps its storage on later setups."""
    from PIL import Image

    from opensearch_cir.admin import setup_index
    from opensearch_cir.compose import CompositeQuery, search
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.errors import CIRError
    from opensearch_cir.ingest import ingest
    from opensearch_cir.ingest.sources import open_source

    encoder = load_encoder(build_tiny_model(tmp_path / "tiny"), threads=1)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (24, 24), (i * 40, 255 - i * 40, 7 * i)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"square number {i}")
    client = EmbeddedClient(tmp_path / "engine")
    setup_index(client, "cir-v", encoder.manifest, vectors=storage)
    field = client.indices.get_mapping(index="cir-v")["cir-v"]["mappings"]["properties"]["image_vector"]
    assert field.get("data_type", "float") == {"byte": "byte", "binary": "binary"}.get(storage, "float")
    records, _ = open_source(folder)
    assert ingest(client, "cir-v", encoder, records).indexed == 6
    source = client.search(index="cir-v", body={"size": 1, "query": {"match_all": {}}})["hits"]["hits"][0]["_source"]
    if storage in ("byte", "binary"):
        assert all(isinstance(v, int) for v in source["image_vector"] + source["caption_vector"])
    response = search(client, "cir-v", CompositeQuery(images=[str(folder / "img2.png")], strategy="image_only",
                                                       exclude_reference=False), encoder)
    assert response.results and response.results[0].id == client.search(
        index="cir-v", body={"query": {"term": {"image_uri": str(folder / "img2.png")}}})["hits"]["hits"][0]["_id"]
    knn = response.rendered.body["query"]["knn"]["image_vector"]
    assert all(isinstance(v, int) for v in knn["vector"]) == (storage in ("byte", "binary"))
    # a reference by id: its stored vector (bytes or bits in _source) is decoded back to the float scale
    by_id = search(client, "cir-v", CompositeQuery(doc_ids=[response.results[0].id], strategy="image_only",
                                                    exclude_reference=False), encoder)
    assert by_id.results[0].id == response.results[0].id
    assert by_id.rendered.body["query"]["knn"]["image_vector"]["vector"] == knn["vector"]
    setup_index(client, "cir-v", encoder.manifest)  # keeps the index's storage
    with pytest.raises(CIRError, match="re-create it"):
        setup_index(client, "cir-v", encoder.manifest, vectors="float" if storage != "float" else "byte")
