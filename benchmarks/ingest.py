"""Ingestion with captions (and images alone), old code against new in one run, with its ceilings.

    nice -n 5 python benchmarks/ingest.py [--images 1000] [--rounds 2] [--baseline a9ffe89] [--null-writer] [--model DIR]

Ingests the first N Flickr8k train images, each with its 5 captions, into a fresh embedded index,
alternating a pristine copy of the baseline commit and this tree (each run in its own process, the
same data, the default model (or `--model`), the model loaded and warmed before the clock starts). Reports images
per wall second and images per CPU second of the ingesting process (all its threads): on a machine
shared with other jobs the wall-clock ratio swings with their load, the CPU-time ratio much less.

Images only, each run also times pure image encoding (`encode_pixels` on the same images' pixels,
decoded beforehand) in its own process just before and just after ingesting, and reports the
ingestion's images/s against the mean of the two: the paired wall ratio, the least disturbed by
the other jobs of a shared machine (which come and go within seconds).

`--null-writer` adds, per round, an images-only run of this tree into a stand-in client whose
bulk does nothing (a CEILING, not ingestion: what the pipeline reaches with a free engine), and a
projection of the paired ratio with a bulk of 0.4 CPU ms per document.

Ceilings, measured with this tree in the same run:
- pure image encoding: `encode_pixels` on pixels decoded and preprocessed beforehand;
- pure encoding from JPEG bytes: `encode_images` on the same images, 32 at a time (what the
  encoder alone does with the files: decode, preprocess and encode, no hashing, no writing);
- the CPU bound: the CPU seconds per image of each stage measured alone (decode + preprocess,
  image encoding, caption encoding, the engine's bulk per document), and the images/s that all
  the cores would reach if nothing else ran and the stages overlapped perfectly.

Quality check (`quality`): the caption vectors the old and the new path indexed for the same
documents are each compared with a reference free of batch effects (every caption encoded alone,
averaged per document): by cosine, and by the overlap of the top-10 lists that 500 Flickr8k dev
captions get from exact inner-product search; the new path must be as close as the old one.
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

LOAD = """
import os, sys
from pathlib import Path
from opensearch_cir.datasets.flickr8k import Flickr8k
from opensearch_cir.encoders import load_encoder
data, n = Path(sys.argv[1]), int(sys.argv[2])
flickr = Flickr8k(data / "flickr8k", "train")
items = []
for name, blob in flickr.iter_images():
    items.append((name, blob))
    if len(items) >= n:
        break
encoder = load_encoder(os.environ.get("CIR_BENCH_MODEL") or None)
encoder.encode_texts(["warm up", "a second text"]); encoder.encode_images([items[0][1]])
"""

RUN = LOAD + """
import json, resource, time
import numpy as np
from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.ingest import Ingestor, Record
out, captions, writer = Path(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]

class NullClient:  # a stand-in whose bulk costs nothing: a ceiling, not ingestion
    class indices:
        refresh = exists = staticmethod(lambda index: False)
    def bulk(self, body):
        return {"errors": False, "items": [{"index": {"status": 201}} for _ in body[::2]]}

def pure_encoding():  # img/s of encode_pixels alone on these images' pixels, decoded beforehand
    started = time.perf_counter()
    for start in range(0, len(pixels), 32):
        encoder.encode_pixels(pixels[start:start + 32])
    return len(pixels) / (time.perf_counter() - started)

pure = []
if not captions:
    from opensearch_cir.encoders.preprocess import load_image
    pixels = np.stack([encoder.preprocess(load_image(blob)) for _, blob in items])
    pure.append(pure_encoding())
client = NullClient() if writer == "null" else EmbeddedClient(out)
if writer != "null":  # the index and its mapping, as `cir ingest` creates them (else the vectors are mapped dynamically)
    from opensearch_cir.admin import setup_index
    setup_index(client, "cir-ingest", encoder.manifest)
usage = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
with Ingestor(client, "cir-ingest", encoder) as ingestor:
    for name, blob in items:
        ingestor.add(Record(image=blob, captions=flickr.captions[name] if captions else [], uri=name))
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
if not captions:
    pure.append(pure_encoding())
