"""What each reranker costs per query: engine requests, response bytes and milliseconds, measured in
one run against one index (the user path: `compose.search` with the full `_source`).

    nice -n 5 python benchmarks/rerank_cost.py --url embedded://runs/eval/engine \\
        --index cir-eval-fashion-dev-3943 --queries 30

References are the first N documents of the index (by `match_all` order); the text is
"in red instead". Without a reranker the first stage asks for k = 10 hits without vectors; with one it
asks for K hits (`--depth`, default 100) with their vectors in `_source`.
"""

from __future__ import annotations

import argparse
import json
import time

from opensearch_cir.compose import CompositeQuery, search
from opensearch_cir.encoders import load_encoder
from opensearch_cir.engines import connect

CHAINS = ("", "exact", "intersection", "expansion", "clauses", "exact,intersection")


class CountingClient:
    """Counts the search requests and the JSON bytes of their responses."""

    def __init__(self, client):
        self.client, self.requests, self.bytes = client, 0, 0

    def search(self, **kwargs):
        response = self.client.search(**kwargs)
        self.requests += 1
        self.bytes += len(json.dumps(response))
        return response

    def __getattr__(self, name):
        return getattr(self.client, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--strategy", default="hybrid")
    args = parser.parse_args()
    client, encoder = connect(args.url), load_encoder(args.model)
    hits = client.search(index=args.index, body={"query": {"match_all": {}}, "size": args.queries,
                                                 "_source": False})["hits"]["hits"]
    references = [hit["_id"] for hit in hits]
    print(f"{len(references)} queries, strategy {args.strategy}, K = {args.depth}, index {args.index}")
    print("| rerank | requests/query | KB/query | ms/query |\n|---|---|---|---|")
    for chain in CHAINS:
        counting = CountingClient(client)
        started = time.perf_counter()
        for reference in references:
            search(counting, args.index, CompositeQuery(doc_ids=[reference], text="in red instead", strategy=args.strategy,
                                                        rerank=chain, rerank_depth=args.depth), encoder)
        seconds = time.perf_counter() - started
        n = len(references)
        print(f"| {chain or 'none'} | {counting.requests / n:g} | {counting.bytes / n / 1024:.1f} | {1000 * seconds / n:.1f} |")


if __name__ == "__main__":
    main()
