"""CIRR, FashionIQ and CIRCO read from their official releases, as the official code reads them.

- CIRR (Cuberick-Orion/CIRR README, "Dataset File Structure"): `cirr/captions/cap.rc2.SPLIT.json`
  [{pairid, reference, target_hard, caption, img_set: {members}}] (test1 has no `target_hard`),
  `cirr/image_splits/split.rc2.SPLIT.json` {name: "./dev/name.png"}. The image paths are relative
  to the data root (SEARLE `src/datasets.py` `CIRRDataset`) or, in the README's own layout, to
  `cirr/img_raw/`; both are found. Splits: train, val, test1 (`test` is an alias of test1).
- FashionIQ (XiaoxiaoGuo/fashion-iq): `captions/cap.CATEGORY.SPLIT.json` [{candidate, target,
  captions: [c1, c2]}] (test has no `target`), `image_splits/split.CATEGORY.SPLIT.json` [asin],
  images `images/ASIN.jpg` (SEARLE's layout; `.png` and the start kit's `resized_images/` also read).
  The query text is SEARLE's / CIReVL's "c1 and c2", each caption stripped of ".?, ".
- CIRCO (miccunifi/CIRCO README): `annotations/SPLIT.json` [{id, reference_img_id, target_img_id,
  relative_caption, gt_img_ids, semantic_aspects}] (test: no targets), images listed by
  `COCO2017_unlabeled/annotations/image_info_unlabeled2017.json` (else every
  `COCO2017_unlabeled/unlabeled2017/*.jpg`, id = the file name's number).

Every gallery is keyed by the dataset's own image id; two images with identical bytes stay two images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

DATASETS = ("cirr", "fashioniq", "circo")
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
CIRR_SPLITS = {"train": "train", "val": "val", "test1": "test1", "test": "test1"}


@dataclass
class Query:
    """One composed query in the dataset's own terms.

    id: the official query id (CIRR pairid, CIRCO id, FashionIQ position in its captions file);
    target: the image the caption was written for (None on test splits); relevant: every image
    that counts for mAP (CIRCO's gt_img_ids, else [target]); members: CIRR's img_set members.
    """

    id: int
    reference: str
    text: str
    target: str | None = None
    relevant: list[str] | None = None
    members: list[str] | None = None
    annotation: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    """A loaded split: gallery image paths by dataset image id, and the queries."""

    dataset: str
    split: str
    gallery: dict[str, Path]
    queries: list[Query]
    category: str | None = None

    @property
    def name(self) -> str:
        return " ".join(part for part in (_TITLES[self.dataset], self.category, self.split) if part)

    @property
    def has_targets(self) -> bool:
        return all(q.target is not None for q in self.queries)


_TITLES = {"cirr": "CIRR", "fashioniq": "FashionIQ", "circo": "CIRCO"}


def read_json(path: Path, what: str) -> Any:
    """A JSON file of the release, or an InputError naming the file and what it should hold."""
    if not path.is_file():
        raise InputError(f"missing {what}: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from exc


def load(dataset: str, root: str | Path, split: str, category: str | None = None) -> Benchmark:
    """Load `dataset` (cirr, fashioniq with `category`, circo) of `split` from `root`."""
    if dataset == "cirr":
        return load_cirr(root, split)
    if dataset == "fashioniq":
        return load_fashioniq(root, category or "", split)
    if dataset == "circo":
        return load_circo(root, split)
    raise InputError(f"unknown benchmark {dataset!r} (one of {', '.join(DATASETS)})")


def load_cirr(root: str | Path, split: str = "val") -> Benchmark:
    """CIRR's `split` (train, val or test1)."""
    if split not in CIRR_SPLITS:
        raise InputError(f"CIRR split must be one of {', '.join(CIRR_SPLITS)}, got {split!r}")
    split = CIRR_SPLITS[split]
    root = Path(root)
    base = root / "cirr" if (root / "cirr" / "captions").is_dir() else root
    captions = read_json(base / "captions" / f"cap.rc2.{split}.json", f"CIRR {split} captions (cirr/captions/cap.rc2.{split}.json)")
    paths = read_json(base / "image_splits" / f"split.rc2.{split}.json", f"CIRR {split} image list (cirr/image_splits/split.rc2.{split}.json)")
    folders = [root, base, base / "img_raw", root / "img_raw"]
    gallery = _resolve(paths, folders, f"CIRR {split}")
    queries = []
    for entry in captions:
        _require(entry, ("pairid", "reference", "caption", "img_set"), f"CIRR {split} captions")
        queries.append(Query(
            id=int(entry["pairid"]), reference=entry["reference"], text=(entry["caption"] or "").strip(),
            target=entry.get("target_hard"), relevant=[entry["target_hard"]] if "target_hard" in entry else None,
            members=list(entry["img_set"]["members"]), annotation=entry))
    return _checked(Benchmark("cirr", split, gallery, queries))


def fashioniq_text(captions: list[str]) -> str:
    """SEARLE / CIReVL's query text: the two captions stripped of '.?, ' and joined by ' and '
    (an empty caption is left out rather than leaving a dangling 'and')."""
    return " and ".join(c.strip(".?, ") for c in captions if c and c.strip(".?, "))


def load_fashioniq(root: str | Path, category: str, split: str = "val") -> Benchmark:
    """FashionIQ's `category` (dress, shirt, toptee) of `split` (train, val, test)."""
    if category not in FASHIONIQ_CATEGORIES:
        raise InputError(f"FashionIQ category must be one of {', '.join(FASHIONIQ_CATEGORIES)}, got {category!r}")
    root = Path(root)
    names = read_json(root / "image_splits" / f"split.{category}.{split}.json",
                      f"FashionIQ image list (image_splits/split.{category}.{split}.json)")
    captions = read_json(root / "captions" / f"cap.{category}.{split}.json",
                         f"FashionIQ captions (captions/cap.{category}.{split}.json)")
    folders = [root / "images", root / "resized_images" / category, root / "resized_images"]
    gallery = _resolve({name: f"{name}.jpg" for name in names}, folders, f"FashionIQ {category} {split}", (".png",))
    queries = []
    for number, entry in enumerate(captions):
        _require(entry, ("candidate", "captions"), f"FashionIQ {category} {split} captions")
        target = entry.get("target")
        queries.append(Query(id=number, reference=entry["candidate"], text=fashioniq_text(entry["captions"]),
                             target=target, relevant=[target] if target else None, annotation=entry))
    return _checked(Benchmark("fashioniq", split, gallery, queries, category=category))


def load_circo(root: str | Path, split: str = "val") -> Benchmark:
    """CIRCO's `split` (val or test)."""
    root = Path(root)
    annotations = read_json(root / "annotations" / f"{split}.json", f"CIRCO {split} annotations (annotations/{split}.json)")
    coco = root / "COCO2017_unlabeled"
    info = coco / "annotations" / "image_info_unlabeled2017.json"
    if info.is_file():
        images = read_json(info, "COCO unlabeled2017 image list")["images"]
        gallery = _resolve({str(int(image["id"])): image["file_name"] for image in images}, [coco / "unlabeled2017"], "CIRCO")
    else:
        gallery = {str(int(path.stem)): path for path in sorted((coco / "unlabeled2017").glob("*.jpg")) if path.stem.isdigit()}
        if not gallery:
            raise InputError(f"no COCO unlabeled2017 images: neither {info} nor {coco / 'unlabeled2017'}/*.jpg exist")
    queries = []
    for entry in annotations:
        _require(entry, ("id", "reference_img_id", "relative_caption"), f"CIRCO {split} annotations")
        target = str(entry["target_img_id"]) if "target_img_id" in entry else None
        relevant = [str(i) for i in entry["gt_img_ids"]] if "gt_img_ids" in entry else None
        queries.append(Query(id=int(entry["id"]), reference=str(entry["reference_img_id"]),
                             text=(entry["relative_caption"] or "").strip(), target=target, relevant=relevant,
                             annotation=entry))
    return _checked(Benchmark("circo", split, gallery, queries))


def _require(entry: Any, keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
    if missing:
        raise InputError(f"{where}: an entry lacks {', '.join(missing)}: {str(entry)[:200]}")


def _resolve(relative: dict[str, str], folders: list[Path], what: str, other_suffixes: tuple[str, ...] = ()) -> dict[str, Path]:
    """Image paths: the first folder holding the first image is used for all (with `other_suffixes`
    tried in turn); missing files are an InputError naming how many and which."""
    if not relative:
        raise InputError(f"{what}: the image list is empty")
    first_name, first_rel = next(iter(relative.items()))
    candidates = [(folder, suffix) for folder in folders for suffix in ("", *other_suffixes)]
    chosen = next(((folder, suffix) for folder, suffix in candidates
                   if _with_suffix(folder / first_rel, suffix).is_file()), None)
    if chosen is None:
        tried = ", ".join(str(_with_suffix(folder / first_rel, suffix)) for folder, suffix in candidates)
        raise InputError(f"{what}: image {first_name} not found (tried {tried})")
    folder, suffix = chosen
    paths = {name: _with_suffix(folder / rel, suffix) for name, rel in relative.items()}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise InputError(f"{what}: {len(missing)} of {len(paths)} images missing under {folder}, e.g. {missing[:3]}")
    return paths


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_suffix(suffix) if suffix else path


def _checked(benchmark: Benchmark) -> Benchmark:
    """Every reference, target, ground truth and img_set member must be a gallery image (as in the releases)."""
    if not benchmark.queries:
        raise InputError(f"{benchmark.name}: no queries")
    for query in benchmark.queries:
        named = [query.reference, *(query.relevant or []), *(query.members or [])]
        unknown = [name for name in named if name not in benchmark.gallery]
        if unknown:
            raise InputError(f"{benchmark.name}: query {query.id} names images not in the split's gallery: {unknown[:3]}")
    return benchmark
