"""Flickr8k retrieval: text→image and image→text Recall@1/5/10 and median rank over one split.

The split's images are indexed without captions (a caption in the index would be the answer), and
every caption (5 per image) queries them through `compose.search` (strategy `text_only`). For
image→text the captions are indexed as caption-only documents (caption + caption_vector) in a
second index, and each image's stored vector queries `caption_vector` with a k-NN clause built by
`dsl`; a hit is any of the image's own captions.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import dsl
from ..compose.execute import execute
from ..compose.prepare import prepare
from ..compose.query import CompositeQuery
from ..errors import InputError
from . import metrics
from ..ingest.records import document_id
from .harness import build_index

RECALL_KS = (1, 5, 10)


def _direction_metrics(rankings: list[list[str]], relevants: list[set[str]]) -> dict:
    result = {f"recall@{k}": metrics.recall_at_k(rankings, relevants, k) for k in RECALL_KS}
    median = metrics.median_rank(rankings, relevants)
    result["median_rank"] = None if math.isinf(median) else median
    result["queries"] = len(rankings)
    return result


def caption_id(image_name: str, number: int) -> str:
    """The document id of a caption-only document."""
    return hashlib.sha256(f"{image_name}#{number}".encode()).hexdigest()


def run(data: str | Path, client: Any, encoder: Any, *, split: str = "dev", depth: int = 100,
        limit: int | None = None) -> dict:
    """Index the split, run both directions; `depth` results per query bound the median rank;
    `limit` keeps only the first images of the split (quick runs)."""
    from ..datasets.flickr8k import Flickr8k
    from ..ingest import Record

    dataset = Flickr8k(Path(data), split)
    names = dataset.names[:limit] if limit else dataset.names
    wanted = set(names)
    images = [(name, blob) for name, blob in dataset.iter_images() if name in wanted]
    if not images:
        raise InputError(f"{data}: split {split!r} has no images")
    doc_of = {name: document_id(blob) for name, blob in images}
    image_index = f"cir-eval-flickr8k-{split}-{len(images)}"
    records = (Record(image=blob, uri=f"{split}/{name}") for name, blob in images)
    build_index(client, image_index, encoder, records, expected=len(set(doc_of.values())))
    k = min(depth, len(images))

    pairs = [(name, text) for name in doc_of for text in dataset.captions[name]]
    t2i_rankings, t2i_relevant = [], []
    for name, text in tqdm(pairs, desc="flickr8k text→image", unit="q", leave=False):
        prepared = prepare(client, image_index, CompositeQuery(text=text, strategy="text_only", k=k), encoder)
        t2i_rankings.append([r.id for r in execute(client, image_index, prepared.render(source=False))])
        t2i_relevant.append({doc_of[name]})

    caption_index = f"cir-eval-flickr8k-{split}-{len(images)}-captions"
    _index_captions(client, caption_index, encoder, dataset, list(doc_of))
    k_captions = min(depth, len(pairs))
    i2t_rankings, i2t_relevant = [], []
    for name, doc_id in tqdm(doc_of.items(), desc="flickr8k image→text", unit="q", leave=False):
        vector = client.get(index=image_index, id=doc_id)["_source"]["image_vector"]
        body = dsl.search_body(dsl.knn_clause("caption_vector", vector, k_captions), size=k_captions, source_excludes=None)
        body["_source"] = False
        hits = client.search(index=caption_index, body=body)["hits"]["hits"]
        i2t_rankings.append([hit["_id"] for hit in hits])
        i2t_relevant.append({caption_id(name, i) for i in range(len(dataset.captions[name]))})

    return {
        "benchmark": f"flickr8k {split}",
        "t2i": _direction_metrics(t2i_rankings, t2i_relevant),
        "i2t": _direction_metrics(i2t_rankings, i2t_relevant),
        "gallery": {"images": len(images), "captions": len(pairs)},
        "protocol": {"split": f"{split} (every caption and image of it)", "gallery": f"{len(images)} images / {len(pairs)} captions",
                     "ranking": f"the engine's k-NN (exact below {getattr(client, 'hnsw_threshold', 'the cluster')} documents), "
                                f"first {k} results", "settings": "text_only / image vector, nothing tuned"},
        "notes": [f"{len(images)} images, {len(pairs)} captions of split {split!r}; ranks beyond {k} count as misses"],
    }


def _index_captions(client: Any, index: str, encoder: Any, dataset: Any, names: list[str]) -> None:
    """Caption-only documents (caption + caption_vector), written with the ingestion's bulk writer."""
    from ..admin import setup_index
    from ..ingest import BulkWriter, Document

    expected = sum(len(dataset.captions[n]) for n in names)
    if client.indices.exists(index=index) and client.count(index=index)["count"] == expected:
        return
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    setup_index(client, index, encoder.manifest)
    writer = BulkWriter(client, index)
    batch: list = []
    for name in tqdm(names, desc="flickr8k captions", unit="img", leave=False):
        texts = dataset.captions[name]
        vectors = encoder.encode_texts(texts)
        for number, (text, vector) in enumerate(zip(texts, vectors)):
            batch.append(Document(caption_id(name, number), {"caption": text, "caption_vector": [float(v) for v in vector],
                                                            "model_id": encoder.model_id}, f"{name}#{number}"))
        if len(batch) >= 256:
            writer.write(batch)
            batch = []
    if batch:
        writer.write(batch)
    client.indices.refresh(index=index)
