"""Measure an exported default model (numbers for the model card):
`python -m opensearch_cir.training.evaluate --model onnx_models/default --json out.json`.

- Flickr8k dev text->image (and image->text) Recall@1/5/10 + median rank over the 1,000-image
  gallery, for the exported model and for an untrained image tower (the training seed's
  initialisation, with an untrained text projection) run through the same preprocessing.
- Fashion dev split (`datasets.fashion.is_dev_product`): text->image precision@10 for attribute
  queries (every "{colour} {article type}" and "{gender} {colour} {article type}" combination
  with at least 10 dev products, plus a few hand-written queries such as "red dress", which
  count in the mean only with at least 10 matching dev products); hit = a product with those
  attributes. Image->image precision@10: hit = same article type and colour
  (query excluded).
- CPU encode speed (images/s from JPEG bytes, texts/s) with 2 threads, batch 32.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..datasets import FashionCatalog, Flickr8k
from ..encoders import load_encoder

HANDWRITTEN_QUERIES = {
    "red dress": {"colour": "Red", "article_type": "Dresses"},
    "black dress": {"colour": "Black", "article_type": "Dresses"},
    "men black sports shoes": {"gender": "Men", "colour": "Black", "article_type": "Sports Shoes"},
    "blue jeans": {"colour": "Blue", "article_type": "Jeans"},
    "white t-shirt": {"colour": "White", "article_type": "Tshirts"},
    "women brown handbag": {"gender": "Women", "colour": "Brown", "article_type": "Handbags"},
    "black watch": {"colour": "Black", "article_type": "Watches"},
    "pink top for women": {"gender": "Women", "colour": "Pink", "article_type": "Tops"},
    "navy blue shirt": {"colour": "Navy Blue", "article_type": "Shirts"},
}


def retrieval_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the single relevant column per row (ties counted in the row's favour)."""
    target = scores[np.arange(len(scores)), relevant]
    return (scores > target[:, None]).sum(axis=1) + 1


def recall_summary(ranks: np.ndarray) -> dict:
    return {f"recall@{k}": round(float((ranks <= k).mean()), 4) for k in (1, 5, 10)} | {
        "median_rank": float(np.median(ranks))
    }


def flickr_scores(image_emb: np.ndarray, text_emb: np.ndarray, caption_image: np.ndarray) -> dict:
    """t2i: each caption against all images; i2t: best rank among an image's captions."""
    scores = text_emb @ image_emb.T
    t2i = retrieval_ranks(scores, caption_image)
    ranks_i2t = np.full(len(image_emb), np.iinfo(np.int64).max)
    order_scores = scores.T  # [images, captions]
    for caption, image in enumerate(caption_image):
        rank = int((order_scores[image] > order_scores[image, caption]).sum()) + 1
        ranks_i2t[image] = min(ranks_i2t[image], rank)
    return {"t2i": recall_summary(t2i), "i2t": recall_summary(ranks_i2t)}


