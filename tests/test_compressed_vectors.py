"""byte / binary `knn_vector` fields and the knn `rescore` parameter in the embedded engine.

Upstream behaviour (opensearch-project/k-NN at 2.19.0.0 and 3.3.0.0): mapping checks from
KNNVectorFieldMapper (validateModeAndCompressionForDataType), SpaceType.validateVectorDataType,
AbstractKNNLibrary (binary dimension), VectorDataType.get; value checks from KNNValidationUtil;
scores from SpaceType.scoreTranslation; rescore from KNNQueryBuilderParser, RescoreParser,
RescoreContext.getFirstPassK and CompressionLevel.getDefaultRescoreContext (their tests:
KNNVectorFieldMapperTests, KNNQueryBuilderTests, RescoreParserTests, RescoreContextTests,
CompressionLevelTests).
"""

from __future__ import annotations

import numpy as np
import pytest

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.errors import EngineError, UnsupportedQueryError


def _client(tmp_path, field: dict, **kwargs) -> EmbeddedClient:
    client = EmbeddedClient(tmp_path / "e", **kwargs)
    client.indices.create(index="cir-q", body={"settings": {"index": {"knn": True}},
                                              "mappings": {"properties": {"v": {"type": "knn_vector", **field}}}})
    return client


def _index(client, rows) -> None:
    body = []
    for i, row in enumerate(rows):
        body += [{"index": {"_index": "cir-q", "_id": str(i)}}, {"v": [int(x) for x in row]}]
    response = client.bulk(body=body, refresh=True)
    assert not response["errors"], response


def _knn(client, vector, k=5, **extra):
    body = {"size": k, "query": {"knn": {"v": {"vector": [int(x) for x in vector], "k": k, **extra}}}}
    return client.search(index="cir-q", body=body)["hits"]["hits"]


@pytest.mark.parametrize(("field", "message"), [
    ({"dimension": 12, "data_type": "binary"}, "Dimension should be multiply of 8 for binary vector data type"),
    ({"dimension": 16, "data_type": "binary", "space_type": "l2"}, r"Space type \[l2\] is not supported with \[binary\] data type"),
    ({"dimension": 16, "data_type": "byte", "space_type": "hamming"}, r"Space type \[hamming\] is not supported with \[byte\] data type"),
    ({"dimension": 16, "data_type": "half"}, r"Invalid value provided for \[data_type\] field. Supported values are \[binary,byte,float\]"),
    ({"dimension": 16, "data_type": "byte", "mode": "on_disk"}, "Compression and mode cannot be used for non-float32 data type for field v"),
    ({"dimension": 16, "data_type": "binary", "compression_level": "32x"}, "Compression and mode cannot be used for non-float32"),
])
def test_mapping_refuses_what_knn_refuses(tmp_path, field, message):
    with pytest.raises(EngineError, match=message) as raised:
        _client(tmp_path, field)
    assert raised.value.status == 400


def test_binary_defaults_to_hamming(tmp_path):
    client = _client(tmp_path, {"dimension": 16, "data_type": "binary"})
    assert client._store("cir-q").vector_fields["v"].space == "hamming"  # SpaceType.DEFAULT_BINARY


@pytest.mark.parametrize(("data_type", "value", "message"), [
    ("byte", [1.5] + [0] * 7, r"\[data_type\] field was set as \[byte\] in index mapping. But, KNN vector values are floats instead of byte integers"),
    ("byte", [128] + [0] * 7, r"are not within in the byte range \[-128, 127\]"),
    ("byte", [0] * 7, "Vector dimension mismatch. Expected: 8, Given: 7"),
    ("binary", [0, 0], "The dimension of the binary vector must be 8 times the length of the provided vector. Expected: 8, Given: 16"),
    ("binary", [-129], r"\[data_type\] field was set as \[binary\] in index mapping. But, KNN vector values are not within"),
])
def test_document_values_are_checked(tmp_path, data_type, value, message):
    client = _client(tmp_path, {"dimension": 8, "data_type": data_type})
    response = client.bulk(body=[{"index": {"_index": "cir-q", "_id": "1"}}, {"v": value}])
    error = response["items"][0]["index"]["error"]
    assert error["type"] == "mapper_parsing_exception"
    assert __import__("re").search(message, error["reason"]), error["reason"]


