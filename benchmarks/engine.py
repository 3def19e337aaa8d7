"""Embedded engine benchmark: index time, query latency, memory and HNSW recall on synthetic data.

    python benchmarks/engine.py --sizes 10000 100000 [1000000] [--dim 512] [--queries 200]
                                [--mode on_disk --compression-level 32x]

Documents: CLIP-like unit vectors (see VectorModel) and Zipf-distributed captions. Queries: `knn` (k=10; HNSW above the threshold), `match` (3 caption words) and `hybrid`
(both, min_max + arithmetic_mean), each returning 10 hits without vectors. Runs on one core
(BLAS / OpenMP threads = 1). Recall@10 compares the HNSW top 10 with exact search on the same
vectors. Prints one table per size; numbers are ratios within one run, not absolute promises.
`rss_mb_by_phase` gives the peak RSS of each phase (Linux `clear_refs` resets the peak between
phases): the benchmark's own copy of the vectors lives in a file in the work folder, read back in
chunks for the recall truth, so that the process's memory is the engine's.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from opensearch_cir.engines.embedded import DEFAULT_HNSW_THRESHOLD, EmbeddedClient  # noqa: E402
from opensearch_cir.resources import index_templates_dir  # noqa: E402

INDEX = "cir-bench"
VOCABULARY = 5_000
PIPELINE = {
    "phase_results_processors": [
        {"normalization-processor": {"normalization": {"technique": "min_max"}, "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.3, 0.7]}}}}
    ]
}


LATENT_DIM = 128
CLUSTERS = 1_000


class VectorModel:
    """CLIP-like unit vectors: a mixture of Gaussians in a 128-d latent space mapped linearly to
    `dim` dimensions plus a little isotropic noise (real embeddings have a low intrinsic dimension;
    isotropic 512-d noise is a worst case where no ANN index does well)."""

    def __init__(self, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.projection = rng.normal(size=(LATENT_DIM, dim)).astype(np.float32) / np.sqrt(LATENT_DIM)
        self.centres = rng.normal(size=(CLUSTERS, LATENT_DIM)).astype(np.float32)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        latent = self.centres[rng.integers(0, CLUSTERS, size=n)] + 0.7 * rng.normal(size=(n, LATENT_DIM)).astype(np.float32)
        vectors = latent @ self.projection + 0.05 * rng.normal(size=(n, self.projection.shape[1])).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def zipf_words(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.minimum(rng.zipf(1.3, size=count), VOCABULARY) - 1


def caption(rng: np.random.Generator) -> str:
    return " ".join(f"w{w}" for w in zipf_words(rng, int(rng.integers(8, 16))))


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


def rss_mb(key: str = "VmHWM") -> int:
    """This process's peak (VmHWM) or current (VmRSS) resident memory in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    return 0


def reset_peak() -> int:
    """Start a new peak-RSS window (Linux `clear_refs` 5); returns the current RSS in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return rss_mb("VmRSS")


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def exact_top10(path: Path, n: int, dim: int, queries: np.ndarray, chunk: int = 16_384) -> list[list[int]]:
    """Exact inner-product top 10 of each query over the vectors in `path`, read in chunks."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    with open(path, "rb") as f:
        for begin in range(0, n, chunk):
            rows = np.frombuffer(f.read(min(chunk, n - begin) * dim * 4), dtype=np.float32).reshape(-1, dim)
            scores = np.concatenate([best_scores, (rows @ queries.T).T], axis=1)
            ids = np.concatenate([best_ids, np.broadcast_to(np.arange(begin, begin + len(rows)), (len(queries), len(rows)))], axis=1)
            keep = np.argsort(-scores, axis=1, kind="stable")[:, :10]
            best_scores, best_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
    return best_ids.tolist()


