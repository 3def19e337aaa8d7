"""Text-only hybrid search: E_T(T) for the caption k-NN against E_T(rewritten T), on Flickr8k.

    python benchmarks/text_query_vectors.py [--split dev] [--images 1000]

A text-only query has no reference caption, so the rewriter only cleans the text ("A dog runs ."
→ "dog runs"); the search then encodes the text once and uses E_T(T) for both k-NN sub-queries
(`compose.prepare`), where it used to encode the cleaned text too. This checks that the second
encoding bought nothing: the split's first `--images` images are indexed with captions 2–5, each
image's first caption searches for it with the default strategy (hybrid), and recall@1/5/10 are
reported for both caption vectors on the same index and queries.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import data_root  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="dev", choices=("train", "dev"))
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()

    from opensearch_cir.compose.execute import run_prepared
    from opensearch_cir.compose.prepare import prepare
    from opensearch_cir.compose.query import CompositeQuery
    from opensearch_cir.datasets.flickr8k import Flickr8k
    from opensearch_cir.encoders.runtime import load_encoder
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.eval import metrics
    from opensearch_cir.eval.harness import build_index
    from opensearch_cir.ingest import Record
    from opensearch_cir.ingest.records import document_id

    dataset = Flickr8k(data_root() / "flickr8k", args.split)
    encoder = load_encoder()
    images = list(dataset.iter_images())[: args.images]
    doc_of = {name: document_id(blob) for name, blob in images}
    queries = [(name, dataset.captions[name][0]) for name, _ in images]
    with tempfile.TemporaryDirectory() as tmp:
        client = EmbeddedClient(Path(tmp))
        index = "text-query-vectors"
        records = (Record(image=blob, captions=dataset.captions[name][1:], uri=name) for name, blob in images)
        build_index(client, index, encoder, records, expected=len(set(doc_of.values())))
        rankings: dict[str, list[list[str]]] = {"E_T(T)": [], "E_T(rewritten T)": []}
        for _, text in queries:
            prepared = prepare(client, index, CompositeQuery(text=text, k=10), encoder, only_strategy=True)
            rewritten = prepared.rewrite.text
            variants = {"E_T(T)": prepared,
                        "E_T(rewritten T)": dataclasses.replace(
                            prepared, rewritten=encoder.encode_texts([rewritten])[0] if rewritten else None)}
            for name, variant in variants.items():
                rankings[name].append([r.id for r in run_prepared(client, index, variant, encoder).results])
    relevant = [{doc_of[name]} for name, _ in queries]
    print(f"Flickr8k {args.split}, {len(images)} images indexed with captions 2-5, their first captions as queries (hybrid)")
    print("| caption k-NN vector | recall@1 | recall@5 | recall@10 |\n| --- | --- | --- | --- |")
    for name, ranks in rankings.items():
        print(f"| {name} | " + " | ".join(f"{100 * metrics.recall_at_k(ranks, relevant, k):.1f}" for k in (1, 5, 10)) + " |")


if __name__ == "__main__":
    main()
