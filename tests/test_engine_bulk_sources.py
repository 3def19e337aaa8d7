"""The bulk's source check: sources of string fields only are written without the JSON encoder
(`SourceChecker._plain`), with the batch checked at once for escapes and lone surrogates;
what they store must be byte for byte what the general path (`dumps_compact`) writes, and the
errors the same, per document."""

from __future__ import annotations

import json

import numpy as np
import pytest

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.engines.embedded.bulk_write import SourceChecker, _number_lists, sources_without
from opensearch_cir.engines.embedded.persist import dumps_compact, read_records

INDEX = "cir-sources"
DIM = 4

TRICKY = ['a "quoted" word', "back\\slash", "new\nline", "tab\there", "nul \x00 and \x1f", "del \x7f", "line sep \u2028",
          "emoji \U0001f600", "déjà vu", "", "plain text", "</script>", "\\u0041 looks escaped"]


def make_index(root) -> EmbeddedClient:
    client = EmbeddedClient(root)
    client.indices.create(index=INDEX, body={"mappings": {"properties": {
        "caption": {"type": "text"}, "tag": {"type": "keyword"}, 'odd "name"': {"type": "keyword"},
        "v": {"type": "knn_vector", "dimension": DIM, "space_type": "l2"}}}})
    return client


def sources() -> list[dict]:
    out = [{"caption": text, "tag": "t", "v": [1.0, 0.0, 0.0, 0.0]} for text in TRICKY]
    out += [{"caption": [text, "second"], "v": np.ones(DIM, dtype=np.float32)} for text in TRICKY[:4]]
    out += [{"caption": []}, {"tag": ["x", 'y"'], "caption": "lists"}, {'odd "name"': "key needs an escape"},
            {"v": [0.0, 1.0, 0.0, 0.0]}, {}, {"caption": "null vector", "v": None}]
    out += [{"caption": "dynamic", "new_field": 3}, {"caption": "nested", "extra": {"a": "b"}}, {"caption": ["mixed", 1]},
            {"tag": True}, {"caption": None}]
    return out


def test_plain_sources_are_written_byte_for_byte_as_the_json_encoder_writes_them(tmp_path):
    client = make_index(tmp_path)
    store = client._store(INDEX, publish=False)
    checker = SourceChecker(store)
    batch = sources()
    results, _ = checker.check_all(batch)
    fast = 0
    for source, result in zip(batch, results):
        stripped = sources_without(source, store.vector_fields)
        assert result[0] == dumps_compact(json.loads(json.dumps(stripped))), source
        assert result[1] == (("v",) if source.get("v") is not None else ())
        fast += checker._plain(source, 0, {path: [None] for path in store.vector_fields}, []) is not None
    assert fast == len(TRICKY) + 4 + 5  # every source of strings only took the fast path (escapes or not)
    client.close()


def test_a_bulk_stores_and_returns_what_each_source_held(tmp_path):
    client = make_index(tmp_path)
    batch = sources()
    body = []
    for i, source in enumerate(batch):
        body += [{"index": {"_index": INDEX, "_id": f'id {i} "q"' if i % 3 == 0 else f"id-{i}"}}, source]
    response = client.bulk(body=body, refresh=True)
    assert not response["errors"], [item for item in response["items"] if "error" in item["index"]]
    store = client._store(INDEX)
    records = [record for record, _, _ in read_records(store.log_path, 0, store.log_pos)]
    assert len(records) == len(batch)
    for i, (source, record) in enumerate(zip(batch, records)):
        doc_id = f'id {i} "q"' if i % 3 == 0 else f"id-{i}"
        assert record["id"] == doc_id
        stored = client.get(index=INDEX, id=doc_id)["_source"]
        expected = {key: (np.asarray(value).tolist() if key == "v" and value is not None else value) for key, value in source.items()}
        assert stored == expected  # a null vector included, as OpenSearch returns the source it was sent
    client.close()