@pytest.mark.parametrize("space", ["l2", "innerproduct", "cosinesimil"])
@pytest.mark.parametrize("threshold", [10**9, 1])  # exact, then the HNSW graph (faiss SQ8_direct_signed / flat)
def test_byte_field_scores_like_knn(tmp_path, space, threshold):
    rng = np.random.default_rng(0)
    rows = rng.integers(-128, 128, size=(300, 16))
    rows[0] = rows[0] | 1  # no zero vector for cosinesimil
    client = _client(tmp_path, {"dimension": 16, "data_type": "byte", "space_type": space}, hnsw_threshold=threshold)
    _index(client, rows)
    query = rng.integers(-128, 128, size=16)
    hits = _knn(client, query)
    x, q = rows.astype(np.float64), query.astype(np.float64)
    if space == "l2":
        scores = 1 / (1 + ((x - q) ** 2).sum(1))
    elif space == "innerproduct":
        dots = x @ q
        scores = np.where(dots >= 0, dots + 1, 1 / (1 - dots))
    else:
        cos = x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
        scores = (1 + cos) / 2
    want = np.argsort(-scores, kind="stable")[:5]
    assert [int(h["_id"]) for h in hits] == want.tolist()
    assert [h["_score"] for h in hits] == pytest.approx(scores[want].tolist(), rel=1e-5)
    source = client.get(index="cir-q", id="3")["_source"]["v"]
    assert source == rows[3].tolist() and all(isinstance(x, int) for x in source)


@pytest.mark.parametrize("threshold", [10**9, 1])  # exact, then faiss IndexBinaryHNSW
def test_binary_field_scores_by_hamming_distance(tmp_path, threshold):
    rng = np.random.default_rng(1)
    rows = rng.integers(-128, 128, size=(400, 4))  # 32 bits per document
    client = _client(tmp_path, {"dimension": 32, "data_type": "binary"}, hnsw_threshold=threshold)
    _index(client, rows)
    query = rng.integers(-128, 128, size=4)
    bits = np.unpackbits(rows.astype(np.int8).view(np.uint8), axis=1)
    distance = (bits != np.unpackbits(query.astype(np.int8).view(np.uint8))).sum(1)
    hits = _knn(client, query, k=10)
    assert [h["_score"] for h in hits] == pytest.approx(sorted(1 / (1 + distance), reverse=True)[:10])
    assert [1 / (1 + distance[int(h["_id"])]) for h in hits] == pytest.approx([h["_score"] for h in hits])
    with pytest.raises(EngineError, match="Query vector has invalid dimension: 24. Dimension should be: 32"):
        _knn(client, query[:3])
    with pytest.raises(UnsupportedQueryError, match="Binary data type does not support radial search"):
        client.search(index="cir-q", body={"query": {"knn": {"v": {"vector": query.tolist(), "min_score": 0.5}}}})
    assert client.get(index="cir-q", id="7")["_source"]["v"] == rows[7].tolist()


def test_byte_query_values_are_checked(tmp_path):
    client = _client(tmp_path, {"dimension": 4, "data_type": "byte"})
    _index(client, [[1, 2, 3, 4]])
    with pytest.raises(EngineError, match="are floats instead of byte integers") as raised:
        client.search(index="cir-q", body={"query": {"knn": {"v": {"vector": [1.5, 2, 3, 4], "k": 1}}}})
    assert raised.value.status == 400


