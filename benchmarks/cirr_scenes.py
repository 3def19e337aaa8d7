"""Write evaluation scenes (seed < 1000, never trained on) as a CIRR-format data set, then run the
CIRR protocol on it: `cir eval cirr` numbers (Recall@K, Recall_subset@K) with a real model.

    python benchmarks/cirr_scenes.py --out /tmp/cirr-scenes --queries 600 --distractors 600
    cir eval cirr --data /tmp/cirr-scenes --split val --tune-queries 100

Each query's `img_set` is its reference, its target and four random gallery scenes (CIRR's
six-image subsets); images with equal scene graphs are written once (a target may equal another
query's scene, as in `cir eval scenes`).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from opensearch_cir.datasets.scenes import generate_catalog, generate_queries, render


def write(out: Path, seed: int, n_queries: int, n_distractors: int) -> int:
    images = out / "dev"
    images.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}

    def name_of(scene) -> str:
        if scene.key not in names:
            names[scene.key] = f"dev-{len(names)}-0-img0"
            render(scene).save(images / f"{names[scene.key]}.png")
        return names[scene.key]

    queries = generate_queries(seed, n_queries)
    pairs = [(name_of(q.reference), name_of(q.target), q.modification.text) for q in queries]
    for record in generate_catalog(seed, n_distractors):
        name_of(record.scene)
    everything = sorted(names.values())
    rng = random.Random(seed)
    captions = []
    for pairid, (reference, target, text) in enumerate(pairs):
        others = rng.sample([n for n in everything if n not in (reference, target)], 4)
        captions.append({"pairid": pairid, "reference": reference, "target_hard": target,
                         "target_soft": {target: 1.0}, "caption": text,
                         "img_set": {"id": pairid, "members": [reference, target, *others]}})
    for folder in ("image_splits", "captions"):
        (out / "cirr" / folder).mkdir(parents=True, exist_ok=True)
    (out / "cirr" / "image_splits" / "split.rc2.val.json").write_text(
        json.dumps({n: f"./dev/{n}.png" for n in everything}))
    (out / "cirr" / "captions" / "cap.rc2.val.json").write_text(json.dumps(captions))
    return len(everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--distractors", type=int, default=600)
    args = parser.parse_args()
    if args.seed >= 1000:
        parser.error("seeds >= 1000 are training scenes")
    count = write(args.out, args.seed, args.queries, args.distractors)
    print(f"wrote {args.queries} CIRR-format queries over {count} images to {args.out}")


if __name__ == "__main__":
    main()