print(json.dumps({"wall": wall, "cpu": cpu, "indexed": ingestor.report.indexed, "timings": ingestor.report.timings,
                  "pure": pure}))
"""

CEILINGS = LOAD + """
import json, tempfile, time
import numpy as np
from opensearch_cir.admin import setup_index
from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.ingest.documents import DocumentBuilder, EncodedImage
from opensearch_cir.ingest.records import Record, document_id
from opensearch_cir.ingest.writer import BulkWriter, Document
from contextlib import nullcontext

def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result

blobs = [blob for _, blob in items]
_, decode_cpu, pixels = timed(lambda: np.stack([encoder.preprocess.load(b) for b in blobs]))
pixels_wall, pixels_cpu, vectors = timed(lambda: [encoder.encode_pixels(pixels[s:s + 32]) for s in range(0, n, 32)])
bytes_wall, _, _ = timed(lambda: [encoder.encode_images(blobs[s:s + 32]) for s in range(0, n, 32)])
captions = [c for name, _ in items for c in flickr.captions[name]]
_, text_cpu, _ = timed(lambda: [encoder.encode_texts(captions[s:s + 1280]) for s in range(0, len(captions), 1280)])
vectors = np.concatenate(vectors)
builder = DocumentBuilder(encoder, lambda stage: nullcontext())
bulk_cpu = {}
for with_captions in (False, True):  # the writer thread's work: sources built, bulks of 256 written
    client = EmbeddedClient(tempfile.mkdtemp())
    setup_index(client, "cir-ingest", encoder.manifest)  # as `cir ingest` does, before the clock starts

    def write(client=client):
        writer = BulkWriter(client, "cir-ingest", validate_first=False)
        documents = []
        for (name, blob), vector in zip(items, vectors):
            item = EncodedImage(Record(blob, captions=flickr.captions[name] if with_captions else [], uri=name), document_id(blob), vector)
            documents.append(Document(item.content_hash, builder.source(item, vector if with_captions else None), name))
        return [writer.write(documents[s:s + 256]) for s in range(0, n, 256)]
    bulk_cpu[with_captions] = timed(write)[1]
print(json.dumps({"pixels_wall": pixels_wall, "bytes_wall": bytes_wall, "decode_cpu": decode_cpu, "encode_cpu": pixels_cpu,
                  "text_cpu": text_cpu, "bulk_cpu": bulk_cpu[False], "bulk_captions_cpu": bulk_cpu[True]}))