def test_a_lone_surrogate_fails_only_its_document_with_the_general_paths_message(tmp_path):
    client = make_index(tmp_path)
    client.bulk(body=[{"index": {"_index": INDEX, "_id": "exists"}}, {"caption": "first"}])
    body = [{"index": {"_index": INDEX, "_id": "ok-1"}}, {"caption": "fine", "v": [1.0, 0.0, 0.0, 0.0]},
            {"index": {"_index": INDEX, "_id": "plain"}}, {"caption": "half a pair \ud800", "v": [1.0, 0.0, 0.0, 0.0]},
            {"index": {"_index": INDEX, "_id": "in-list"}}, {"caption": ["fine", "\udfff low half"]},
            {"index": {"_index": INDEX, "_id": "dynamic"}}, {"caption": "x", "other": "\ud83d"},
            {"index": {"_index": INDEX, "_id": "bad-vector-too"}}, {"caption": "\ud800", "v": [1.0, 0.0]},
            {"create": {"_index": INDEX, "_id": "exists"}}, {"caption": "\ud800"},
            {"index": {"_index": INDEX, "_id": "ok-2"}}, {"caption": "fine too", "tag": 'a "tag"'}]
    items = [next(iter(item.values())) for item in client.bulk(body=body)["items"]]
    by_id = {item["_id"]: item for item in items}
    assert by_id["ok-1"]["status"] == by_id["ok-2"]["status"] == 201
    for doc_id, text in (("plain", "'\\ud800'"), ("in-list", "'\\udfff'"), ("dynamic", "'\\ud83d'")):
        assert by_id[doc_id]["status"] == 400
        assert by_id[doc_id]["error"] == {"type": "mapper_parsing_exception",
                                          "reason": f"failed to parse: invalid UTF-8 text (surrogates not allowed {text})"}
    assert "dimension" in by_id["bad-vector-too"]["error"]["reason"]  # the vector is checked first, as before
    assert by_id["exists"]["status"] == 409
    assert client.count(index=INDEX)["count"] == 3
    assert client.get(index=INDEX, id="ok-2")["_source"] == {"caption": "fine too", "tag": 'a "tag"'}
    client.close()


@pytest.mark.parametrize("caption", ["plain", 'with "quotes"'])
def test_the_plain_path_and_the_general_path_log_the_same_line(tmp_path, caption):
    """The same document through the fast path (mapped string fields) and the general one (a
    number added to the same source forces dynamic mapping, then removed from the comparison)."""
    client = make_index(tmp_path)
    client.bulk(body=[{"index": {"_index": INDEX, "_id": "fast"}}, {"caption": caption, "tag": "k"},
                      {"index": {"_index": INDEX, "_id": "general"}}, {"caption": caption, "tag": "k", "n": 1}], refresh=True)
    store = client._store(INDEX)
    records = {record["id"]: record for record, _, _ in read_records(store.log_path, 0, store.log_pos)}
    general = dict(records["general"]["source"])
    del general["n"]
    assert records["fast"]["source"] == general == {"caption": caption, "tag": "k"}
    raw = store.log_path.read_bytes()
    assert dumps_compact({"caption": caption, "tag": "k"}).encode() in raw
    client.close()


def test_vectors_as_lists_are_read_exactly_as_numpy_reads_them():
    rng = np.random.default_rng(3)
    lists = [rng.normal(size=DIM).tolist() for _ in range(5)]
    lists += [[1, 2, True, -0.0], [1e-45, 3.4e38, -1e300, 2**60], [float("nan"), 0.0, 1.0, float("inf")]]
    rows = _number_lists(lists, DIM)
    assert rows.dtype == np.float32 and rows.shape == (len(lists), DIM)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(rows, np.asarray(lists, dtype=np.float32))
    for bad in (["1.5", 0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [[0.0], 0.0, 0.0, 0.0], [None, 0.0, 0.0, 0.0], [0.0] * (DIM + 1)):
        assert _number_lists(lists[:2] + [bad], DIM) is None  # numpy and data_types.parse decide, as before


def test_a_bulk_stores_the_same_rows_and_errors_for_lists_and_arrays(tmp_path):
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(6, DIM)).astype(np.float32)
    bad = {"short": [1.0, 2.0], "nan": [float("nan"), 0.0, 0.0, 0.0], "text": ["a", "b", "c", "d"], "nested": [[1.0]] * DIM}
    stored = {}
    for form in ("list", "array"):
        client = make_index(tmp_path / form)
        body = []
        for i, vector in enumerate(vectors):
            body += [{"index": {"_index": INDEX, "_id": f"v{i}"}}, {"caption": f"doc {i}", "v": vector.tolist() if form == "list" else vector}]
        for doc_id, vector in bad.items():
            body += [{"index": {"_index": INDEX, "_id": doc_id}}, {"caption": doc_id, "v": vector}]
        items = [next(iter(item.values())) for item in client.bulk(body=body, refresh=True)["items"]]
        stored[form] = ((tmp_path / form / INDEX / "vectors" / "v.f32").read_bytes(),
                        [(item["_id"], item["status"], item.get("error")) for item in items])
        client.close()
    assert stored["list"] == stored["array"]
    rows = np.frombuffer(stored["list"][0], dtype=np.float32).reshape(-1, DIM)
    np.testing.assert_array_equal(rows, vectors)  # float64 lists of float32 values round-trip exactly
    statuses = {doc_id: status for doc_id, status, _ in stored["list"][1]}
    assert all(statuses[doc_id] == 400 for doc_id in bad) and sum(status == 201 for status in statuses.values()) == len(vectors)
