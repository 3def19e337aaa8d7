"""The search service under load, old code against new in one run, next to the engine's own time.

    python benchmarks/service.py [--docs 40000] [--seconds 8] [--rounds 2] [--baseline a9ffe89]

Builds (once, cached) an embedded index of real documents (benchmarks/corpus.py: Flickr8k +
fashion, the default model's vectors), then starts two `cir serve` apps on 127.0.0.1: one from a
pristine copy of the baseline commit, one from this tree. In interleaved rounds, each phase runs
against old then new: 1 client and 4 clients sending text searches (Flickr8k dev captions), and
4 clients sending image-reference searches (a fashion photo + a modification text), all with the
service's default strategy (hybrid). Reports req/s, p50/p99 and the cores the server process used,
and, in the same run, the engine's own hybrid query time (`EmbeddedClient.search` with the vectors
precomputed). Absolute numbers depend on the machine's load; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import DEFAULT_BASELINE, REPO, baseline_tree  # noqa: E402
from corpus import cache_dir, data_root, load_corpus  # noqa: E402

INDEX = "cir-bench"
MODIFICATIONS = ["in red", "but blue", "without the logo", "in black leather", "for women", "with stripes"]


def build_index(n_docs: int) -> Path:
    """An embedded-engine folder holding the first `n_docs` corpus documents (built once)."""
    from opensearch_cir.admin import setup_index
    from opensearch_cir.encoders.manifest import Manifest
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.resources import resolve_model_dir

    root = cache_dir() / f"service-index-{n_docs}"
    if (root / "done").exists():
        return root
    corpus = load_corpus(n_docs)
    client = EmbeddedClient(root)
    setup_index(client, INDEX, Manifest.load(resolve_model_dir(None)))
    batch = 1000
    for start in range(0, len(corpus.ids), batch):
        body = []
        for i in range(start, min(start + batch, len(corpus.ids))):
            body.append({"index": {"_index": INDEX, "_id": corpus.ids[i]}})
            body.append({"caption": corpus.captions[i], "image_vector": corpus.image_vectors[i].tolist(),
                         "caption_vector": corpus.caption_vectors[i].tolist(), "content_hash": corpus.ids[i],
                         "model_id": "cir-default-minilm-cnn-v2", "image_uri": corpus.ids[i]})
        client.bulk(body=body)
    client.indices.refresh(index=INDEX)
    (root / "done").touch()
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = """
import sys, uvicorn
from opensearch_cir.service.app import create_app
from opensearch_cir.service.settings import Settings
uvicorn.run(create_app(Settings(engine_url=sys.argv[1], index=sys.argv[2])), host="127.0.0.1",
            port=int(sys.argv[3]), log_level="warning")
"""


class Server:
    def __init__(self, name: str, code_root: Path, index_root: Path):
        self.name = name
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(code_root)}
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, f"embedded://{index_root}", INDEX, str(self.port)],
                                        env=env, cwd=str(code_root))
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, client, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.get(self.url + "/health").status_code == 200:
                    return
            except Exception:
                time.sleep(0.5)
        raise SystemExit(f"{self.name} server did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def run_phase(server: Server, requests: list[dict], clients: int, seconds: float) -> dict:
    """`clients` threads send requests round-robin for `seconds`; latencies of successful requests."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = offset
            while time.perf_counter() < stop_at:
                req = requests[i % len(requests)]
                i += clients
                started = time.perf_counter()
                response = http.post(server.url + "/search", data=req["data"], files=req.get("files"))
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1

    cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall_before
    cpu = server.cpu_seconds() - cpu_before
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"rps": len(latencies) / wall, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "cores": cpu / wall, "errors": errors[0]}


