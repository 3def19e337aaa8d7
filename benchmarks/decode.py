"""Decode + preprocess cost and quality: JPEGs decoded at a reduced DCT scale against a full decode.

    nice -n 5 python benchmarks/decode.py [--images 1000] [--baseline aac5fda]

For the first N Flickr8k train images (224 x 224 JPEGs; the default model resizes to 64 px), in
one process, with the default model: CPU ms per image of decoding (`load_image`) and of
preprocessing (`ImagePreprocessor`) on
- the exact path: every JPEG decoded at full size (`draft_margin=math.inf`);
- the default path: decoded at the largest DCT reduction `draft_scale` allows (`DRAFT_MARGIN`);
- the baseline commit's code (before this change), in its own process, for the "before" figure;
and the quality of the default path: the cosine of its image vectors to the exact path's
(min / mean over the N images) and the mean absolute difference of the model's input pixels.
Each timing is the fastest of 3 passes (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import baseline_tree  # noqa: E402
from corpus import data_root  # noqa: E402

PASSES = 3


def cpu_ms(fn, count: int) -> tuple[float, list]:
    """The fastest of PASSES runs of `fn`, in CPU ms per item, and its result."""
    best, result = math.inf, None
    for _ in range(PASSES):
        started = time.process_time()
        result = fn()
        best = min(best, time.process_time() - started)
    return 1000 * best / count, result


def measure(blobs: list[bytes], draft_margin: float | None) -> dict:
    """Decode and preprocess costs of one path (None: the baseline commit's own API)."""
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.preprocess import ImagePreprocessor, load_image

    encoder = load_encoder(None)
    if draft_margin is None:
        preprocess = encoder.preprocess
        options = {"min_side": preprocess.decode_side}
    else:
        preprocess = ImagePreprocessor(encoder.manifest.image, draft_margin=draft_margin)
        options = {"draft": preprocess.draft_scale}
    decode, images = cpu_ms(lambda: [load_image(blob, **options) for blob in blobs], len(blobs))
    prepare, pixels = cpu_ms(lambda: [preprocess(image) for image in images], len(blobs))
    return {"decode": decode, "preprocess": prepare, "pixels": np.stack(pixels), "sizes": sorted({im.size for im in images})}


def load_blobs(data: Path, count: int) -> list[bytes]:
    from opensearch_cir.datasets.flickr8k import Flickr8k

    images = Flickr8k(data / "flickr8k", "train").iter_images()
    return [blob for _, (_, blob) in zip(range(count), images)]


def child(data: str, count: str) -> None:
    """Run in the baseline tree: its decode and preprocess costs as JSON."""
    result = measure(load_blobs(Path(data), int(count)), None)
    print(json.dumps({"decode": result["decode"], "preprocess": result["preprocess"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--baseline", default="aac5fda", help="commit before the reduced-scale decode")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.preprocess import DRAFT_MARGIN

    data = data_root()
    blobs = load_blobs(data, args.images)
    old_root = baseline_tree(args.baseline)
    done = subprocess.run([sys.executable, __file__, "--child", str(data), str(args.images)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(old_root)}, cwd=str(old_root))
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    before = json.loads(done.stdout.strip().splitlines()[-1])
    exact, fast = measure(blobs, math.inf), measure(blobs, DRAFT_MARGIN)
    encoder = load_encoder(None)
    exact_vectors, fast_vectors = encoder.encode_pixels(exact["pixels"]), encoder.encode_pixels(fast["pixels"])
    cosines = np.sum(exact_vectors * fast_vectors, axis=1)
    scale = np.asarray(encoder.manifest.image.std, dtype=np.float32).reshape(1, 3, 1, 1) / encoder.manifest.image.rescale
    pixel_error = np.abs(exact["pixels"] - fast["pixels"]) * scale  # in 8-bit levels
    print(f"{args.images} Flickr8k train images, load average {os.getloadavg()[0]:.1f}; CPU ms per image (fastest of {PASSES}):")
    print("| path | decoded sizes | decode | preprocess | decode + preprocess |")
    print("| --- | --- | --- | --- | --- |")
    for label, row in ((f"before ({args.baseline})", before), ("exact (full decode)", exact),
                       (f"default (draft_margin {DRAFT_MARGIN})", fast)):
        sizes = ", ".join(f"{w}x{h}" for w, h in row.get("sizes", [])[:3])
        print(f"| {label} | {sizes} | {row['decode']:.3f} | {row['preprocess']:.3f} | {row['decode'] + row['preprocess']:.3f} |")
    print(f"default vs exact: image vector cosine min {cosines.min():.5f}, mean {cosines.mean():.5f}, "
          f"p1 {np.percentile(cosines, 1):.5f}; input pixels mean |difference| {pixel_error.mean():.2f} of 255 levels, "
          f"worst image {pixel_error.mean(axis=(1, 2, 3)).max():.2f}")


if __name__ == "__main__":
    main()
