"""The benchmarks' real-embedding corpus: Flickr8k (train + dev) and the fashion catalog, encoded
once with the default model and cached as .npz (never inside the repository).

    from corpus import load_corpus
    corpus = load_corpus(limit=40_000)   # ids, captions, image / caption vectors, query texts

The cache folder is `$CIR_BENCH_CACHE` (default: <tmp>/cir-bench-cache). Needs `../shared/data`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opensearch_cir.datasets.fashion import FashionCatalog
from opensearch_cir.datasets.flickr8k import Flickr8k
from opensearch_cir.encoders import load_encoder
from opensearch_cir.encoders.preprocess import load_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Corpus:
    ids: list[str]
    captions: list[str]
    image_vectors: np.ndarray  # float32 [N, D], unit norm
    caption_vectors: np.ndarray  # float32 [N, D], unit norm (mean of an image's captions)
    queries: list[str]  # Flickr8k dev captions: text→image queries


def cache_dir() -> Path:
    path = Path(os.environ.get("CIR_BENCH_CACHE") or Path(tempfile.gettempdir()) / "cir-bench-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> Path:
    root = Path(os.environ.get("CIR_DATA") or DATA)
    if not (root / "flickr8k").is_dir():
        raise SystemExit(f"no data under {root}: set CIR_DATA to the shared data folder")
    return root


def _encode_images(encoder, blobs: list[bytes], batch: int = 128) -> np.ndarray:
    out = []
    for start in range(0, len(blobs), batch):
        pixels = np.stack([encoder.preprocess(load_image(b)) for b in blobs[start:start + batch]])
        out.append(encoder.encode_pixels(pixels))
    return np.concatenate(out)


def _mean_rows(vectors: np.ndarray, counts: list[int]) -> np.ndarray:
    bounds = np.cumsum([0, *counts])
    means = np.stack([vectors[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def load_corpus(limit: int | None = None) -> Corpus:
    """Flickr8k train + dev images first, then fashion products, at most `limit` documents."""
    target = cache_dir() / "corpus-v1.npz"
    if not target.exists():
        root = data_root()
        encoder = load_encoder(None, batch_size=64)
        ids, captions, blobs, caption_lists = [], [], [], []
        for split in ("train", "dev"):
            flickr = Flickr8k(root / "flickr8k", split)
            for name, data in flickr.iter_images():
                ids.append(f"flickr:{name}")
                caption_lists.append(flickr.captions[name])
                captions.append(flickr.captions[name][0])
                blobs.append(data)
        queries = [text for texts in caption_lists[-1000:] for text in texts]  # the dev split's captions
        for product, data in FashionCatalog(root / "fashion").iter_images():
            ids.append(f"fashion:{product.product_id}")
            caption_lists.append([product.title])
            captions.append(product.title)
            blobs.append(data)
        print(f"encoding {len(blobs)} images and {sum(map(len, caption_lists))} captions once (cached in {target})")
        image_vectors = _encode_images(encoder, blobs)
        flat = [text for texts in caption_lists for text in texts]
        caption_vectors = _mean_rows(encoder.encode_texts(flat), [len(texts) for texts in caption_lists])
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, ids=np.array(ids), captions=np.array(captions), queries=np.array(queries),
                 image_vectors=image_vectors.astype(np.float32), caption_vectors=caption_vectors.astype(np.float32))
        os.replace(tmp, target)
    with np.load(target) as data:
        n = len(data["ids"]) if limit is None else min(limit, len(data["ids"]))
        return Corpus(ids=[str(x) for x in data["ids"][:n]], captions=[str(x) for x in data["captions"][:n]],
                      image_vectors=data["image_vectors"][:n], caption_vectors=data["caption_vectors"][:n],
                      queries=[str(x) for x in data["queries"]])


if __name__ == "__main__":
    corpus = load_corpus()
    print(len(corpus.ids), corpus.image_vectors.shape, len(corpus.queries))


def query_vectors(texts: list[str]) -> np.ndarray:
    """The text tower's vectors of `texts`, cached beside the corpus."""
    path = cache_dir() / f"queries-{len(texts)}.npy"
    if not path.exists():
        np.save(path, load_encoder(None).encode_texts(texts))
    return np.load(path)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean recall@k of each row of `found` against the same row of `truth`."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@dataclass
class RecallCase:
    """Text→image recall on real embeddings: the options, the corpus, its image vectors, the query
    vectors (Flickr8k dev captions) and the exact inner-product top 10 of each query."""

    args: argparse.Namespace
    corpus: Corpus
    vectors: np.ndarray
    queries: np.ndarray
    truth: np.ndarray


def text_to_image_case(description: str) -> RecallCase:
    """The recall benchmarks' common setup (`--docs` / `--queries` options), see `RecallCase`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    corpus = load_corpus(args.docs)
    vectors = np.ascontiguousarray(corpus.image_vectors)
    queries = query_vectors(corpus.queries)[: args.queries]
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    return RecallCase(args, corpus, vectors, queries, truth)
