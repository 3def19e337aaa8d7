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


def test_ingestor_writes_in_bulks_of_write_batch_size(tmp_path):
    import io

    from PIL import Image

    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.ingest import Ingestor, Record

    encoder = load_encoder(build_tiny_model(tmp_path / "tiny"), threads=1)
    engine = EmbeddedClient(tmp_path / "engine")

    class Counting:
        def __init__(self):
            self.bulk_sizes = []

        def __getattr__(self, name):
            return getattr(engine, name)

        def bulk(self, body, **kwargs):
            self.bulk_sizes.append(len(body) // 2)
            return engine.bulk(body=body, **kwargs)

    client = Counting()
    with Ingestor(client, "cir-w", encoder, batch_size=2, write_batch_size=6) as ingestor:
        for i in range(10):
            buffer = io.BytesIO()
            Image.new("RGB", (20, 20), (i * 20, 0, 0)).save(buffer, format="PNG")
            ingestor.add(Record(buffer.getvalue(), captions=[f"square {i}", "a square"], uri=f"mem://{i}"))
    assert client.bulk_sizes == [6, 4]
    assert ingestor.report.indexed == 10
    assert engine.count(index="cir-w")["count"] == 10
