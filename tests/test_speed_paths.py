"""The speed paths keep results unchanged: length-sorted, de-duplicated text batches give the same
vectors as one text at a time; ONNX Runtime's spin-wait is off unless asked for."""

from __future__ import annotations

import numpy as np
import pytest

from opensearch_cir.encoders import load_encoder


@pytest.fixture(scope="module")
def default_encoder():
    return load_encoder(None, threads=1, batch_size=4)


TEXTS = [
    "a dog runs on the grass",
    "two children play in a very large fountain in front of a tall building on a sunny day",
    "a dog runs on the grass",
    "red dress",
    "",
    "a man in a blue jacket rides a bicycle down a steep hill while others watch",
    "red dress",
]


def test_sorted_deduplicated_batches_match_one_text_at_a_time(default_encoder):
    batched = default_encoder.encode_texts(TEXTS)
    single = np.stack([default_encoder.encode_texts([text])[0] for text in TEXTS])
    assert batched.shape == (len(TEXTS), default_encoder.dim)
    cosine = np.sum(batched * single, axis=1)
    # the default text graph is int8 with dynamic quantisation: activation scales are computed per
    # batch, so any change of batch company moves a vector by ~1e-3 (the unsorted path did too)
    assert cosine.min() > 0.995
    assert np.array_equal(batched[0], batched[2]) and np.array_equal(batched[3], batched[6])


def test_spin_wait_is_off_by_default(default_encoder):
    for session in default_encoder._sessions.values():
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = load_encoder(None, threads=1, spin_wait=True)
    options = spinning._sessions["text"].get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


class _CountingEncoder:
    """Wraps an encoder and records every text it is asked to encode."""

    def __init__(self, encoder):
        self.inner = encoder
        self.texts: list[str] = []

    def encode_texts(self, texts):
        self.texts += list(texts)
        return self.inner.encode_texts(texts)

    def encode_images(self, items):
        return self.inner.encode_images(items)


class _EmptyIndex:
    def get(self, index, id):
        from opensearch_cir.errors import EngineError

        raise EngineError(f"document {id} not found", status=404)


@pytest.mark.parametrize("strategy", ["hybrid", "fusion", "pdv", "rewrite", "image_only", "bm25", "caption_aware"])
def test_a_search_encodes_only_its_strategys_texts_and_renders_the_same(default_encoder, strategy):
    import io

    from PIL import Image

    from opensearch_cir.compose import CompositeQuery, prepare

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(buffer, format="PNG")
    query = CompositeQuery(images=[buffer.getvalue()], text="in navy blue instead", negative="a hood",
                           caption="Puma Men Black T-shirt", k=5, strategy=strategy)
    everything, lean = _CountingEncoder(default_encoder), _CountingEncoder(default_encoder)
    full = prepare(_EmptyIndex(), "i", query, everything).render()
    only = prepare(_EmptyIndex(), "i", query, lean, only_strategy=True).render()
    assert len(everything.texts) == 5 and len(lean.texts) <= len(everything.texts)
    if strategy in ("hybrid", "fusion", "image_only", "bm25"):
        assert "Puma Men Black T-shirt in navy blue instead" not in lean.texts  # PDV's text, unused
    _assert_same_body(only.body, full.body)