"""

TOP_K = 10
BULK_TARGET_MS = 0.4  # the engine's bulk per images-only document that the 0.9 goal needs


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
    client.close()
    return {h["_source"]["image_uri"]: np.asarray(h["_source"]["caption_vector"]) for h in hits}


def quality(old: dict[str, np.ndarray], new: dict[str, np.ndarray], data: Path) -> list[str]:
    """Both paths against a reference without batch effects: every caption encoded alone, then
    averaged per document. The int8 text graph scales its activations per batch, so any batching
    moves a vector slightly; quality is unchanged when the new path is as close to the reference
    as the old one. Closeness: cosine per document, and the top-10 lists of 500 dev captions."""
    from opensearch_cir.datasets.flickr8k import Flickr8k
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.ingest import mean_caption_vectors

    encoder = load_encoder(os.environ.get("CIR_BENCH_MODEL") or None)
    names = sorted(old)
    captions = Flickr8k(data / "flickr8k", "train").captions
    alone = np.concatenate([encoder.encode_texts([text]) for name in names for text in captions[name]])
    reference = np.stack(mean_caption_vectors(alone, [len(captions[name]) for name in names]))
    dev = Flickr8k(data / "flickr8k", "dev")
    queries = encoder.encode_texts([text for _, text in dev.caption_pairs()[::5][:500]])
    top_reference = np.argsort(-(queries @ reference.T), axis=1)[:, :TOP_K]
    lines = []
    for label, vectors in (("old", old), ("new", new)):
        matrix = np.stack([vectors[name] for name in names])
        cosines = np.sum(matrix * reference, axis=1)
        top = np.argsort(-(queries @ matrix.T), axis=1)[:, :TOP_K]
        overlap = np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(top, top_reference)])
        lines.append(f"caption vectors, {label} path vs each caption encoded alone ({len(names)} documents): cosine min "
                     f"{cosines.min():.5f}, mean {cosines.mean():.5f}; top-{TOP_K} overlap for {len(queries)} dev captions {overlap:.4f}")
    both = np.sum(np.stack([old[name] for name in names]) * np.stack([new[name] for name in names]), axis=1)
    lines.append(f"caption vectors, new vs old path: cosine min {both.min():.5f}, mean {both.mean():.5f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--null-writer", action="store_true",
                        help="also ingest images only into a stand-in whose bulk does nothing (a ceiling)")
    parser.add_argument("--model", type=Path, help="a model folder instead of the default model (both trees use it)")
    args = parser.parse_args()
    if args.model:
        os.environ["CIR_BENCH_MODEL"] = str(args.model.resolve())  # read by every run's process
    trees = {"old": baseline_tree(args.baseline), "new": REPO}
    data = data_root()
    work = Path(tempfile.mkdtemp(prefix="cir-ingest-bench-"))
    loads = [os.getloadavg()[0]]
    wall_rates: dict[tuple[str, str], list[float]] = {}
    cpu_rates: dict[tuple[str, str], list[float]] = {}
    paired: dict[str, list[float]] = {}  # images only: img/s over the same process's pure encoding
    ceilings: list[dict] = []
    try:
        for round_no in range(args.rounds):
            ceilings.append(run(REPO, CEILINGS, str(data), str(args.images)))
            for captions in ("1", "0"):
                names = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
                for name in names + (["null"] if args.null_writer and captions == "0" else []):
                    out = work / f"{name}-{captions}-{round_no}"
                    result = run(trees.get(name, REPO), RUN, str(data), str(args.images), str(out), captions,
                                 "null" if name == "null" else "engine")
                    wall_rates.setdefault((name, captions), []).append(result["indexed"] / result["wall"])
                    cpu_rates.setdefault((name, captions), []).append(result["indexed"] / result["cpu"])
                    pairing = ""
                    if result["pure"]:
                        paired.setdefault(name, []).append(result["indexed"] / result["wall"] / np.mean(result["pure"]))
                        pairing = f"pure encoding {' / '.join(f'{x:.1f}' for x in result['pure'])} img/s, paired ratio {paired[name][-1]:.2f},"
                    print(f"round {round_no + 1}: {name} {'captions' if captions == '1' else 'images only'}: "
                          f"{result['indexed'] / result['wall']:.1f} img/s, {result['indexed'] / result['cpu']:.1f} img per CPU s, {pairing}",
                          {k: round(v, 2) for k, v in result["timings"].items() if v}, flush=True)
            loads.append(os.getloadavg()[0])
        check = quality(caption_vectors(work / "old-1-0"), caption_vectors(work / "new-1-0"), data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, wall_rates, cpu_rates, ceilings, loads, check)
    report_paired(paired, cpu_rates, ceilings, args.images)


def report_paired(paired: dict[str, list[float]], cpu_rates, ceilings: list[dict], n: int) -> None:
    """Images only: each run's img/s over the pure encoding timed in its own process around it."""
    print("\n| images only, paired with pure encoding in the same process | per round | median |")
    print("| --- | --- | --- |")
    labels = {"old": "old tree", "new": "new tree (the embedded engine)",
              "null": "new tree into a client whose bulk does nothing (CEILING, not ingestion)"}
    for name, ratios in paired.items():
        print(f"| {labels[name]} | {', '.join(f'{r:.2f}' for r in ratios)} | {np.median(ratios):.2f} |")
    pure_cpu_ms = 1000 * np.median([c["encode_cpu"] for c in ceilings]) / n
    for name in paired:
        cpu_ms = 1000 / np.median(cpu_rates[(name, "0")])
        print(f"{labels[name]}: {cpu_ms:.2f} CPU ms per image = {pure_cpu_ms / cpu_ms:.2f} of pure encoding per CPU "
              f"({pure_cpu_ms:.2f}), the wall ratio with every core busy")
    if "null" in paired:  # CPU-bound: wall time grows with the CPU per image
        cpu_ms = 1000 / np.median(cpu_rates[("null", "0")])
        projected = np.median(paired["null"]) * cpu_ms / (cpu_ms + BULK_TARGET_MS)
        print(f"projection, with a bulk of {BULK_TARGET_MS} CPU ms per document: the null-writer paired ratio x "
              f"{cpu_ms:.2f} / ({cpu_ms:.2f} + {BULK_TARGET_MS}) = {projected:.2f}; per CPU, pure encoding's "
              f"{pure_cpu_ms:.2f} / ({cpu_ms:.2f} + {BULK_TARGET_MS}) = {pure_cpu_ms / (cpu_ms + BULK_TARGET_MS):.2f} "
              f"(the wall ratio with every core busy)")


