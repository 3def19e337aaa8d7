"""Compressed vectors: recall@10 and bytes per vector at each compression level and data type, real embeddings.

    python benchmarks/compression.py [--docs 40000] [--queries 2000]

The image vectors of benchmarks/corpus.py; text→image queries (Flickr8k dev captions). Each float
level is a `knn_vector` field with `mode: on_disk` and that `compression_level`, searched through
the embedded engine's VectorField (codes in memory, a first pass, its candidates rescored from the
float32 rows on disk): once with the field's default rescoring (k-NN 3.3 `CompressionLevel`: 5x
oversampling for 8x-32x up to 1000-d, 1x for 4x), once with `rescore: {oversample_factor: 10}`
and once with no rescoring (`rescore: false`: the codes' own top 10). The `byte` and `binary` data
types hold the vectors as `opensearch_cir.dsl.vector_encoding` encodes them (what `cir ingest`
sends); they have no float copy to rescore from. Search is exact (no graph) so that the numbers
are the codes' own. Truth: exact inner-product top 10 over the float vectors.
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


def _search(field, queries, n, first_pass) -> tuple[list, float]:
    everyone = np.ones(n, bool)
    started = time.perf_counter()
    found = [field.search(q, 10, everyone, n_rows=n, ef_search=100, hnsw_threshold=n + 1, filtered=False,
                          first_pass=first_pass)[0] for q in queries]
    return found, (time.perf_counter() - started) / len(queries) * 1000


def main() -> None:
    case = text_to_image_case(__doc__)
    vectors, queries, truth = case.vectors, case.queries, case.truth
    from opensearch_cir.dsl.vector_encoding import encode
    from opensearch_cir.engines.embedded.mapping import FieldSpec
    from opensearch_cir.engines.embedded.quantize import LEVELS, bytes_per_vector, default_oversample, first_pass_size
    from opensearch_cir.engines.embedded.vectors import VectorField

    n, dim = vectors.shape
    folder = Path(tempfile.mkdtemp(prefix="cir-compression-"))
    print(f"{n} documents, {dim}-d, {len(queries)} text→image queries; load average {os.getloadavg()[0]:.1f}")
    print("| field | bytes / vector in memory | recall@10 default rescore (first pass) | recall@10 oversample 10 "
          "| recall@10 no rescore | ms / query (default) |")
    print("| --- | --- | --- | --- | --- | --- |")
    try:
        for level in LEVELS:
            spec = FieldSpec("v", "knn_vector", {"dimension": dim, "space_type": "innerproduct",
                                                 "mode": "on_disk", "compression_level": level})
            field = VectorField(folder, spec)
            if not field.path.exists():
                field.append(vectors)
            field.ensure_codes(n)
            factor = default_oversample(level, "on_disk", dim)
            default = first_pass_size(10, factor, dim, user_provided=False) if factor else None
            found, ms = _search(field, queries, n, default)
            wide, _ = _search(field, queries, n, first_pass_size(10, 10.0, dim, user_provided=True))
            codes_only, _ = _search(field, queries, n, None)
            print(f"| float {level} on_disk | {bytes_per_vector(level, dim)} | {recall(np.array(found), truth):.4f} "
                  f"({default or 10}) | {recall(np.array(wide), truth):.4f} | {recall(np.array(codes_only), truth):.4f} "
                  f"| {ms:.2f} |", flush=True)
        for data_type in ("byte", "binary"):
            spec = FieldSpec(f"v_{data_type}", "knn_vector", {"dimension": dim, "data_type": data_type,
                                                              **({"space_type": "innerproduct"} if data_type == "byte" else {})})
            field = VectorField(folder, spec)
            field.append(encode(vectors, data_type).astype(np.float32))
            encoded = encode(queries, data_type).astype(np.float32)
            found, ms = _search(field, encoded, n, None)
            print(f"| {data_type} ({field.space}) | {field.row_bytes} | – | – | {recall(np.array(found), truth):.4f} "
                  f"| {ms:.2f} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
