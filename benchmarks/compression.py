"""Compressed vectors: recall@10 and bytes per vector at each compression level, real embeddings.

    python benchmarks/compression.py [--docs 40000] [--queries 2000]

The image vectors of benchmarks/corpus.py; text→image queries (Flickr8k dev captions). Each level
is a `knn_vector` field with `mode: on_disk` and that `compression_level`, searched through the
embedded engine's VectorField (codes in memory, first pass, `first_pass_k` rescored from disk),
and once more without rescoring (the codes' own ranking). Truth: exact inner-product top 10.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import recall, text_to_image_case  # noqa: E402


def main() -> None:
    case = text_to_image_case(__doc__)
    vectors, queries, truth = case.vectors, case.queries, case.truth
    from opensearch_cir.engines.embedded.mapping import FieldSpec
    from opensearch_cir.engines.embedded.quantize import LEVELS, bytes_per_vector
    from opensearch_cir.engines.embedded.vectors import VectorField

    n, dim = vectors.shape
    folder = Path(tempfile.mkdtemp(prefix="cir-compression-"))
    everyone = np.ones(n, bool)
    print(f"{n} documents, {dim}-d, {len(queries)} text→image queries; load average {os.getloadavg()[0]:.1f}")
    print("| level | bytes / vector | recall@10 rescored | recall@10 codes only | ms / query |")
    print("| --- | --- | --- | --- | --- |")
    try:
        for level in LEVELS:
            spec = FieldSpec("v", "knn_vector", {"dimension": dim, "space_type": "innerproduct",
                                                 "mode": "on_disk", "compression_level": level})
            field = VectorField(folder, spec)
            if not field.path.exists():
                field.append(vectors)
            field.ensure_codes(n)
            found = {}
            started = time.perf_counter()
            for oversample in (True, False):
                field.oversample = oversample
                found[oversample] = [field.search(q, 10, everyone, n_rows=n, ef_search=100, hnsw_threshold=n + 1,
                                                  filtered=False)[0] for q in queries]
                if oversample:
                    per_query = (time.perf_counter() - started) / len(queries) * 1000
            print(f"| {level} | {bytes_per_vector(level, dim)} | {recall(np.array(found[True]), truth):.4f} | "
                  f"{recall(np.array(found[False]), truth):.4f} | {per_query:.2f} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