def report(args, wall_rates, cpu_rates, ceilings, loads, check) -> None:
    n, cores = args.images, os.cpu_count() or 1
    print(f"\n{n} Flickr8k train images (5 captions each), model {args.model or 'default'}, {args.rounds} interleaved rounds, old = {args.baseline}; "
          f"load average (1 min) {', '.join(f'{x:.1f}' for x in loads)} on {cores} cores")
    print("| run | round | old img/s | new img/s | new / old (wall) | old img/CPU-s | new img/CPU-s | new / old (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for captions, label in (("1", "with captions"), ("0", "images only")):
        walls = [wall_rates[(name, captions)] for name in ("old", "new")]
        cpus = [cpu_rates[(name, captions)] for name in ("old", "new")]
        for i in range(args.rounds):
            print(f"| {label} | {i + 1} | {walls[0][i]:.1f} | {walls[1][i]:.1f} | {walls[1][i] / walls[0][i]:.2f}x "
                  f"| {cpus[0][i]:.1f} | {cpus[1][i]:.1f} | {cpus[1][i] / cpus[0][i]:.2f}x |")
        print(f"| {label} | median | | | {np.median([b / a for a, b in zip(*walls)]):.2f}x | | | "
              f"{np.median([b / a for a, b in zip(*cpus)]):.2f}x |")
    best = {key: max(values) for key, values in wall_rates.items()}
    pixels = max(n / c["pixels_wall"] for c in ceilings)
    from_bytes = max(n / c["bytes_wall"] for c in ceilings)
    per_image = {key: 1000 * np.median([c[key] for c in ceilings]) / n
                 for key in ("decode_cpu", "encode_cpu", "text_cpu", "bulk_cpu", "bulk_captions_cpu")}
    bound_images = 1000 * cores / (per_image["decode_cpu"] + per_image["encode_cpu"] + per_image["bulk_cpu"])
    bound_captions = 1000 * cores / (per_image["decode_cpu"] + per_image["encode_cpu"] + per_image["text_cpu"]
                                     + per_image["bulk_captions_cpu"])
    print("\nCPU ms per image, each stage alone (this tree): " + ", ".join(
        f"{key.removesuffix('_cpu')} {value:.2f}" for key, value in per_image.items()))
    print("| images only, new (best round) vs | img/s | new / it |")
    print("| --- | --- | --- |")
    for label, ceiling in (("pure image encoding (pixels decoded beforehand)", pixels),
                           ("pure encoding from JPEG bytes (encode_images)", from_bytes),
                           (f"CPU bound: {cores} cores / (decode + encode + bulk)", bound_images)):
        print(f"| {label} | {ceiling:.1f} | {best[('new', '0')] / ceiling:.2f} |")
    pure_cpu = 1000 / per_image["encode_cpu"]
    stages_cpu = 1000 / (per_image["decode_cpu"] + per_image["encode_cpu"] + per_image["bulk_cpu"])
    new_cpu = np.median(cpu_rates[("new", "0")])
    print(f"images only, per CPU second: new {new_cpu:.1f} img/CPU-s = {new_cpu / pure_cpu:.2f} of pure image encoding's "
          f"{pure_cpu:.1f} and {new_cpu / stages_cpu:.2f} of the stages' sum ({stages_cpu:.1f}: decode + encode + bulk)")
    print(f"with captions: new {best[('new', '1')]:.1f} img/s = {best[('new', '1')] / bound_captions:.2f} of its CPU bound "
          f"({bound_captions:.1f} img/s = {cores} cores / (decode + encode + captions + bulk with captions))")
    print("\n".join(check))


if __name__ == "__main__":
    main()