def engine_hybrid_ms(index_root: Path, corpus, n: int = 300) -> float:
    """p50 of the engine's own hybrid query (BM25 + image knn + caption knn, l2 + mean, no hits.total, as
    the service's searches), vectors precomputed."""
    from opensearch_cir import dsl
    from opensearch_cir.engines.embedded import EmbeddedClient

    client = EmbeddedClient(index_root)
    pipeline = dsl.normalization_pipeline("l2", "arithmetic_mean", [0.2, 0.4, 0.4])
    client.search_pipeline.put(id="bench-hybrid", body=pipeline)
    rng = np.random.default_rng(0)
    times = []
    for i in range(n):
        text = corpus.queries[i % len(corpus.queries)]
        vector = corpus.caption_vectors[rng.integers(len(corpus.ids))].tolist()
        body = dsl.hybrid_body([dsl.match_clause("caption", text), dsl.knn_clause("image_vector", vector, 100),
                                dsl.knn_clause("caption_vector", vector, 100)], size=10, pagination_depth=100)
        body["track_total_hits"] = False  # as compose sends it
        started = time.perf_counter()
        client.search(index=INDEX, body=body, params={"search_pipeline": "bench-hybrid"})
        times.append(time.perf_counter() - started)
    return float(np.percentile(np.array(times[20:]) * 1000, 50))


def image_requests(count: int) -> list[dict]:
    from opensearch_cir.datasets._tar import iter_tar_files

    out = []
    for i, (_, data) in enumerate(iter_tar_files(data_root() / "fashion" / "images.tar")):
        if i >= count:
            break
        out.append({"data": {"text": MODIFICATIONS[i % len(MODIFICATIONS)]}, "files": [("images", ("ref.jpg", data, "image/jpeg"))]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase and server")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    args = parser.parse_args()
    import httpx

    index_root = build_index(args.docs)
    corpus = load_corpus(args.docs)
    text_requests = [{"data": {"text": q}} for q in corpus.queries]
    phases = {"text, 1 client": (text_requests, 1), "text, 4 clients": (text_requests, 4),
              "image+text, 4 clients": (image_requests(300), 4)}
    servers = [Server("old", baseline_tree(args.baseline), index_root), Server("new", REPO, index_root)]
    results: dict = {(phase, s.name): [] for phase in phases for s in servers}
    engine_ms: list[float] = []
    try:
        with httpx.Client(timeout=60) as http:
            for server in servers:
                server.wait_ready(http)
                for req in text_requests[:5]:  # warm up: model load, HNSW graph load
                    http.post(server.url + "/search", data=req["data"])
        for round_no in range(args.rounds):
            engine_ms.append(engine_hybrid_ms(index_root, corpus))
            for phase, (requests, clients) in phases.items():
                order = servers if round_no % 2 == 0 else servers[::-1]
                for server in order:
                    results[(phase, server.name)].append(run_phase(server, requests, clients, args.seconds))
    finally:
        for server in servers:
            server.stop()
    engine = float(np.median(engine_ms))
    print(f"\n{args.docs} documents, {args.rounds} interleaved rounds of {args.seconds:.0f} s per phase and server; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"engine hybrid query p50: {engine:.2f} ms (per round: {', '.join(f'{m:.2f}' for m in engine_ms)})\n")
    print("| phase | code | req/s | p50 ms | p99 ms | p50 / engine | server cores | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for phase in phases:
        for server in servers:
            runs = results[(phase, server.name)]
            row = {key: float(np.median([r[key] for r in runs])) for key in ("rps", "p50", "p99", "cores")}
            row["errors"] = sum(r["errors"] for r in runs)
            summary[(phase, server.name)] = row
            print(f"| {phase} | {server.name} | {row['rps']:.1f} | {row['p50']:.1f} | {row['p99']:.1f} | "
                  f"{row['p50'] / engine:.1f}x | {row['cores']:.2f} | {row['errors']} |")
    print()
    for phase in phases:
        old, new = summary[(phase, "old")], summary[(phase, "new")]
        print(f"{phase}: throughput new/old {new['rps'] / old['rps']:.2f}x, p50 old/new {old['p50'] / new['p50']:.2f}x")
    print(json.dumps({"engine_ms": engine, **{f"{p} / {s}": v for (p, s), v in summary.items()}}))


if __name__ == "__main__":
    main()
