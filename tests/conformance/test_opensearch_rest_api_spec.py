"""Cases from OpenSearch's REST tests (opensearch-project/OpenSearch,
rest-api-spec/src/main/resources/rest-api-spec/test/<api>/<file>.yml), written for the embedded
client. Each test names the YAML file and the test ("quoted") whose expectation it encodes."""

from __future__ import annotations

import pytest

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.errors import EngineError, UnsupportedQueryError

SOURCE = "OpenSearch rest-api-spec"
pytestmark = pytest.mark.upstream(SOURCE)


@pytest.fixture()
def client(tmp_path):
    c = EmbeddedClient(tmp_path / "engine")
    yield c
    c.close()


def raises(status: int, error_type: str | None = None, match: str | None = None):
    """Context manager: an EngineError with this status (and type / message)."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(EngineError, match=match)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._ctx.__exit__(*exc)
            assert self.info.value.status == status, self.info.value
            if error_type is not None:
                assert self.info.value.error_type == error_type, self.info.value
            return handled

    return _Check()


# --- index/*.yml --------------------------------------------------------------------------------
def test_index_10_with_id_index_with_id(client):
    """index/10_with_id.yml "Index with ID": a unicode index name, then get; a 600-byte id is a 400."""
    r = client.index(index="test-weird-index-中文", id="1", body={"foo": "bar"})
    assert (r["_index"], r["_id"], r["_version"]) == ("test-weird-index-中文", "1", 1)
    got = client.get(index="test-weird-index-中文", id="1")
    assert (got["_version"], got["_source"]) == (1, {"foo": "bar"})
    with raises(400):
        client.index(index="idx", id="a" * 600, body={"foo": "bar"})


def test_index_12_result_index_result_field(client):
    """index/12_result.yml "Index result field": created, then updated."""
    assert client.index(index="test_index", id="1", body={"foo": "bar"})["result"] == "created"
    assert client.index(index="test_index", id="1", body={"foo": "bar"}, op_type="index")["result"] == "updated"


def test_index_20_optype_optype(client):
    """index/20_optype.yml "Optype": op_type=create twice is a conflict (409); op_type=index then gives version 2."""
    client.index(index="test_1", id="1", op_type="create", body={"foo": "bar"})
    with raises(409, "version_conflict_engine_exception"):
        client.index(index="test_1", id="1", op_type="create", body={"foo": "bar"})
    assert client.index(index="test_1", id="1", op_type="index", body={"foo": "bar"})["_version"] == 2


# --- get/70_source_filtering.yml ------------------------------------------------------------------
@pytest.fixture()
def source_doc(client):
    client.indices.create(index="test_1", body={"mappings": {"properties": {"count": {"type": "integer"}}}})
    client.index(index="test_1", id="1", body={"include": {"field1": "v1", "field2": "v2"}, "count": 1})
    return client


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"_source": "false"}, None),
        ({"_source": "true"}, {"include": {"field1": "v1", "field2": "v2"}, "count": 1}),
        ({"_source": "include.field1"}, {"include": {"field1": "v1"}}),
        ({"_source_includes": "include.field1"}, {"include": {"field1": "v1"}}),
        ({"_source_includes": "include.field1,include.field2"}, {"include": {"field1": "v1", "field2": "v2"}}),
        ({"_source_includes": "include", "_source_excludes": "*.field2"}, {"include": {"field1": "v1"}}),
    ],
)
def test_get_70_source_filtering(source_doc, params, expected):
    """get/70_source_filtering.yml "Source filtering" (each `get` of the test)."""
    got = source_doc.get(index="test_1", id="1", params=params)
    assert (got["_index"], got["_id"]) == ("test_1", "1")
    assert got.get("_source") == expected


@pytest.mark.unsupported("stored_fields: the embedded engine keeps only _source")
def test_get_70_source_filtering_stored_fields(source_doc):
    """get/70_source_filtering.yml "Source filtering": the `stored_fields: count` request."""
    with pytest.raises(UnsupportedQueryError):
        source_doc.get(index="test_1", id="1", params={"stored_fields": "count", "_source": "true"})


# --- bulk/10_basic.yml ---------------------------------------------------------------------------
def test_bulk_10_basic_array_of_objects(client):
    """bulk/10_basic.yml "Array of objects": two documents, count 2."""
    body = [{"index": {"_index": "test_index", "_id": "test_id"}}, {"f1": "v1", "f2": 42},
            {"index": {"_index": "test_index", "_id": "test_id2"}}, {"f1": "v2", "f2": 47}]
    assert not client.bulk(body=body, refresh=True)["errors"]
    assert client.count(index="test_index")["count"] == 2


def test_bulk_10_basic_empty_id(client):
    """bulk/10_basic.yml "Empty _id": a per-item 400 illegal_argument_exception, the others created."""
    body = [{"index": {"_index": "test", "_id": ""}}, {"f": 1}, {"index": {"_index": "test", "_id": "id"}}, {"f": 2},
            {"index": {"_index": "test"}}, {"f": 3}]
    r = client.bulk(body=body, refresh=True)
    assert r["errors"] is True
    first = r["items"][0]["index"]
    assert (first["status"], first["error"]["type"], first["error"]["reason"]) == (
        400, "illegal_argument_exception", "if _id is specified it must not be empty")
    assert [r["items"][i]["index"]["result"] for i in (1, 2)] == ["created", "created"]
    assert client.count(index="test")["count"] == 2


def test_bulk_10_basic_empty_id_with_op_type_create(client):
    """bulk/10_basic.yml "Empty _id with op_type create": create without id and index with op_type create."""
    body = [{"index": {"_index": "test", "_id": ""}}, {"f": 1}, {"index": {"_index": "test", "_id": "id"}}, {"f": 2},
            {"index": {"_index": "test"}}, {"f": 3}, {"create": {"_index": "test"}}, {"f": 4},
            {"index": {"_index": "test", "op_type": "create"}}, {"f": 5}]
    r = client.bulk(body=body, refresh=True)
    assert r["items"][0]["index"]["status"] == 400
    assert r["items"][3]["create"]["result"] == "created" and r["items"][4]["create"]["result"] == "created"
    assert client.count(index="test")["count"] == 4


def test_bulk_10_basic_empty_action(client):
    """bulk/10_basic.yml "empty action": an empty action line is a malformed request."""
    with raises(400, match="Malformed action/metadata line \\[3\\]"):
        client.bulk(body='{"index": {"_index": "test_index", "_id": "test_id"}}\n{"f1": "v1", "f2": 42}\n{}\n')


@pytest.mark.unsupported("the bulk require_alias flag is not supported by the embedded engine")
def test_bulk_10_basic_require_alias(client):
    """bulk/10_basic.yml "When setting require_alias flag per request"."""
    client.indices.create(index="backing_index", body={"mappings": {}, "aliases": {"test_require_alias": {}}})
    with pytest.raises(UnsupportedQueryError):
        client.bulk(body=[{"index": {"_index": "new_index_not_created", "require_alias": True}}, {"f": 1}])


def test_bulk_10_basic_alias_without_write_index(client):
    """bulk/10_basic.yml "Return item-level error when no write index defined for an alias"."""
    client.indices.create(index="test_index1")
    client.indices.create(index="test_index2")
    client.indices.put_alias(index="test_index1", name="test_index")
    client.indices.put_alias(index="test_index2", name="test_index")
    r = client.bulk(body=['{"index": {"_index": "test_index"}}', '{"field": "test"}'])
    item = r["items"][0]["index"]
    assert r["errors"] is True and item["status"] == 400 and item["error"]["type"] == "illegal_argument_exception"
    assert item["error"]["reason"].startswith("no write index is defined for alias [test_index]")


def test_alias_with_one_index_reads_and_writes(client):
    """bulk/10_basic.yml "When setting require_alias flag per request": writing through an alias
    with one index (items.2 / items.3 created), then reading through it."""
    client.indices.create(index="backing_index", body={"mappings": {}, "aliases": {"test_require_alias": {}}})
    r = client.bulk(body=[{"index": {"_index": "test_require_alias"}}, {"f": 3}, {"create": {"_index": "test_require_alias"}}, {"f": 4}])
    assert [next(iter(i.values()))["result"] for i in r["items"]] == ["created", "created"]
    assert all(next(iter(i.values()))["_index"] == "backing_index" for i in r["items"])
    hits = client.search(index="test_require_alias", body={"query": {"match_all": {}}})["hits"]
    assert hits["total"]["value"] == 2 and hits["hits"][0]["_index"] == "backing_index"
    assert client.indices.get_alias(index="backing_index") == {"backing_index": {"aliases": {"test_require_alias": {}}}}


# --- search/*.yml --------------------------------------------------------------------------------
@pytest.fixture()
def two_indices(client):
    client.indices.create(index="test_2")
    client.indices.create(index="test_1")
    client.index(index="test_1", id="1", body={"foo": "bar"})
    client.index(index="test_2", id="42", body={"foo": "bar"})
    return client


def test_search_20_default_values_basic_search(two_indices):
    """search/20_default_values.yml "Basic search": per-index match on a dynamic string."""
    for index, doc_id in (("test_1", "1"), ("test_2", "42")):
        hits = two_indices.search(index=index, body={"query": {"match": {"foo": "bar"}}})["hits"]
        assert hits["total"]["value"] == 1 and (hits["hits"][0]["_index"], hits["hits"][0]["_id"]) == (index, doc_id)


def test_search_20_default_values_basic_search_all(two_indices):
    """search/20_default_values.yml "Basic search": the `index: _all` request finds both documents;
    so do a comma list and a wildcard."""
    for expression in ("_all", "test_1,test_2", "test_*"):
        hits = two_indices.search(index=expression, body={"query": {"match": {"foo": "bar"}}})["hits"]
        assert hits["total"]["value"] == 2 and {h["_index"] for h in hits["hits"]} == {"test_1", "test_2"}
    assert two_indices.count(index="_all")["count"] == 2


def test_search_20_default_values_body_without_query(two_indices):
    """search/20_default_values.yml "Search body without query element": bad_request."""
    with pytest.raises(EngineError) as info:
        two_indices.search(index="test_1", body={"match": {"foo": "bar"}})
    assert info.value.status == 400


def test_search_20_default_values_new_response_format(two_indices):
    """search/20_default_values.yml "Search with new response format": total is {value, relation}
    (the upstream request names no index: all of them)."""
    hits = two_indices.search(index="_all", body={"query": {"match_all": {}}})["hits"]
    assert hits["total"] == {"value": 2, "relation": "eq"}


@pytest.fixture()
def limits(client):
    client.indices.create(index="test_1", body={"settings": {"index.max_docvalue_fields_search": 2, "index.max_script_fields": 2}})
    client.index(index="test_1", id="1", body={"foo": "bar"})
    return client


def test_search_30_limits_request_window_without_scroll(limits):
    """search/30_limits.yml "Request window limits without scroll"."""
    with raises(400, match=r"Result window is too large, from \+ size must be less than or equal to: \[10000\] but was \[10010\]\. See the scroll api"):
        limits.search(index="test_1", params={"from": 10000})


def test_search_30_limits_negative_from(limits):
    """search/30_limits.yml "Request with negative from value"."""
    with raises(400, match=r"\[from\] parameter cannot be negative"):
        limits.search(index="test_1", params={"from": -2})


def test_search_30_limits_max_result_window_setting(client):
    """search/30_limits.yml "Request window limits without scroll", with the window set lower (the
    message names the [index.max_result_window] setting)."""
    client.indices.create(index="small", body={"settings": {"index.max_result_window": 5}})
    with raises(400, match=r"\[5\] but was \[10\]"):
        client.search(index="small", body={"size": 10})


@pytest.fixture()
def max_score(client):
    client.indices.create(index="test_1", body={"mappings": {"properties": {"foo": {"type": "keyword"}}}})
    client.bulk(body=[{"index": {"_index": "test_1"}}, {"foo": "bar"}, {"index": {"_index": "test_1"}}, {"foo": "bar"}], refresh=True)
    return client


def test_search_400_max_score_keyword_term_is_constant_score(max_score):
    """search/400_max_score.yml "Test max score with sorting on score firstly": a keyword term query
    scores 1.0 (constant score since 3.x), so max_score is 1.0."""
    hits = max_score.search(index="test_1", body={"query": {"term": {"foo": "bar"}}})["hits"]
    assert hits["total"]["value"] == 2 and len(hits["hits"]) == 2 and hits["max_score"] == 1.0


@pytest.mark.parametrize("order, expected", [("desc", 1.0), ("asc", None)])
def test_search_400_max_score_sort_on_score(max_score, order, expected):
    """search/400_max_score.yml "Test max score with sorting on score firstly": the sorted requests."""
    body = {"query": {"term": {"foo": "bar"}}, "sort": [{"_score": order}, {"_doc": "desc"}]}
    hits = max_score.search(index="test_1", body=body)["hits"]
    assert hits["total"]["value"] == 2 and len(hits["hits"]) == 2 and hits["max_score"] == expected


@pytest.fixture()
def long_sort(client):
    client.indices.create(index="long_sort", body={"mappings": {"properties": {"field": {"type": "long"}}}})
    body = []
    for doc_id, values in (("1", [9223372036854775807, 1]), ("2", [922337203685477777, 2]), ("3", [2147483647, 3, 4]), ("4", [2147483648, 5, -1, -2])):
        body += [{"index": {"_index": "long_sort", "_id": doc_id}}, {"field": values}]
    client.bulk(body=body, refresh=True)
    return client


@pytest.mark.parametrize(
    "mode, order, ids, sort_values",
    [
        ("max", "desc", ["1", "2", "4", "3"], [None, None, 2147483648, 2147483647]),
        ("max", "asc", ["3", "4", "2", "1"], [2147483647, 2147483648, None, None]),
        ("min", "desc", ["3", "2", "1", "4"], [3, 2, 1, -2]),
    ],
)
def test_search_260_sort_long(long_sort, mode, order, ids, sort_values):
    """search/260_sort_long.yml "test sorting against long only fields" (mode max/min requests).
    Known deviation: longs beyond 2^53 sort in the right order but their sort values are rounded
    (stored as float64), so those values (None above) are not compared."""
    hits = long_sort.search(index="long_sort", body={"size": 5, "sort": [{"field": {"mode": mode, "order": order}}]})["hits"]
    assert hits["total"]["value"] == 4 and [h["_id"] for h in hits["hits"]] == ids
    for hit, expected in zip(hits["hits"], sort_values):
        if expected is not None:
            assert hit["sort"] == [expected]


@pytest.mark.unsupported("sort modes median / avg / sum")
def test_search_260_sort_long_median(long_sort):
    """search/260_sort_long.yml "test sorting against long only fields" (mode median/avg/sum requests)."""
    with pytest.raises(UnsupportedQueryError):
        long_sort.search(index="long_sort", body={"size": 5, "sort": [{"field": {"mode": "median", "order": "asc"}}]})


# --- indices.put_mapping/10_basic.yml, indices.put_settings ------------------------------------------
def test_put_mapping_10_basic_create_and_update_mapping(client):
    """indices.put_mapping/10_basic.yml "Test Create and update mapping"."""
    client.indices.create(index="test_index")
    client.indices.put_mapping(index="test_index", body={"properties": {
        "text1": {"type": "text", "analyzer": "whitespace"}, "text2": {"type": "text", "analyzer": "whitespace"},
        "subfield.text3": {"type": "text"}}})
    props = client.indices.get_mapping(index="test_index")["test_index"]["mappings"]["properties"]
    assert props["text1"] == {"type": "text", "analyzer": "whitespace"} and props["text2"]["analyzer"] == "whitespace"
    client.indices.put_mapping(index="test_index", body={"properties": {"text1": {"type": "text", "analyzer": "whitespace", "fields": {"text_raw": {"type": "keyword"}}}}})
    props = client.indices.get_mapping(index="test_index")["test_index"]["mappings"]["properties"]
    assert props["text1"]["type"] == "text" and props["subfield"]["properties"]["text3"]["type"] == "text"
    assert props["text1"]["fields"]["text_raw"]["type"] == "keyword"
    client.index(index="test_index", id="1", body={"text1": "Hello World", "subfield": {"text3": "x"}})
    assert client.search(index="test_index", body={"query": {"term": {"text1.text_raw": "Hello World"}}})["hits"]["total"]["value"] == 1
    assert client.search(index="test_index", body={"query": {"match": {"text1": "Hello"}}})["hits"]["total"]["value"] == 1


def test_put_mapping_10_basic_invalid_mappings(client):
    """indices.put_mapping/10_basic.yml "Create index with invalid mappings": an empty field name."""
    client.indices.create(index="test_index")
    with raises(400, "illegal_argument_exception"):
        client.indices.put_mapping(index="test_index", body={"properties": {"": {"type": "keyword"}}})


def test_put_mapping_10_basic_explicit_doc_type(client):
    """indices.put_mapping/10_basic.yml "Put mappings with explicit _doc type"."""
    client.indices.create(index="test_index")
    with raises(400, "illegal_argument_exception", match="Types cannot be provided in put mapping requests"):
        client.indices.put_mapping(index="test_index", body={"_doc": {"properties": {"field": {"type": "keyword"}}}})


def test_put_mapping_10_basic_update_per_field_metadata(client):
    """indices.put_mapping/10_basic.yml "Update per-field metadata"."""
    client.indices.create(index="test_index", body={"mappings": {"properties": {"foo": {"type": "keyword", "meta": {"bar": "baz"}}}}})
    client.indices.put_mapping(index="test_index", body={"properties": {"foo": {"type": "keyword", "meta": {"baz": "quux"}}}})
    assert client.indices.get_mapping(index="test_index")["test_index"]["mappings"]["properties"]["foo"]["meta"] == {"baz": "quux"}


def test_put_settings_dynamic_and_static(client):
    """indices.put_settings: a dynamic setting (index.max_result_window) applies at once; a static
    one (number_of_shards) is refused for an open index (MetadataUpdateSettingsService)."""
    client.indices.create(index="test_index")
    client.indices.put_settings(index="test_index", body={"index": {"max_result_window": 3}})
    assert client.indices.get_settings(index="test_index")["test_index"]["settings"]["index"]["max_result_window"] == "3"
    with raises(400, match="Result window is too large"):
        client.search(index="test_index", body={"size": 4})
    with raises(400, "illegal_argument_exception", match="Can't update non dynamic settings"):
        client.indices.put_settings(index="test_index", body={"index": {"number_of_shards": 2}})


# --- search/160_exists_query.yml -------------------------------------------------------------------
EXISTS_TYPES = ("boolean", "date", "keyword", "byte", "double", "float", "half_float", "integer", "long", "short")


@pytest.fixture()
def exists_indices(client):
    """The setup of search/160_exists_query.yml, without the field types the embedded engine does
    not map (binary, geo_point, ip, match_only_text: `dynamic: false` leaves them unindexed)."""
    properties = {t: {"type": t} for t in EXISTS_TYPES}
    properties["object"] = {"type": "object", "properties": {"inner1": {"type": "keyword"}, "inner2": {"type": "keyword"}}}
    properties["text"] = {"type": "text"}
    client.indices.create(index="test", body={"mappings": {"dynamic": False, "properties": properties}})
    common = {"binary": "YWJjZGUxMjM0", "date": "2017-01-01", "geo_point": [0.0, 20.0], "ip": "192.168.0.1", "keyword": "foo",
              "byte": 1, "double": 1.0, "float": 1.0, "half_float": 1.0, "integer": 1, "long": 1, "short": 1, "text": "foo bar",
              "match_only_text": "foo bar"}
    client.index(index="test", id="1", body={**common, "boolean": True, "object": {"inner1": "foo", "inner2": "bar"}})
    client.index(index="test", id="2", body={**common, "boolean": False, "object": {"inner1": "foo"}})
    client.index(index="test", id="3", body={**common, "boolean": True, "object": {"inner2": "bar"}})
    client.index(index="test", id="4", body={})
    client.indices.create(index="test-unmapped", body={"mappings": {"dynamic": False, "properties": {"unrelated": {"type": "keyword"}}}})
    client.index(index="test-unmapped", id="1", body={"unrelated": "foo"})
    client.indices.create(index="test-empty", body={"mappings": {"dynamic": False, "properties": properties}})
    return client


def exists_total(client, index, field):
    return client.search(index=index, body={"query": {"exists": {"field": field}}})["hits"]["total"]["value"]


@pytest.mark.parametrize("field, expected", [(t, 3) for t in EXISTS_TYPES] + [("object", 3), ("object.inner1", 2), ("text", 3)])
def test_search_160_exists_query_on_mapped_field(exists_indices, field, expected):
    """search/160_exists_query.yml "Test exists query on mapped <type> field" (and object / inner field)."""
    assert exists_total(exists_indices, "test", field) == expected


@pytest.mark.parametrize("field", ["_id", "_index", "_seq_no", "_version"])
def test_search_160_exists_query_on_metadata_field(exists_indices, field):
    """search/160_exists_query.yml "Test exists query on _id / _index / _seq_no / _version field": 4."""
    assert exists_total(exists_indices, "test", field) == 4


def test_search_160_exists_query_on_source_field(exists_indices):
    """search/160_exists_query.yml "Test exists query on _source field": query_shard_exception."""
    with raises(400, "query_shard_exception"):
        exists_total(exists_indices, "test", "_source")


@pytest.mark.parametrize("index", ["test-unmapped", "test-empty"])
@pytest.mark.parametrize("field", EXISTS_TYPES + ("object", "text"))
def test_search_160_exists_query_on_unmapped_or_empty(exists_indices, index, field):
    """search/160_exists_query.yml "Test exists query on unmapped <type> field" and "... on <type> field in empty index": 0."""
    assert exists_total(exists_indices, index, field) == 0


@pytest.mark.unsupported("binary, geo_point, ip and match_only_text field types")
@pytest.mark.parametrize("kind", ["binary", "geo_point", "ip", "match_only_text"])
def test_search_160_exists_query_unsupported_types(client, kind):
    """search/160_exists_query.yml setup: the field types the embedded engine refuses to map."""
    with pytest.raises(UnsupportedQueryError):
        client.indices.create(index="t", body={"mappings": {"properties": {"f": {"type": kind}}}})


@pytest.mark.unsupported("routing")
def test_search_160_exists_query_on_routing_field(exists_indices):
    """search/160_exists_query.yml "Test exists query on _routing field"."""
    with pytest.raises(UnsupportedQueryError):
        exists_total(exists_indices, "test", "_routing")
