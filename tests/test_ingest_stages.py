"""The ingestion stages (issue 14): captions encoded per write group in the writer thread, groups
that grow up to write_batch_size while the writer is busy (and go at once when it is free), one
refused image failing alone, the spec check of the run's first document only. Vectors do not
depend on how records are grouped."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.ingest import Ingestor, Record, writer

INDEX = "cir-stages"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny")), threads=2, device="cpu")


def png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 18), color).save(buffer, format="PNG")
    return buffer.getvalue()


def records(count: int) -> list[Record]:
    return [Record(png((i * 20, 40, 90)), captions=[f"square {i}", f"a {i} coloured square", "a square"],
                   uri=f"mem://{i}") for i in range(count)]


class Recording:
    """Wraps an encoder; records each encode_texts call's size and thread."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[int, str]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_texts(self, texts):
        self.calls.append((len(texts), threading.current_thread().name))
        return self.inner.encode_texts(texts)


class SlowFirstBulk:
    """The embedded engine, its first bulk held for `delay` seconds; records each bulk's size."""

    def __init__(self, engine, delay: float = 1.0):
        self.engine, self.delay, self.bulk_sizes = engine, delay, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def bulk(self, body, **kwargs):
        if not self.bulk_sizes:
            time.sleep(self.delay)
        self.bulk_sizes.append(len(body) // 2)
        return self.engine.bulk(body=body, **kwargs)


def ingest_vectors(client, encoder, **options) -> dict[str, tuple[list, list]]:
    with Ingestor(client, INDEX, encoder, **options) as ingestor:
        ingestor.add_many(records(10))
    assert ingestor.report.indexed == 10
    hits = client.search(index=INDEX, body={"size": 20, "query": {"match_all": {}}})["hits"]["hits"]
    return {hit["_source"]["image_uri"]: (hit["_source"]["image_vector"], hit["_source"]["caption_vector"]) for hit in hits}


def test_groups_grow_to_write_batch_size_while_the_writer_is_busy(tmp_path, encoder):
    client = SlowFirstBulk(EmbeddedClient(tmp_path / "e"))
    recording = Recording(encoder)
    ingest_vectors(client, recording, batch_size=2, write_batch_size=6)
    sizes = client.bulk_sizes
    assert sum(sizes) == 10 and max(sizes) == 6 and sizes[0] == 2  # the free writer took the first batch (6 // 4 < 2)
    # each group's captions (3 per record) are encoded in one call, in the writer thread
    assert [size for size, _ in recording.calls] == [3 * size for size in sizes]
    assert all(thread.startswith("cir-write") for _, thread in recording.calls)


def test_a_free_writer_takes_a_quarter_of_a_write_batch_at_once(tmp_path, encoder):
    client = SlowFirstBulk(EmbeddedClient(tmp_path / "e"), delay=0)
    ingest_vectors(client, encoder, batch_size=2, write_batch_size=16)
    assert sum(client.bulk_sizes) == 10 and client.bulk_sizes[0] == 4  # 16 // 4, two batches of 2
    assert all(size <= 16 for size in client.bulk_sizes)


def test_vectors_do_not_depend_on_the_grouping(tmp_path, encoder):
    grouped = ingest_vectors(SlowFirstBulk(EmbeddedClient(tmp_path / "a")), encoder, batch_size=4, write_batch_size=8)
    alone = ingest_vectors(EmbeddedClient(tmp_path / "b"), encoder, batch_size=1, write_batch_size=1)
    assert grouped.keys() == alone.keys()
    for uri, (image_vector, caption_vector) in grouped.items():  # the tiny model is fp32
        np.testing.assert_allclose(image_vector, alone[uri][0], atol=1e-5)
        np.testing.assert_allclose(caption_vector, alone[uri][1], atol=1e-5)


def test_an_image_the_encoder_refuses_fails_alone(tmp_path, encoder, monkeypatch):
    from opensearch_cir.encoders.preprocess import load_image

    original = encoder.encode_pixels
    black = encoder.preprocess(load_image(png((0, 0, 0))))

    def refuses_black(pixels, **options):
        if any(np.array_equal(image, black) for image in pixels):
            raise ValueError("the image graph refused a black image")
        return original(pixels, **options)

    monkeypatch.setattr(encoder, "encode_pixels", refuses_black)
    batch = records(5) + [Record(png((0, 0, 0)), captions=["black"], source="#black")]
    client = EmbeddedClient(tmp_path / "e")
    with Ingestor(client, INDEX, encoder, batch_size=6) as ingestor:
        ingestor.add_many(batch)
    assert (ingestor.report.indexed, ingestor.report.failed) == (5, 1)
    [failure] = ingestor.report.failures
    assert (failure.source, failure.stage, failure.error) == ("#black", "encode", "ValueError")


def test_only_the_runs_first_document_is_checked_against_the_spec(tmp_path, encoder, monkeypatch):
    checked = []
    monkeypatch.setattr(writer, "validate_request", lambda kind, body: checked.append((kind, len(body))))
    ingest_vectors(EmbeddedClient(tmp_path / "e"), encoder, batch_size=2, write_batch_size=4)
    assert checked == [("bulk", 2)]  # one action + one source, once per run (3 bulks were sent)


def test_lanes_decode_and_encode_each_batch_on_their_own_thread(tmp_path, encoder, monkeypatch):
    from opensearch_cir.encoders.preprocess import ImagePreprocessor

    original, calls, decodes = encoder.encode_pixels, [], []

    def spy(pixels, **options):
        calls.append((threading.current_thread().name, len(pixels), options))
        return original(pixels, **options)

    load = ImagePreprocessor.load

    def spy_load(self, source, max_pixels):
        decodes.append(threading.current_thread().name)
        return load(self, source, max_pixels)

    monkeypatch.setattr(encoder, "encode_pixels", spy)
    monkeypatch.setattr(ImagePreprocessor, "load", spy_load)
    with Ingestor(EmbeddedClient(tmp_path / "e"), INDEX, encoder, batch_size=3, workers=2) as ingestor:
        ingestor.add_many(records(7))
    assert ingestor.report.indexed == 7
    # batches of 3, 3 and the last 1, each one graph call on the lane that decoded it (no pool inside)
    assert sorted(n for _, n, _ in calls) == [1, 3, 3]
    assert all(name.startswith("cir-lane") and options == {"side_by_side": False} for name, _, options in calls)
    assert len(decodes) == 7 and all(name.startswith("cir-lane") for name in decodes)
