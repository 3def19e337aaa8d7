"""The training mixture: Flickr8k train, the fashion catalog's train split, synthetic scenes.

Each domain is a uint8 image array plus, per image, the ids of its candidate captions in one
shared table of unique strings (whose frozen MiniLM vectors are computed once). A training step
draws a fixed number of images per domain and one random candidate caption per image; images
whose sampled captions are the same string count as positives for each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import FashionCatalog, Flickr8k, generate_catalog, render
from ..datasets.fashion import Product
from ..datasets.scenes import TRAINING_SEED_MIN
from .cache import cached_images, pooled_text_vectors


@dataclass
class Domain:
    """One image source: images uint8 [N,S,S,3], caption ids int [N,K] (-1 = none), sampling knobs."""

    name: str
    images: np.ndarray
    caption_ids: np.ndarray
    batch: int
    flip: bool
    min_crop_scale: float


@dataclass
class TrainingData:
    domains: list[Domain]
    texts: list[str]
    text_vectors: np.ndarray  # float32 [T,384]


class _TextTable:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.ids: dict[str, int] = {}

    def id(self, text: str) -> int:
        if text not in self.ids:
            self.ids[text] = len(self.texts)
            self.texts.append(text)
        return self.ids[text]

    def rows(self, captions: list[list[str]]) -> np.ndarray:
        width = max(len(c) for c in captions)
        out = np.full((len(captions), width), -1, np.int64)
        for i, texts in enumerate(captions):
            out[i, : len(texts)] = [self.id(t) for t in texts]
        return out


def product_captions(product: Product) -> list[str]:
    """Training captions of a product: its title and attribute captions from the labels."""
    colour_type = f"{product.colour} {product.article_type}".lower()
    return [product.title, product.attribute_caption, colour_type]


def build_training_data(config: dict, data_root: Path, cache_dir: Path) -> TrainingData:
    """Decode (once, cached) the images of every domain in `config["data"]` and embed the captions."""
    data_cfg, size = config["data"], config["cache_size"]
    table = _TextTable()
    domains: list[Domain] = []

    flickr = Flickr8k(data_root / "flickr8k", "train")
    images = cached_images(cache_dir, "flickr8k-train", len(flickr), lambda: _in_order(flickr), size)
    cfg = data_cfg["flickr8k"]
    domains.append(Domain("flickr8k", images, table.rows([flickr.captions[n] for n in flickr.names]),
                          cfg["batch"], True, cfg["min_crop_scale"]))  # fmt: skip

    catalog = FashionCatalog(data_root / "fashion")
    train = catalog.split("train")
    images = cached_images(cache_dir, "fashion-train", len(train), lambda: _products_in_order(catalog, train), size)
    cfg = data_cfg["fashion"]
    domains.append(Domain("fashion", images, table.rows([product_captions(p) for p in train]),
                          cfg["batch"], True, cfg["min_crop_scale"]))  # fmt: skip

    cfg = data_cfg["scenes"]
    if cfg["seed"] < TRAINING_SEED_MIN:
        raise ValueError(f"scene seeds below {TRAINING_SEED_MIN} are reserved for evaluation")
    records = generate_catalog(cfg["seed"], cfg["count"])
    images = cached_images(cache_dir, f"scenes-{cfg['seed']}-{cfg['count']}", len(records),
                           lambda: (render(r.scene, size) for r in records), size)  # fmt: skip
    domains.append(Domain("scenes", images, table.rows([[r.caption] for r in records]),
                          cfg["batch"], False, cfg["min_crop_scale"]))  # fmt: skip

    return TrainingData(domains, table.texts, pooled_text_vectors(table.texts, cache_dir))


def _in_order(flickr: Flickr8k):
    """Flickr images in split-list order (the tar order may differ)."""
    by_name = dict(flickr.iter_images())
    return (by_name[name] for name in flickr.names)


def _products_in_order(catalog: FashionCatalog, products: list[Product]):
    by_id = {p.product_id: data for p, data in catalog.iter_images()}
    return (by_id[p.product_id] for p in products)


@dataclass
class DevSet:
    """Flickr8k dev for model selection: images at model size, 5 caption vectors per image."""

    images: np.ndarray  # uint8 [N,size,size,3]
    caption_vectors: np.ndarray  # float32 [5N,384]
    caption_image: np.ndarray  # int [5N]


def build_flickr_dev(data_root: Path, cache_dir: Path, size: int, split: str = "dev") -> DevSet:
    flickr = Flickr8k(data_root / "flickr8k", split)
    images = cached_images(cache_dir, f"flickr8k-{split}", len(flickr), lambda: _in_order(flickr), size)
    pairs = flickr.caption_pairs()
    index = {name: i for i, name in enumerate(flickr.names)}
    vectors = pooled_text_vectors([t for _, t in pairs], cache_dir)
    return DevSet(np.asarray(images), vectors, np.asarray([index[n] for n, _ in pairs]))