def precision_at_k(scores: np.ndarray, hits: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-row precision@k; hits is a boolean [rows, gallery] relevance matrix."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(hits, top, axis=1).mean(axis=1)


def attribute_queries(products, min_matches: int = 10) -> dict[str, dict]:
    """Attribute queries with at least `min_matches` products: text -> required attributes."""
    counts: dict[str, dict] = {}
    tallies: dict[str, int] = defaultdict(int)
    for p in products:
        for attrs in ({"colour": p.colour, "article_type": p.article_type},
                      {"gender": p.gender, "colour": p.colour, "article_type": p.article_type}):  # fmt: skip
            if None in attrs.values():
                continue
            text = " ".join(attrs.values()).lower()
            counts[text] = attrs
            tallies[text] += 1
    return {t: a for t, a in sorted(counts.items()) if tallies[t] >= min_matches}


def _matches(products, attrs: dict) -> np.ndarray:
    return np.array([all(getattr(p, k) == v for k, v in attrs.items()) for p in products])


def fashion_metrics(encoder, root: Path) -> dict:
    catalog = FashionCatalog(root)
    dev_ids = {p.product_id for p in catalog.split("dev")}
    products, images = [], []
    for product, jpeg in catalog.iter_images():
        if product.product_id in dev_ids:
            products.append(product)
            images.append(jpeg)
    image_emb = encoder.encode_images(images)
    queries = attribute_queries(products)
    out = {"gallery": len(products)}
    for name, subset in (("colour_type", {t: a for t, a in queries.items() if "gender" not in a}),
                         ("gender_colour_type", {t: a for t, a in queries.items() if "gender" in a}),
                         ("handwritten", HANDWRITTEN_QUERIES)):  # fmt: skip
        texts = list(subset)
        hits = np.stack([_matches(products, subset[t]) for t in texts])
        precision = precision_at_k(encoder.encode_texts(texts) @ image_emb.T, hits)
        scored = hits.sum(axis=1) >= 10  # P@10 of a query with fewer matches is capped below 1
        out[f"t2i_p@10_{name}"] = {"mean": round(float(precision[scored].mean()), 4), "queries": int(scored.sum())}
        if name == "handwritten":
            out[f"t2i_p@10_{name}"]["per_query"] = {
                t: {"p@10": round(float(p), 2), "matches": int(m)} for t, p, m in zip(texts, precision, hits.sum(axis=1))
            }
    key = np.array([f"{p.article_type}|{p.colour}" for p in products])
    scores = image_emb @ image_emb.T
    np.fill_diagonal(scores, -np.inf)
    hits = key[:, None] == key[None, :]
    out["i2i_p@10_type_colour"] = round(float(precision_at_k(scores, hits).mean()), 4)
    return out


def flickr_metrics(encoder, root: Path) -> tuple[dict, list[bytes], list[str]]:
    flickr = Flickr8k(root, "dev")
    jpegs = dict(flickr.iter_images())
    images = [jpegs[n] for n in flickr.names]
    pairs = flickr.caption_pairs()
    index = {n: i for i, n in enumerate(flickr.names)}
    caption_image = np.array([index[n] for n, _ in pairs])
    texts = [t for _, t in pairs]
    scores = flickr_scores(encoder.encode_images(images), encoder.encode_texts(texts), caption_image)
    return scores, images, texts


def untrained_flickr(encoder, images: list[bytes], texts: list[str], caption_image: np.ndarray, config: dict) -> dict:
    """The same protocol with the seed's untrained image tower and text projection (torch)."""
    import torch

    from ..encoders.preprocess import load_image
    from .cache import pooled_text_vectors
    from .models import ImageTower, TextProjection

    torch.manual_seed(config["seed"])
    tower = ImageTower(config["dim"], tuple(config["widths"]), config["stem"]).eval()
    projection = TextProjection(config["dim"]).eval()
    with torch.inference_mode():
        pixels = torch.from_numpy(np.stack([encoder.preprocess(load_image(j)) for j in images]))
        image_emb = torch.cat([tower(pixels[i : i + 250]) for i in range(0, len(pixels), 250)]).numpy()
        from .cache import DEFAULT_CACHE

        text_emb = projection(torch.from_numpy(pooled_text_vectors(texts, DEFAULT_CACHE))).numpy()
    return flickr_scores(image_emb, text_emb, caption_image)


def encode_speed(encoder, images: list[bytes], texts: list[str]) -> dict:
    encoder.encode_images(images[:32])
    encoder.encode_texts(texts[:32])
    start = time.perf_counter()
    encoder.encode_images(images)
    images_per_s = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    encoder.encode_texts(texts)
    texts_per_s = len(texts) / (time.perf_counter() - start)
    return {"images_per_s": round(images_per_s, 1), "texts_per_s": round(texts_per_s, 1),
            "images": len(images), "texts": len(texts)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from .train import DEFAULT_DATA

    parser = argparse.ArgumentParser(description="Measure an exported default model on the dev splits.")
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict = {}
    for precision in ("fp32", "int8"):
        encoder = load_encoder(args.model, device="cpu", precision=precision, threads=args.threads)
        if precision not in encoder.manifest.variants:
            continue
        flickr, images, texts = flickr_metrics(encoder, args.data / "flickr8k")
        results[precision] = {"flickr8k_dev": flickr, "fashion_dev": fashion_metrics(encoder, args.data / "fashion"),
                              "speed_cpu_2_threads": encode_speed(encoder, images[:256], texts[:1024])}  # fmt: skip
        print(json.dumps({precision: results[precision]}, indent=1), flush=True)
    config = encoder.manifest.extra.get("training", {}).get("config")
    if config:
        flickr = Flickr8k(args.data / "flickr8k", "dev")
        index = {n: i for i, n in enumerate(flickr.names)}
        caption_image = np.array([index[n] for n, _ in flickr.caption_pairs()])
        results["untrained_flickr8k_dev"] = untrained_flickr(encoder, images, texts, caption_image, config)
        print(json.dumps({"untrained": results["untrained_flickr8k_dev"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