def test_first_pass_size_follows_rescore_context():
    from opensearch_cir.engines.embedded.quantize import default_oversample, first_pass_size

    # CompressionLevel 3.3: on_disk only; 8x-32x 5.0 up to 1000-d, level default above; 4x 1.0
    assert default_oversample("32x", "on_disk", 256) == 5.0 and default_oversample("32x", "on_disk", 1024) == 3.0
    assert default_oversample("8x", "on_disk", 1536) == 2.0 and default_oversample("4x", "on_disk", 256) == 1.0
    assert default_oversample("32x", "in_memory", 256) is None and default_oversample("2x", "on_disk", 256) is None
    # getFirstPassK: k x factor within [100, 10000]; shard-level rescoring disabled: 1/2/3 by dimension
    assert first_pass_size(10, 5.0, 256, user_provided=False) == 100
    assert first_pass_size(50, 5.0, 256, user_provided=False) == 250
    assert first_pass_size(5000, 5.0, 256, user_provided=True) == 10_000
    assert first_pass_size(50, 5.0, 256, user_provided=False, shard_level_rescoring_disabled=True) == 150
    assert first_pass_size(200, 5.0, 800, user_provided=False, shard_level_rescoring_disabled=True) == 400
    assert first_pass_size(200, 7.0, 256, user_provided=True, shard_level_rescoring_disabled=True) == 1400


def _float_index(tmp_path, **field):
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(2000, 16)).astype(np.float32)
    client = EmbeddedClient(tmp_path / "f", hnsw_threshold=1)
    client.indices.create(index="cir-q", body={"mappings": {"properties": {
        "v": {"type": "knn_vector", "dimension": 16, "space_type": "l2", **field}}}})
    body = []
    for i, row in enumerate(rows):
        body += [{"index": {"_index": "cir-q", "_id": str(i)}}, {"v": row.tolist()}]
    client.bulk(body=body, refresh=True)
    return client, rows, rng.normal(size=16).astype(np.float32)


def test_rescore_is_validated_like_rescore_parser(tmp_path):
    client, _, query = _float_index(tmp_path)

    def search(**knn):
        return client.search(index="cir-q", body={"query": {"knn": {"v": {"vector": query.tolist(), **knn}}}})

    with pytest.raises(EngineError, match=r"Oversample factor \[0.500000\] cannot be less than \[1.000000\]"):
        search(k=5, rescore={"oversample_factor": 0.5})
    with pytest.raises(EngineError, match=r"Oversample factor \[101.000000\] cannot be more than \[100.000000\]"):
        search(k=5, rescore={"oversample_factor": 101})
    with pytest.raises(EngineError, match=r"not allowed together: \[rescore, min_score\]"):
        search(min_score=0.5, rescore=True)
    with pytest.raises(EngineError):
        search(k=5, rescore={"oversample": 2})  # ObjectParser: [rescore] unknown field [oversample]
    for rescore in (True, False, {"oversample_factor": 3.0}):
        assert len(search(k=5, rescore=rescore)["hits"]["hits"]) == 5


def test_rescore_widens_the_hnsw_first_pass(tmp_path):
    """A tiny ef_search loses neighbours; rescore keeps oversample x k candidates and ranks them exactly."""
    client, rows, query = _float_index(tmp_path, method={"name": "hnsw", "engine": "faiss",
                                                         "parameters": {"m": 4, "ef_construction": 8}})
    truth = np.argsort(((rows - query) ** 2).sum(1))[:10].tolist()

    def found(**extra):
        body = {"size": 10, "query": {"knn": {"v": {"vector": query.tolist(), "k": 10,
                                                    "method_parameters": {"ef_search": 10}, **extra}}}}
        return [int(h["_id"]) for h in client.search(index="cir-q", body=body)["hits"]["hits"]]

    plain, rescored = (len(set(ids) & set(truth)) for ids in (found(), found(rescore={"oversample_factor": 50})))
    assert rescored >= 9 and rescored > plain, (plain, rescored)  # 500 candidates ranked exactly


def test_rescore_false_and_radial_on_compressed_fields(tmp_path):
    client, rows, query = _float_index(tmp_path, mode="on_disk", compression_level="32x")
    body = {"size": 10, "query": {"knn": {"v": {"vector": query.tolist(), "k": 10, "rescore": False}}}}
    assert len(client.search(index="cir-q", body=body)["hits"]["hits"]) == 10
    with pytest.raises(UnsupportedQueryError, match="Radial search is not supported for indices which have quantization"):
        client.search(index="cir-q", body={"query": {"knn": {"v": {"vector": query.tolist(), "max_distance": 3.0}}}})


