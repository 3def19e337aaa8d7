"""HNSW recall@10 on real embeddings: the embedded engine against faiss's own HNSW, same parameters.

    python benchmarks/hnsw.py [--docs 40000] [--queries 2000]

Documents: the image vectors of benchmarks/corpus.py (Flickr8k + fashion, default model, 256-d);
queries: Flickr8k dev captions encoded by the text tower (text→image, the hard cross-modal case).
Truth: exact inner-product top 10. The engine answers `knn` queries through `EmbeddedClient.search`
on the index benchmarks/service.py builds (graph built at refresh); faiss builds IndexHNSWFlat with
the template's m / ef_construction and searches with its ef_search, once in one `add` and once in
20k slices (what the engine did before).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import recall, text_to_image_case  # noqa: E402
from service import INDEX, build_index  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1] / "index_templates" / "cir-index-template.json"


def faiss_hnsw(vectors: np.ndarray, queries: np.ndarray, m: int, ef_construction: int, ef_search: int,
               slice_rows: int | None) -> tuple[np.ndarray, float]:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    started = time.perf_counter()
    step = slice_rows or len(vectors)
    for begin in range(0, len(vectors), step):
        index.add(vectors[begin:begin + step])
    build = time.perf_counter() - started
    index.hnsw.efSearch = ef_search
    return index.search(queries, 10)[1], build


def main() -> None:
    case = text_to_image_case(__doc__)
    args, corpus, vectors, queries, truth = case.args, case.corpus, case.vectors, case.queries, case.truth
    from opensearch_cir import dsl
    from opensearch_cir.engines.embedded import EmbeddedClient

    template = json.loads(TEMPLATE.read_text())["template"]
    params = template["mappings"]["properties"]["image_vector"]["method"]["parameters"]
    m, ef_construction, ef_search = params["m"], params["ef_construction"], params["ef_search"]

    client = EmbeddedClient(build_index(args.docs))
    position = {doc_id: i for i, doc_id in enumerate(corpus.ids)}
    engine = []
    for q in queries:
        hits = client.search(index=INDEX, body={"size": 10, "_source": False,
                                                "query": dsl.knn_clause("image_vector", q.tolist(), 10)})["hits"]["hits"]
        engine.append([position[h["_id"]] for h in hits])
    rows = [("embedded engine (one add)", recall(np.array(engine), truth), None)]
    for label, slice_rows in (("faiss IndexHNSWFlat, one add", None), ("faiss IndexHNSWFlat, 20k slices", 20_000)):
        found, build = faiss_hnsw(vectors, queries, m, ef_construction, ef_search, slice_rows)
        rows.append((label, recall(found, truth), build))
    print(f"\n{len(vectors)} documents, {len(queries)} text→image queries, m={m} ef_construction={ef_construction} "
          f"ef_search={ef_search}; load average {os.getloadavg()[0]:.1f}")
    print("| index | recall@10 | build s |")
    print("| --- | --- | --- |")
    for label, value, build in rows:
        print(f"| {label} | {value:.4f} | {'' if build is None else f'{build:.1f}'} |")
    print(f"engine / faiss one add: {rows[0][1] / rows[1][1]:.4f}")


if __name__ == "__main__":
    main()
