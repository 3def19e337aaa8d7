"""CIRR, FashionIQ and CIRCO in their official formats (annotation JSON + image folder), scored
with their official metrics, for users who have those data sets.

- CIRR (`ROOT/cirr/captions/cap.rc2.SPLIT.json`, `ROOT/cirr/image_splits/split.rc2.SPLIT.json`
  mapping image names to paths relative to ROOT): reference excluded; Recall@1/5/10/50 over the
  split gallery; Recall_subset@1/2/3 within the query's `img_set.members` (reference removed).
- FashionIQ (`ROOT/captions/cap.CATEGORY.SPLIT.json` [{candidate, target, captions}],
  `ROOT/image_splits/split.CATEGORY.SPLIT.json` [asin], `ROOT/images/ASIN.{png,jpg}`): per category
  (dress, shirt, toptee) over that category's gallery, the two captions joined as "c1 and c2";
  Recall@10/50 per category and their average.
- CIRCO (`ROOT/annotations/SPLIT.json` [{id, reference_img_id, relative_caption, gt_img_ids}],
  images `ROOT/COCO2017_unlabeled/unlabeled2017/<12-digit id>.jpg`, the gallery being every image
  there): mAP@5/10/25/50 with every `gt_img_ids` entry as ground truth.

The images are indexed without captions (these sets ship none for the gallery), so the composable
vector strategies run; parameters are tuned on half of the queries and reported on the other half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import metrics
from ..ingest.records import document_id
from .harness import Case, build_index, run_composed

STRATEGIES = ("image_only", "text_only", "sum", "fusion", "slerp", "phi")
"""Image-only galleries: no caption strategies; `phi` runs when the model has a φ graph."""
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")


@dataclass
class Benchmark:
    """A loaded benchmark: gallery images by name and the queries in terms of image names."""

    name: str
    gallery: dict[str, Path]
    queries: list[dict]  # {id, reference, text, relevant: [names], group, subset: [names] | None}


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"missing annotation file {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_cirr(root: str | Path, split: str = "val") -> Benchmark:
    """CIRR's `split` (val or a train subset; test1 has no public targets)."""
    root = Path(root)
    paths = _read_json(root / "cirr" / "image_splits" / f"split.rc2.{split}.json")
    gallery = {name: root / rel for name, rel in paths.items()}
    queries = []
    for entry in _read_json(root / "cirr" / "captions" / f"cap.rc2.{split}.json"):
        if "target_hard" not in entry:
            raise InputError(f"CIRR {split}: query {entry.get('pairid')} has no target (test annotations cannot be scored here)")
        members = [m for m in entry["img_set"]["members"] if m != entry["reference"]]
        queries.append({"id": f"cirr-{entry['pairid']}", "reference": entry["reference"], "text": entry["caption"],
                        "relevant": [entry["target_hard"]], "group": "all", "subset": members})
    return Benchmark(f"CIRR {split}", gallery, queries)


def load_fashioniq(root: str | Path, category: str, split: str = "val") -> Benchmark:
    """FashionIQ's `category` (dress, shirt, toptee) of `split`."""
    root = Path(root)
    names = _read_json(root / "image_splits" / f"split.{category}.{split}.json")
    gallery = {}
    for name in names:
        path = next((root / "images" / f"{name}{ext}" for ext in (".png", ".jpg") if (root / "images" / f"{name}{ext}").is_file()), None)
        if path is None:
            raise InputError(f"FashionIQ image {name} not found under {root / 'images'}")
        gallery[name] = path
    queries = []
    for number, entry in enumerate(_read_json(root / "captions" / f"cap.{category}.{split}.json")):
        text = " and ".join(c.strip(" .").strip() for c in entry["captions"] if c.strip())
        queries.append({"id": f"fiq-{category}-{number}", "reference": entry["candidate"], "text": text,
                        "relevant": [entry["target"]], "group": category, "subset": None})
    return Benchmark(f"FashionIQ {category} {split}", gallery, queries)


def load_circo(root: str | Path, split: str = "val") -> Benchmark:
    """CIRCO's `split` (val; test has no public ground truth)."""
    root = Path(root)
    image_dir = root / "COCO2017_unlabeled" / "unlabeled2017"
    gallery = {str(int(path.stem)): path for path in sorted(image_dir.glob("*.jpg"))}
    if not gallery:
        raise InputError(f"no images in {image_dir}")
    queries = []
    for entry in _read_json(root / "annotations" / f"{split}.json"):
        if "gt_img_ids" not in entry:
            raise InputError(f"CIRCO {split}: query {entry.get('id')} has no gt_img_ids (test cannot be scored here)")
        queries.append({"id": f"circo-{entry['id']}", "reference": str(entry["reference_img_id"]),
                        "text": entry["relative_caption"], "relevant": [str(i) for i in entry["gt_img_ids"]],
                        "group": "all", "subset": None})
    return Benchmark(f"CIRCO {split}", gallery, queries)