def run_size(n: int, dim: int, n_queries: int, batch: int, root: Path, hnsw_threshold: int, compression: dict) -> dict:
    rng = np.random.default_rng(n)
    client = EmbeddedClient(root, hnsw_threshold=hnsw_threshold)
    template = json.loads((index_templates_dir() / "cir-index-template.json").read_text())
    properties = template["template"]["mappings"]["properties"]
    properties["image_vector"]["dimension"] = dim
    properties["image_vector"].update(compression)
    del properties["caption_vector"]
    template["index_patterns"] = [INDEX]
    client.indices.put_index_template(name="bench", body=template)
    client.indices.create(index=INDEX)
    client.search_pipeline.put(id="bench-min-max", body=PIPELINE)

    model = VectorModel(dim)
    truth_file = root / "bench-vectors.f32"  # the benchmark's copy, outside the index and out of RSS
    first_vector = None
    phases = {"start": reset_peak()}
    started = time.perf_counter()
    for begin in tqdm(range(0, n, batch), desc=f"index {n:,}", unit="batch", leave=False):
        count = min(batch, n - begin)
        chunk = model.sample(count, rng)
        with open(truth_file, "ab") as f:
            f.write(chunk.astype(np.float32).tobytes())
        first_vector = chunk[0] if first_vector is None else first_vector
        body = []
        for i in range(count):
            body += [{"index": {"_index": INDEX, "_id": str(begin + i)}}, {"caption": caption(rng), "image_vector": chunk[i].tolist(), "metadata": {"shard": str((begin + i) % 10)}}]
        response = client.bulk(body=body)
        assert not response["errors"]
    index_s = time.perf_counter() - started
    phases["index_peak"] = rss_mb()
    reset_peak()
    started = time.perf_counter()
    client.indices.refresh(index=INDEX)  # builds the HNSW graph above the threshold
    hnsw_build_s = time.perf_counter() - started
    phases["build_peak"] = rss_mb()
    reset_peak()

    client.close()
    phases["close_peak"] = rss_mb()
    phases["closed"] = reset_peak()
    started = time.perf_counter()
    client = EmbeddedClient(root, hnsw_threshold=hnsw_threshold)  # cold open: log replay + HNSW load
    client.search(index=INDEX, body={"size": 1, "query": {"knn": {"image_vector": {"vector": first_vector.tolist(), "k": 1}}}})
    open_s = time.perf_counter() - started
    phases["open_peak"] = rss_mb()
    reset_peak()

    query_vectors = model.sample(n_queries, rng)  # fresh samples, not copies of documents
    query_texts = [" ".join(f"w{w}" for w in zipf_words(rng, 3)) for _ in range(n_queries)]
    excludes = {"excludes": ["image_vector"]}

    def knn(i):
        return {"knn": {"image_vector": {"vector": query_vectors[i].tolist(), "k": 10}}}

    def match(i):
        return {"match": {"caption": query_texts[i]}}

    bodies = {
        "knn": lambda i: {"size": 10, "query": knn(i), "_source": excludes},
        "knn_filtered": lambda i: {"size": 10, "query": {"knn": {"image_vector": {**knn(i)["knn"]["image_vector"], "filter": {"term": {"metadata.shard": "3"}}}}}, "_source": excludes},
        "match": lambda i: {"size": 10, "query": match(i), "_source": excludes},
        "hybrid": lambda i: {"size": 10, "query": {"hybrid": {"queries": [match(i), knn(i)]}}, "_source": excludes},
    }
    latencies: dict[str, list[float]] = {}
    results: dict[str, list[list[int]]] = {}
    for name, make in bodies.items():
        params = {"search_pipeline": "bench-min-max"} if name == "hybrid" else None
        client.search(index=INDEX, body=make(0), params=params)  # warm-up
        samples, ids = [], []
        for i in range(n_queries):
            started = time.perf_counter()
            response = client.search(index=INDEX, body=make(i), params=params)
            samples.append(time.perf_counter() - started)
            ids.append([int(h["_id"]) for h in response["hits"]["hits"]])
        latencies[name], results[name] = samples, ids

    phases["query_peak"] = rss_mb()
    reset_peak()
    exact = exact_top10(truth_file, n, dim, query_vectors)
    phases["truth_peak"] = rss_mb()  # the benchmark's own recall truth, not the engine
    recall = float(np.mean([len(set(got) & set(want)) / 10 for got, want in zip(results["knn"], exact)]))
    row = {
        "docs": n,
        "index_s": round(index_s, 1),
        "docs_per_s": round(n / index_s),
        "hnsw_build_s": round(hnsw_build_s, 1),
        "open_s": round(open_s, 2),
        "hnsw": n >= hnsw_threshold,
        "recall@10": round(recall, 4),
        "disk_mb": round(folder_size(root / INDEX) / 2**20),
        "field": compression or "float in memory",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_mb_by_phase": phases,
    }
    for name, samples in latencies.items():
        row[f"{name}_p50_ms"] = round(percentile_ms(samples, 50), 2)
        row[f"{name}_p99_ms"] = round(percentile_ms(samples, 99), 2)
    client.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--hnsw-threshold", type=int, default=DEFAULT_HNSW_THRESHOLD)
    parser.add_argument("--workdir", type=Path, default=None, help="where indices are built (default: a temp dir, removed)")
    parser.add_argument("--mode", choices=["in_memory", "on_disk"], default=None, help="the image_vector field's k-NN mode")
    parser.add_argument("--compression-level", default=None, help="its compression_level (1x..32x)")
    args = parser.parse_args()
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    for n in args.sizes:
        root = Path(tempfile.mkdtemp(prefix="cir-bench-", dir=args.workdir))
        try:
            compression = {key: value for key, value in (("mode", args.mode), ("compression_level", args.compression_level)) if value}
            row = run_size(n, args.dim, args.queries, args.batch, root, args.hnsw_threshold, compression)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
