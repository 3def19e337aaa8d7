"""Text batches (encoders.batches): sorted by token count, padded to their own longest text,
run side by side; `encode_texts` gives every text its own vector, in the order asked, duplicates
identical, and (up to the int8 graph's per-batch activation scales) the vectors of one text at a time."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from opensearch_cir.encoders import load_encoder
from opensearch_cir.encoders.batches import BatchRunner, length_sorted_batches, trim_padding


def test_batches_cover_every_text_once_shortest_first():
    lengths = [9, 3, 7, 3, 12, 1, 5, 8, 2, 6, 4]
    batches = length_sorted_batches(lengths, batch_size=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(len(batch) <= 3 for batch in batches) and len(batches) == 4
    flat = [lengths[i] for i in np.concatenate(batches)]
    assert flat == sorted(lengths)


@pytest.mark.parametrize(("count", "batch_size", "workers", "expected"), [
    (160, 32, 2, 6),   # 5 batches would leave one worker idle in the last round
    (160, 32, 1, 5),
    (3, 32, 2, 2),     # a few texts still use both workers
    (1, 32, 4, 1),
    (0, 32, 2, 0),
])
def test_number_of_batches_is_a_multiple_of_the_workers(count, batch_size, workers, expected):
    batches = length_sorted_batches(list(range(count)), batch_size, workers)
    assert len(batches) == expected
    if batches:
        sizes = [len(batch) for batch in batches]
        assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1


def test_padding_is_cut_to_the_batchs_longest_text():
    mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    tokens = {"input_ids": mask * 7, "attention_mask": mask}
    short = trim_padding(tokens, np.array([1, 2]), pad_to_context=False)
    assert short["input_ids"].shape == (2, 3) and short["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    full = trim_padding(tokens, np.array([1, 2]), pad_to_context=True)  # e.g. SigLIP's fixed context
    assert full["input_ids"].shape == (2, 6)


def test_runner_returns_results_in_batch_order():
    seen = set()

    def run(batch):
        seen.add(threading.current_thread().name)
        time.sleep(0.02 * (3 - batch["n"][0]))  # the first batch finishes last
        return batch["n"] * 10

    results = BatchRunner(2).map(run, [{"n": np.array([i])} for i in range(3)])
    assert [r.tolist() for r in results] == [[0], [10], [20]]
    assert all(name.startswith("cir-encode") for name in seen)


TEXTS = [
    "a dog runs on the grass",
    "two children play in a very large fountain in front of a tall building on a sunny day",
    "a dog runs on the grass",
    "red dress",
    "a man in a blue jacket rides a bicycle down a steep hill while others watch",
    "",
    "a black and white dog is running through a field of tall green grass",
    "red dress",
    "people",
]


@pytest.fixture(scope="module")
def parallel_encoder():
    return load_encoder(None, threads=2, batch_size=2)


def test_parallel_sorted_batches_keep_each_texts_vector_in_place(parallel_encoder):
    batched = parallel_encoder.encode_texts(TEXTS)
    single = np.stack([parallel_encoder.encode_texts([text])[0] for text in TEXTS])
    assert batched.shape == (len(TEXTS), parallel_encoder.dim)
    similarity = batched @ single.T
    # order restored: each row is its own text's vector (int8 activations move it by ~1e-3 at most)
    assert np.diagonal(similarity).min() > 0.995
    assert (np.argmax(similarity, axis=1) == np.argmax(single @ single.T, axis=1)).all()
    assert np.array_equal(batched[0], batched[2]) and np.array_equal(batched[3], batched[7])  # duplicates


def test_both_sessions_run_on_one_thread_and_batches_side_by_side(parallel_encoder):
    for tower in ("text", "image"):
        options = parallel_encoder._sessions[tower].get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert parallel_encoder._runner.workers == 2


def test_pixel_batches_run_side_by_side_or_on_the_calling_thread(parallel_encoder, monkeypatch):
    size = parallel_encoder.manifest.image.size
    pixels = np.random.default_rng(0).standard_normal((5, 3, size, size)).astype(np.float32)
    single = np.concatenate([parallel_encoder.encode_pixels(pixels[i:i + 1]) for i in range(len(pixels))])
    calls = []
    original = parallel_encoder._run

    def spy(tower, inputs):
        calls.append((threading.current_thread().name, len(inputs["pixel_values"])))
        return original(tower, inputs)

    monkeypatch.setattr(parallel_encoder, "_run", spy)
    np.testing.assert_allclose(parallel_encoder.encode_pixels(pixels), single, atol=1e-5)
    # 5 images in batches of at most 2, rounded up to a multiple of the 2 workers: 4 batches on the pool
    assert sorted(n for _, n in calls) == [1, 1, 1, 2] and all(name.startswith("cir-encode") for name, _ in calls)
    calls.clear()
    np.testing.assert_allclose(parallel_encoder.encode_pixels(pixels, side_by_side=False), single, atol=1e-5)
    assert calls == [(threading.current_thread().name, n) for n in (2, 2, 1)]