def _cirr_subset_metrics(by_doc_subset: dict[str, frozenset[str]]):
    def extra(rankings: list[list[str]], cases: list[Case]) -> dict[str, float]:
        subsets = [by_doc_subset[c.id] for c in cases]
        targets = [next(iter(c.relevant)) for c in cases]
        return {f"recall_subset@{k}": metrics.recall_subset_at_k(rankings, targets, subsets, k) for k in (1, 2, 3)}
    return extra


def _circo_metrics(rankings: list[list[str]], cases: list[Case]) -> dict[str, float]:
    return {f"map@{k}": metrics.map_at_k(rankings, [c.relevant for c in cases], k) for k in (5, 10, 25, 50)}


def run_benchmark(benchmark: Benchmark, client: Any, encoder: Any, *, protocol: str, tune_subset: int = 200,
                  test_subset: int | None = None) -> dict:
    """Index the gallery and evaluate (tuned on half of the queries, reported on the other half)."""
    from ..ingest import Record

    doc_of: dict[str, str] = {}
    blobs: dict[str, Path] = {}
    for name, path in benchmark.gallery.items():
        doc_id = document_id(path.read_bytes())
        doc_of[name] = doc_id
        blobs.setdefault(doc_id, path)
    slug = "".join(ch if ch.isalnum() else "-" for ch in benchmark.name.lower())
    index = f"cir-eval-{slug}-{len(blobs)}"
    build_index(client, index, encoder, (Record(image=str(p)) for p in blobs.values()), expected=len(blobs))
    cases, subsets = [], {}
    for query in benchmark.queries:
        missing = [n for n in [query["reference"], *query["relevant"]] if n not in doc_of]
        if missing:
            raise InputError(f"{benchmark.name}: query {query['id']} names images not in the gallery: {missing[:3]}")
        cases.append(Case(id=query["id"], reference=doc_of[query["reference"]], text=query["text"],
                          relevant=frozenset(doc_of[n] for n in query["relevant"]), group=query["group"]))
        if query["subset"] is not None:
            subsets[query["id"]] = frozenset(doc_of[n] for n in query["subset"] if n in doc_of)
    extra = {"cirr": _cirr_subset_metrics(subsets), "circo": _circo_metrics}.get(protocol)
    result = run_composed(client, index, encoder, cases, name=benchmark.name, strategies=STRATEGIES,
                          tune_subset=tune_subset, test_subset=test_subset,
                          extra_metrics=extra)
    result["gallery"] = len(blobs)
    return result


def run_fashioniq(root: str | Path, client: Any, encoder: Any, *, split: str = "val", tune_subset: int = 200,
                  test_subset: int | None = None) -> dict:
    """All three categories, each over its own gallery; `strategies` holds the category average."""
    per_category = {c: run_benchmark(load_fashioniq(root, c, split), client, encoder, protocol="fashioniq",
                                     tune_subset=tune_subset, test_subset=test_subset) for c in FASHIONIQ_CATEGORIES}
    average = {
        strategy: {metric: sum(r["strategies"][strategy][metric] for r in per_category.values()) / len(per_category)
                   for metric in ("recall@10", "recall@50")}
        for strategy in next(iter(per_category.values()))["strategies"]
    }
    return {"benchmark": f"FashionIQ {split}", "strategies": average,
            "groups": {c: r["strategies"] for c, r in per_category.items()},
            "tuned": {c: r["tuned"] for c, r in per_category.items()},
            "queries": {key: sum(r["queries"][key] for r in per_category.values()) for key in ("dev", "test", "test_overall")}}


def run(protocol: str, root: str | Path, client: Any, encoder: Any, *, split: str = "val", tune_subset: int = 200,
        test_subset: int | None = None) -> dict:
    """Load and evaluate `protocol` (cirr, fashioniq or circo) from `root`."""
    if protocol == "fashioniq":
        return run_fashioniq(root, client, encoder, split=split, tune_subset=tune_subset, test_subset=test_subset)
    loaders = {"cirr": load_cirr, "circo": load_circo}
    if protocol not in loaders:
        raise InputError(f"unknown benchmark format {protocol!r} (cirr, fashioniq or circo)")
    return run_benchmark(loaders[protocol](root, split), client, encoder, protocol=protocol,
                         tune_subset=tune_subset, test_subset=test_subset)