def test_compressed_field_graph_and_memory_mapped_codes(tmp_path):
    """Above the HNSW threshold an 8x-32x field searches a faiss binary HNSW over its codes (k-NN
    builds BHNSW over quantized vectors), rescored from the rows; codes and codebook are files,
    memory-mapped and reused by the next process."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 128))
    rows = (centres[rng.integers(0, 20, 3000)] + 0.5 * rng.normal(size=(3000, 128))).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    client = EmbeddedClient(tmp_path / "e", hnsw_threshold=1000)
    client.indices.create(index="cir-q", body={"mappings": {"properties": {
        "v": {"type": "knn_vector", "dimension": 128, "space_type": "innerproduct", "mode": "on_disk", "compression_level": "32x"}}}})
    body = []
    for i, row in enumerate(rows):
        body += [{"index": {"_index": "cir-q", "_id": str(i)}}, {"v": row.tolist()}]
    client.bulk(body=body)
    client.indices.refresh(index="cir-q")  # builds the graphs above the threshold
    field = client._store("cir-q").vector_fields["v"]
    assert field._hnsw is not None and field._hnsw.ntotal == 3000 and field._hnsw.code_size == 16  # 128 bits
    assert isinstance(field._codes, np.memmap)
    folder = tmp_path / "e" / "cir-q" / "vectors"
    assert (folder / "v.32x.codebook.npz").exists() and (folder / "v.32x.codes.npy").exists()
    queries = rows[:30] + 0.1 * rng.normal(size=(30, 128)).astype(np.float32)

    def recall(c):
        hits = 0
        for q in queries:
            response = c.search(index="cir-q", body={"size": 10, "query": {"knn": {"v": {"vector": q.tolist(), "k": 10}}}})
            hits += len(set(np.argsort(-(rows @ q))[:10].astype(str)) & {h["_id"] for h in response["hits"]["hits"]})
        return hits / 300

    first = recall(client)
    assert first >= 0.8  # a scan of the codes: 0.94; the graph over 1-bit codes loses a little (ties)
    client.close()
    again = EmbeddedClient(tmp_path / "e", hnsw_threshold=1000)
    assert recall(again) == first  # the same codebook, codes and cached graph
    reopened = again._store("cir-q").vector_fields["v"]
    assert reopened._hnsw is not None and reopened._hnsw_rows == 3000


def test_a_reopened_float_graph_is_memory_mapped_and_still_grows(tmp_path):
    """A cold open maps the cached graph's vectors (faiss IO_FLAG_MMAP_IFC); adding documents
    later reloads it unmapped first (faiss aborts on adding to a mapped graph)."""
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(1500, 16)).astype(np.float32)

    def add(client, begin, end):
        body = []
        for i in range(begin, end):
            body += [{"index": {"_index": "cir-q", "_id": str(i)}}, {"v": rows[i].tolist()}]
        client.bulk(body=body)
        client.indices.refresh(index="cir-q")

    client = EmbeddedClient(tmp_path / "e", hnsw_threshold=500)
    client.indices.create(index="cir-q", body={"mappings": {"properties": {"v": {"type": "knn_vector", "dimension": 16}}}})
    add(client, 0, 1000)
    client.close()
    client = EmbeddedClient(tmp_path / "e", hnsw_threshold=500)
    query = {"size": 3, "query": {"knn": {"v": {"vector": rows[7].tolist(), "k": 3}}}}
    assert client.search(index="cir-q", body=query)["hits"]["hits"][0]["_id"] == "7"
    field = client._store("cir-q").vector_fields["v"]
    assert field._mapped and field._hnsw_rows == 1000
    add(client, 1000, 1500)
    assert not field._mapped and field._hnsw.ntotal == 1500
    query["query"]["knn"]["v"]["vector"] = rows[1234].tolist()
    assert client.search(index="cir-q", body=query)["hits"]["hits"][0]["_id"] == "1234"