def _assert_same_body(a, b):
    """Equal DSL, vectors compared by cosine (int8 text vectors move ~1e-3 with their batch)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_same_body(a[key], b[key])
    elif isinstance(a, list) and a and isinstance(a[0], float):
        u, v = np.asarray(a), np.asarray(b)
        assert u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) > 0.995
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_body(x, y)
    else:
        assert a == b


def _clustered(n, dim, seed=0):
    """Unit vectors of low intrinsic dimension (16-d latent clusters mapped to `dim`), like embeddings."""
    latent = np.random.default_rng(99)
    projection, centres = latent.normal(size=(16, dim)), latent.normal(size=(20, 16))
    rng = np.random.default_rng(seed)
    rows = (centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, 16))) @ projection
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_quantizer_levels_and_codes():
    from opensearch_cir.engines.embedded.quantize import WIDEN_BLOCK, Codebook, bytes_per_vector
    from opensearch_cir.scoring.knn import raw_similarity

    rows = _clustered(500, 64)
    assert [bytes_per_vector(level, 256) for level in ("1x", "2x", "4x", "8x", "16x", "32x")] == [1024, 512, 256, 128, 64, 32]
    for level in ("2x", "4x", "8x", "16x", "32x"):
        book = Codebook.train(level, rows)
        codes = book.encode(rows)
        assert codes.nbytes == len(rows) * bytes_per_vector(level, 64)
        approx = book.first_pass(rows[0], codes, "innerproduct")
        assert approx.argmax() == 0 or approx[0] == approx.max()  # a row is (one of) its own nearest codes
    # 2x / 4x codes are widened a block at a time: the same scores as widening them all at once
    many = _clustered(WIDEN_BLOCK * 2 + 37, 64, seed=5)
    for level in ("2x", "4x"):
        book = Codebook.train(level, many)
        codes = book.encode(many)
        for space in ("innerproduct", "l2", "cosinesimil"):
            whole = raw_similarity(many[3], book.decode(codes), space)
            np.testing.assert_allclose(book.first_pass(many[3], codes, space), -whole if space == "l2" else whole,
                                       rtol=1e-5, atol=1e-6)
    # thermometer thresholds: a higher value never has fewer bits set (k-NN MultiBitScalarQuantizer)
    book = Codebook.train("8x", rows)
    low, high = rows[:1].copy(), rows[:1] + 1.0
    assert np.unpackbits(book.encode(high)).sum() >= np.unpackbits(book.encode(low)).sum()


@pytest.mark.parametrize("level", ["2x", "4x", "8x", "16x", "32x"])
def test_on_disk_compressed_field_rescores_to_near_exact_recall(tmp_path, level):
    from opensearch_cir.engines.embedded import EmbeddedClient

    dim, n = 64, 3000
    rows = _clustered(n, dim)
    client = EmbeddedClient(tmp_path / "e")
    vector = {"type": "knn_vector", "dimension": dim, "space_type": "innerproduct"}
    client.indices.create(index="cir-c", body={"mappings": {"properties": {
        "exact": vector, "packed": {**vector, "mode": "on_disk", "compression_level": level}}}})
    body = []
    for i, row in enumerate(rows):
        body += [{"index": {"_index": "cir-c", "_id": str(i)}}, {"exact": row.tolist(), "packed": row.tolist()}]
    client.bulk(body=body)
    queries = _clustered(40, dim, seed=1)
    hits = 0
    for q in queries:
        truth = set(np.argsort(-(rows @ q))[:10].astype(str))
        response = client.search(index="cir-c", body={"size": 10, "_source": False,
                                                      "query": {"knn": {"packed": {"vector": q.tolist(), "k": 10}}}})
        found = [h["_id"] for h in response["hits"]["hits"]]
        hits += len(truth & set(found))
        top = response["hits"]["hits"][0]
        assert top["_score"] == pytest.approx(1 + float(rows[int(top["_id"])] @ q), abs=1e-5)  # rescored: exact score
    assert hits / (10 * len(queries)) >= 0.93


@pytest.mark.parametrize("level", ["2x", "4x"])
def test_a_filtered_scan_of_compressed_codes_keeps_to_the_filter(tmp_path, monkeypatch, level):
    from opensearch_cir.engines.embedded import EmbeddedClient, vectors

    monkeypatch.setattr(vectors, "EXACT_SEARCH_MAX_VALUES", 0)  # no exact shortcut: the codes are scanned
    dim, n = 32, 400
    rows = _clustered(n, dim)
    client = EmbeddedClient(tmp_path / "e")
    client.indices.create(index="cir-f", body={"mappings": {"properties": {
        "half": {"type": "keyword"},
        "packed": {"type": "knn_vector", "dimension": dim, "space_type": "innerproduct", "mode": "on_disk",
                   "compression_level": level}}}})
    body = []
    for i, row in enumerate(rows):
        body += [{"index": {"_index": "cir-f", "_id": str(i)}}, {"half": "even" if i % 2 == 0 else "odd", "packed": row.tolist()}]
    client.bulk(body=body)
    q = _clustered(1, dim, seed=3)[0]
    even = np.arange(0, n, 2)
    truth = [str(i) for i in even[np.argsort(-(rows[even] @ q))[:10]]]
    response = client.search(index="cir-f", body={"size": 10, "_source": False, "query": {"knn": {"packed": {
        "vector": q.tolist(), "k": 10, "filter": {"term": {"half": "even"}}}}}})
    assert [h["_id"] for h in response["hits"]["hits"]] == truth  # first pass over the 200 even rows, rescored


def test_compression_settings_are_checked(tmp_path):
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.errors import EngineError

    client = EmbeddedClient(tmp_path / "e")
    with pytest.raises(EngineError, match="compression_level"):
        client.indices.create(index="cir-bad", body={"mappings": {"properties": {
            "v": {"type": "knn_vector", "dimension": 8, "compression_level": "3x"}}}})


def test_shards_partition_the_input_and_parse():
    from opensearch_cir.errors import InputError
    from opensearch_cir.ingest.shards import parse_shard, shard, shard_total

    items = list(range(11))
    parts = [list(shard(items, i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == items and [len(p) for p in parts] == [shard_total(11, i, 3) for i in range(3)]
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "a/2", "1", "-1/2"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_two_workers_index_every_image_once_and_a_rerun_is_idempotent(tmp_path):
    from PIL import Image

    from opensearch_cir.admin import setup_index
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.ingest import ingest
    from opensearch_cir.ingest.shards import ingest_sharded, shard

    encoder = load_encoder(build_tiny_model(tmp_path / "tiny"), threads=1)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(9):
        Image.new("RGB", (24, 24), (i * 25, 255 - i * 25, 7)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"square number {i}")
    client = EmbeddedClient(tmp_path / "engine")
    setup_index(client, "cir-shards", encoder.manifest)
    report = ingest_sharded(client, "cir-shards", encoder, folder, parallel=2, batch_size=2)
    assert (report.input, report.indexed, report.failed) == (9, 9, 0)
    assert client.count(index="cir-shards")["count"] == 9
    # worker 1 of 2 run again (a retried machine): the same documents are updated, none added
    from opensearch_cir.ingest.sources import open_source

    records, _ = open_source(folder)
    again = ingest(client, "cir-shards", encoder, list(shard(records, 1, 2)))
    assert again.indexed == 4 and client.count(index="cir-shards")["count"] == 9


def test_cli_ingest_shard_and_parallel(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from opensearch_cir.cli import app
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.engines.embedded import EmbeddedClient

    model = build_tiny_model(tmp_path / "tiny")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (24, 24), (i * 40, 9, 9)).save(folder / f"img{i}.png")
    def base(engine: str) -> list[str]:  # one engine folder per run: the CLI keeps its writer lock
        return ["ingest", str(folder), "--url", f"embedded://{tmp_path / engine}", "--index", "cir-cli",
                "--model", str(model), "--device", "cpu"]

    first = CliRunner().invoke(app, [*base("one"), "--shard", "0/2"])
    assert first.exit_code == 0, first.output
    assert EmbeddedClient(tmp_path / "one").count(index="cir-cli")["count"] == 3  # images 0, 2, 4
    both = CliRunner().invoke(app, [*base("two"), "--parallel", "2", "--errors", str(tmp_path / "e.jsonl")])
    assert both.exit_code == 0, both.output
    assert "indexed 5" in both.output
    assert EmbeddedClient(tmp_path / "two").count(index="cir-cli")["count"] == 5
    bad = CliRunner().invoke(app, [*base("three"), "--shard", "2/2"])
    assert bad.exit_code != 0 and "--shard" in bad.output


def test_texts_needed_per_strategy():
    """A search encodes only what its strategy reads: the hybrids need the rewritten caption (BM25 and
    the caption k-NN), phi_hybrid too; PDV the reference caption; image_only just the negatives."""
    from opensearch_cir.compose.prepare import texts_needed
    from opensearch_cir.compose.query import Weights

    weights = Weights()
    assert texts_needed("image_only", weights) == {"negative"}
    assert texts_needed("fusion", weights) == {"negative", "text"}
    assert texts_needed("pdv", weights) == {"negative", "text", "caption", "caption_with_text"}
    assert {"text", "rewritten"} <= texts_needed("hybrid", weights)
    assert texts_needed("phi_hybrid", weights) == {"negative", "text", "rewritten"}


def test_parallel_shards_share_the_cores_out_as_lanes(monkeypatch):
    from opensearch_cir.encoders import batches
    from opensearch_cir.ingest import ingestor, shards
    from opensearch_cir.ingest.report import IngestReport

    seen = []
    monkeypatch.setattr(batches, "available_cores", lambda: 4)
    monkeypatch.setattr(ingestor, "ingest", lambda *args, **options: seen.append(options["workers"]) or IngestReport())
    shards.ingest_sharded(None, "cir", None, [], parallel=2)
    assert seen == [2, 2]  # 4 cores, 2 Ingestors: 2 lanes each
    seen.clear()
    shards.ingest_sharded(None, "cir", None, [], parallel=2, workers=3)
    assert seen == [3, 3]  # asked for: kept
