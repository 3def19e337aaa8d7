"""Ingestion with captions (and images alone), old code against new in one run.

    python benchmarks/ingest.py [--images 1000] [--rounds 2] [--baseline a9ffe89]

Ingests the first N Flickr8k train images, each with its 5 captions, into a fresh embedded index,
alternating a pristine copy of the baseline commit and this tree (each run in its own process, the
same data, the default model). Also times images alone, and pure image encoding (decode +
preprocess done beforehand, `encode_pixels` only) as the ceiling. Quality check: the caption
vectors the two code paths indexed for the same documents are compared by cosine. Besides images
per wall second it reports images per CPU second of the ingesting process (all its threads): on a
machine shared with other jobs the wall-clock ratio swings with their load, the CPU-time ratio less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import DEFAULT_BASELINE, REPO, baseline_tree  # noqa: E402
from corpus import data_root  # noqa: E402

RUN = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
from opensearch_cir.datasets.flickr8k import Flickr8k
from opensearch_cir.encoders import load_encoder
from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.ingest import Ingestor, Record

data, out, n, captions = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
flickr = Flickr8k(data / "flickr8k", "train")
items = []
for name, blob in flickr.iter_images():
    items.append((name, blob))
    if len(items) >= n:
        break
encoder = load_encoder(None)
client = EmbeddedClient(out)
encoder.encode_texts(["warm up"]); encoder.encode_images([items[0][1]])
usage = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
with Ingestor(client, "cir-ingest", encoder) as ingestor:
    for name, blob in items:
        ingestor.add(Record(image=blob, captions=flickr.captions[name] if captions else [], uri=name))
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
print(json.dumps({"wall": wall, "cpu": cpu, "indexed": ingestor.report.indexed, "timings": ingestor.report.timings}))
"""

PURE = """
import json, sys, time
from pathlib import Path
import numpy as np
from opensearch_cir.datasets.flickr8k import Flickr8k
from opensearch_cir.encoders import load_encoder
from opensearch_cir.encoders.preprocess import load_image
data, n = Path(sys.argv[1]), int(sys.argv[2])
encoder = load_encoder(None)
pixels = []
for name, blob in Flickr8k(data / "flickr8k", "train").iter_images():
    pixels.append(encoder.preprocess(load_image(blob)))
    if len(pixels) >= n:
        break
pixels = np.stack(pixels)
encoder.encode_pixels(pixels[:32])
started = time.perf_counter()
for start in range(0, n, 32):
    encoder.encode_pixels(pixels[start:start + 32])
print(json.dumps({"wall": time.perf_counter() - started}))
"""


def run(code_root: Path, script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=str(code_root),
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def caption_vectors(folder: Path) -> dict[str, np.ndarray]:
    from opensearch_cir.engines.embedded import EmbeddedClient

    client = EmbeddedClient(folder)
    hits = client.search(index="cir-ingest", body={"size": 10_000, "query": {"match_all": {}},
                                                   "_source": ["image_uri", "caption_vector"]})["hits"]["hits"]
    return {h["_source"]["image_uri"]: np.asarray(h["_source"]["caption_vector"]) for h in hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    args = parser.parse_args()
    trees = {"old": baseline_tree(args.baseline), "new": REPO}
    data = str(data_root())
    work = Path(tempfile.mkdtemp(prefix="cir-ingest-bench-"))
    rates: dict[tuple[str, str], list[float]] = {}
    per_cpu: dict[tuple[str, str], list[float]] = {}
    pure: list[float] = []
    try:
        for round_no in range(args.rounds):
            pure.append(args.images / run(REPO, PURE, data, str(args.images))["wall"])
            for captions in ("1", "0"):
                for name in (["old", "new"] if round_no % 2 == 0 else ["new", "old"]):
                    out = work / f"{name}-{captions}-{round_no}"
                    result = run(trees[name], RUN, data, str(out), str(args.images), captions)
                    rates.setdefault((name, captions), []).append(result["indexed"] / result["wall"])
                    per_cpu.setdefault((name, captions), []).append(result["indexed"] / result["cpu"])
                    print(name, "captions" if captions == "1" else "images only", f"{result['indexed'] / result['wall']:.1f} img/s",
                          {k: round(v, 2) for k, v in result["timings"].items() if v}, flush=True)
        old_vectors, new_vectors = caption_vectors(work / "old-1-0"), caption_vectors(work / "new-1-0")
        cosines = np.array([old_vectors[k] @ new_vectors[k] for k in old_vectors])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {key: max(values) for key, values in rates.items()}
    ceiling = max(pure)
    print(f"\n{args.images} Flickr8k train images (5 captions each), best of {args.rounds} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| run | old img/s | new img/s | new / old | new / pure image encoding |")
    print("| --- | --- | --- | --- | --- |")
    for captions, label in (("1", "with captions"), ("0", "images only")):
        old, new = best[("old", captions)], best[("new", captions)]
        print(f"| {label} | {old:.1f} | {new:.1f} | {new / old:.2f}x | {new / ceiling:.2f} |")
    for captions, label in (("1", "with captions"), ("0", "images only")):
        paired = [n / o for n, o in zip(rates[("new", captions)], rates[("old", captions)])]
        print(f"{label}: new / old per round {', '.join(f'{r:.2f}x' for r in paired)} (median {np.median(paired):.2f}x)")
        cpu_old, cpu_new = np.median(per_cpu[("old", captions)]), np.median(per_cpu[("new", captions)])
        print(f"{label}: images per CPU second old {cpu_old:.1f}, new {cpu_new:.1f}: new / old {cpu_new / cpu_old:.2f}x")
    print(f"pure image encoding: {ceiling:.1f} img/s")
    print(f"caption vectors, new vs old path, same documents: cosine min {cosines.min():.5f}, "
          f"mean {cosines.mean():.5f} over {len(cosines)} documents")


if __name__ == "__main__":
    main()
