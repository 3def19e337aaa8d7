"""Training recipe of the default model: loss, augmentation, and a 2-step smoke run on scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from opensearch_cir.datasets import generate_catalog, render
from opensearch_cir.training.cache import cached_images, pooled_text_vectors
from opensearch_cir.training.data import Domain, TrainingData
from opensearch_cir.training.train import contrastive_loss, load_checkpoint, lr_factor, random_resized_crops, train

torch.set_num_threads(1)


def test_contrastive_loss_against_hand_computed_values():
    emb = torch.eye(2)
    lse = math.log(math.e + 1)  # logits [[1, 0], [0, 1]] at scale 1
    distinct = contrastive_loss(emb, emb, torch.tensor([0, 1]), torch.tensor(0.0))
    same = contrastive_loss(emb, emb, torch.tensor([7, 7]), torch.tensor(0.0))  # one caption: both positive
    assert float(distinct) == pytest.approx(lse - 1, rel=1e-5)
    assert float(same) == pytest.approx(lse - 0.5, rel=1e-5)


def test_random_resized_crops_shape_range_and_determinism():
    images = torch.randint(0, 256, (4, 20, 20, 3), dtype=torch.uint8)
    a = random_resized_crops(images, 16, 0.5, True, torch.Generator().manual_seed(1))
    b = random_resized_crops(images, 16, 0.5, True, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_two_step_training_on_scenes(tmp_path):
    records = generate_catalog(1000, 12)
    images = cached_images(tmp_path, "scenes", len(records), lambda: (render(r.scene, 24) for r in records), 24)
    texts = [r.caption for r in records]
    vectors = np.random.default_rng(0).normal(size=(12, 384)).astype(np.float32)  # stand-in for MiniLM
    data = TrainingData([Domain("scenes", images, np.arange(12)[:, None], 8, False, 0.8)], texts, vectors)
    config = {
        "seed": 0, "dim": 16, "image_size": 16, "widths": [8, 16], "stem": 8, "steps": 2, "lr": 1e-3,
        "text_lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 1, "init_temperature": 0.07, "ema_decay": 0.9,
        "eval_every": 1, "threads": 1, "mean": [0.5] * 3, "std": [0.25] * 3,
    }  # fmt: skip
    train(config, data, None, tmp_path / "run")
    losses = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3  # step 0, 1, 2
    _, tower, projection = load_checkpoint(tmp_path / "run" / "last.pt")
    emb = tower(torch.zeros(2, 3, 16, 16))
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    torch.manual_seed(0)
    from opensearch_cir.training.models import ImageTower

    fresh = ImageTower(16, (8, 16), 8)
    assert not torch.equal(fresh.proj.weight, tower.proj.weight)


def test_pooled_text_vectors_are_cached_and_similar_for_similar_texts(tmp_path):
    texts = ["a red circle", "a red circle in the center", "a dog runs on the beach"]
    vectors = pooled_text_vectors(texts, tmp_path)
    assert vectors.shape == (3, 384) and len(list(tmp_path.glob("text-*.npy"))) == 1
    assert np.array_equal(pooled_text_vectors(texts, tmp_path), vectors)  # second call reads the cache
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


def test_model_card_metrics_against_hand_computed_values():
    from opensearch_cir.training.evaluate import flickr_scores, precision_at_k

    images = np.eye(3)
    captions = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1], [0.6, 0, 0.4]])
    scores = flickr_scores(images, captions, np.array([0, 0, 1, 1, 2, 2]))
    assert scores["t2i"]["recall@1"] == pytest.approx(5 / 6, abs=1e-4)  # the last caption ranks image 2 second
    assert scores["t2i"]["recall@5"] == 1.0 and scores["i2t"]["recall@1"] == 1.0
    precision = precision_at_k(np.array([[3.0, 2.0, 1.0]]), np.array([[True, False, True]]), k=2)
    assert precision.tolist() == [0.5]
