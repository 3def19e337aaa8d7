"""CIRR, FashionIQ and CIRCO as the official code computes them, on tiny data sets written here in
the official layouts (CIRR README "Dataset File Structure", FashionIQ's captions/image_splits,
CIRCO README). Expected numbers are computed by hand, or by an independent re-implementation of
the official formulas over the same vectors (SEARLE `src/validate.py`: full similarity matrix,
argsort, reference mask, img_set group mask; CIRCO `src/evaluation.py` `compute_metrics` on the
submission file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.errors import InputError
from opensearch_cir.eval import formats, official, runner
from opensearch_cir.eval.formats import Benchmark, Query
from test_eval import client, encoder  # noqa: F401  (the tiny model and an embedded engine per test)

SIMPLE = ("image_only", "text_only", "sum")  # strategies whose vectors the test recomputes independently
WORDS = ["red", "blue", "bigger", "smaller", "two dogs", "a cat", "at night", "on grass", "darker", "striped"]


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


# -- data sets in the official layouts ---------------------------------------------------------------


def write_cirr(root: Path, split: str = "val", n: int = 18, raw: bool = False, duplicate: bool = False) -> list[str]:
    folder = {"val": "dev", "test1": "test1", "train": "train"}[split]
    prefix = {"val": "dev", "test1": "test1", "train": "train"}[split]
    names = [f"{prefix}-{i}-{i % 4}-img{i % 2}" for i in range(n)]
    images = root / "cirr" / "img_raw" if raw else root
    for i, name in enumerate(names):
        _image(images / folder / f"{name}.png", (0 if duplicate and i == 1 else i) + 100 * len(split))
    (root / "cirr" / "image_splits").mkdir(parents=True, exist_ok=True)
    (root / "cirr" / "captions").mkdir(parents=True, exist_ok=True)
    (root / "cirr" / "image_splits" / f"split.rc2.{split}.json").write_text(
        json.dumps({name: f"./{folder}/{name}.png" for name in names}))
    entries = []
    for q in range(n):
        members = [names[(q + j) % n] for j in (0, 3, 5, 7, 9, 11)]
        entry = {"pairid": 1000 + q, "reference": names[q], "caption": WORDS[q % len(WORDS)],
                 "img_set": {"id": q, "members": members, "reference_rank": 0, "target_rank": 2}}
        if split != "test1":
            entry.update(target_hard=members[1 + q % 5], target_soft={members[1 + q % 5]: 1.0})
        entries.append(entry)
    if split == "test1":
        entries[2]["caption"] = ""  # as pairid 27098 of the real test1
    (root / "cirr" / "captions" / f"cap.rc2.{split}.json").write_text(json.dumps(entries))
    return names


def write_fashioniq(root: Path, split: str = "val", n: int = 12) -> None:
    for c, category in enumerate(formats.FASHIONIQ_CATEGORIES):
        names = [f"B0{c}{split[:2].upper()}{i:05d}" for i in range(n)]
        for i, name in enumerate(names):
            _image(root / "images" / f"{name}.jpg", 1000 * c + i + len(split))
        (root / "image_splits").mkdir(exist_ok=True)
        (root / "captions").mkdir(exist_ok=True)
        (root / "image_splits" / f"split.{category}.{split}.json").write_text(json.dumps(names))
        captions = []
        for i in range(n):
            entry = {"candidate": names[i], "captions": [f"is {WORDS[i % 10]}.", f" has {WORDS[(i + 3) % 10]}?"]}
            if split != "test":
                entry = {"target": names[(i + 1 + c) % n], **entry}
            captions.append(entry)
        (root / "captions" / f"cap.{category}.{split}.json").write_text(json.dumps(captions))


def write_circo(root: Path, n_images: int = 24, info: bool = True) -> list[int]:
    ids = [9761 + 37 * i for i in range(n_images)]
    coco = root / "COCO2017_unlabeled"
    for i, image_id in enumerate(ids):
        _image(coco / "unlabeled2017" / f"{image_id:012d}.jpg", 5000 + i)
    if info:
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / "image_info_unlabeled2017.json").write_text(json.dumps(
            {"images": [{"id": image_id, "file_name": f"{image_id:012d}.jpg"} for image_id in ids]}))
    (root / "annotations").mkdir(exist_ok=True)
    val = [{"id": q, "reference_img_id": ids[q], "target_img_id": ids[(q + 5) % n_images],
            "relative_caption": WORDS[q % 10], "shared_concept": "a thing",
            "gt_img_ids": [ids[(q + 5) % n_images]] + [ids[(q + 5 + 2 * j) % n_images] for j in range(1, 1 + q % 4)],
            "semantic_aspects": ["cardinality"]} for q in range(10)]
    test = [{"id": q, "reference_img_id": ids[-1 - q], "relative_caption": WORDS[(q + 4) % 10], "shared_concept": "x"}
            for q in range(6)]
    (root / "annotations" / "val.json").write_text(json.dumps(val))
    (root / "annotations" / "test.json").write_text(json.dumps(test))
    return ids


# -- an independent re-implementation of the official computations -------------------------------


def reference_rankings(benchmark: Benchmark, encoder, strategy: str, remove: bool) -> np.ndarray:
    """SEARLE / CIReVL: cosine of every query with every gallery image, argsort, reference masked."""
    names = sorted(benchmark.gallery)
    gallery = encoder.encode_images([benchmark.gallery[n] for n in names])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    references = gallery[[names.index(q.reference) for q in benchmark.queries]]
    texts = encoder.encode_texts([q.text for q in benchmark.queries])
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    queries = {"image_only": references, "text_only": texts, "sum": references + texts}[strategy]
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    ranked = np.array(names)[np.argsort(-(queries @ gallery.T), axis=1, kind="stable")]
    if remove:
        keep = ranked != np.array([q.reference for q in benchmark.queries])[:, None]
        ranked = ranked[keep].reshape(len(ranked), -1)
    return ranked


def official_cirr(ranked: np.ndarray, benchmark: Benchmark) -> dict:
    targets = np.array([q.target for q in benchmark.queries])
    labels = ranked == targets[:, None]
    members = np.array([q.members for q in benchmark.queries])
    group = (ranked[..., None] == members[:, None, :]).sum(-1).astype(bool)
    group_labels = labels[group].reshape(len(labels), -1)
    out = {f"recall@{k}": labels[:, :k].sum() / len(labels) for k in (1, 5, 10, 50)}
    out.update({f"recall_subset@{k}": group_labels[:, :k].sum() / len(labels) for k in (1, 2, 3)})
    return out


def official_circo(predictions: dict, annotations: list[dict], ranks=(5, 10, 25, 50)) -> dict:
    """CIRCO evaluation.py's compute_metrics, on a submission file."""
    aps, recalls = {k: [] for k in ranks}, {k: [] for k in ranks}
    for query_id, predicted in predictions.items():
        entry = annotations[int(query_id)]
        predicted = np.array(predicted, dtype=int)
        labels = np.isin(predicted, entry["gt_img_ids"])
        precisions = np.cumsum(labels) * labels / np.arange(1, len(labels) + 1)
        for k in ranks:
            aps[k].append(precisions[:k].sum() / min(len(entry["gt_img_ids"]), k))
            recalls[k].append((predicted == entry["target_img_id"])[:k].sum())
    return {**{f"map@{k}": np.mean(v) for k, v in aps.items()}, **{f"recall@{k}": np.mean(v) for k, v in recalls.items()}}


# -- pure protocol functions, numbers by hand -----------------------------------------------------


def _bench(queries: list[Query], gallery: list[str], dataset: str = "cirr") -> Benchmark:
    return Benchmark(dataset, "val", {name: Path(name) for name in gallery}, queries)


def test_recall_subset_ranks_members_within_the_full_ranking():
    # the example: the target is 61st overall but the first img_set member in the ranking
    gallery = [f"g{i}" for i in range(80)]
    query = Query(1, "g0", "x", target="g61", relevant=["g61"], members=["g0", "g61", "g70", "g71", "g72", "g73"])
    ranking = gallery[1:]  # reference removed: g61 sits at rank 61
    subset = [m for m in ranking if m in official.subset_of(query.members, "g0", True)]
    scores = official.score(_bench([query], gallery), [ranking[:50]], [subset], official.PROTOCOLS["cirr"])
    assert scores["recall@50"] == 0 and scores["recall_subset@1"] == 1.0
    assert official.subset_of(query.members, "g0", True) == ["g61", "g70", "g71", "g72", "g73"]
    assert official.subset_of(query.members, "g0", False)[0] == "g0"


def test_circo_recall_counts_only_the_target_and_map_every_ground_truth():
    gallery = [str(i) for i in range(10)]
    query = Query(0, "9", "x", target="3", relevant=["3", "1", "2"])
    ranking = ["1", "5", "2", "6", "7", "3", "8"]
    scores = official.score(_bench([query], gallery, "circo"), [ranking], None, official.PROTOCOLS["circo"])
    assert scores["recall@5"] == 0 and scores["recall@10"] == 1  # ground truths 1 and 2 in the top 5 do not count
    assert scores["map@5"] == pytest.approx((1 / 1 + 2 / 3) / 3)  # hits at ranks 1, 3; min(5, |GT|=3)
    assert scores["map@10"] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)


def test_circo_semantic_aspects_average_ap10_per_aspect():
    gallery = [str(i) for i in range(20)]
    queries = [Query(0, "19", "x", target="1", relevant=["1", "2"], annotation={"semantic_aspects": ["cardinality", "addition"]}),
               Query(1, "19", "y", target="3", relevant=["3"], annotation={"semantic_aspects": ["cardinality"]})]
    aspects = official.circo_semantic_map(_bench(queries, gallery, "circo"), [["1", "0", "2"], ["0", "3"]])
    # AP@10: query 0 (1/1 + 2/3) / 2; query 1 (1/2) / 1
    assert aspects["addition"] == {"map@10": pytest.approx(5 / 6), "queries": 1}
    assert aspects["cardinality"] == {"map@10": pytest.approx((5 / 6 + 1 / 2) / 2), "queries": 2}


def test_fashioniq_summary_is_the_papers_average():
    per = {"dress": {"recall@10": 0.2, "recall@50": 0.4, "queries": 2},
           "shirt": {"recall@10": 0.3, "recall@50": 0.5, "queries": 3},
           "toptee": {"recall@10": 0.1, "recall@50": 0.6, "queries": 4}}
    summary = official.fashioniq_summary(per)
    assert summary["recall@10"] == pytest.approx(0.2) and summary["recall@50"] == pytest.approx(0.5)
    assert summary["overall"] == pytest.approx(0.35) and summary["queries"] == 9


def test_fashioniq_text_strips_as_searle():
    assert formats.fashioniq_text(["is shiny.", " fit and flare?"]) == "is shiny and  fit and flare".replace("  ", " ")
    assert formats.fashioniq_text(["is solid white", ""]) == "is solid white"


def test_submission_validators_refuse_incomplete_files():
    gallery = [f"g{i}" for i in range(60)]
    queries = [Query(7, "g0", "x", members=["g0", "g1", "g2", "g3", "g4", "g5"])]
    bench = _bench(queries, gallery)
    docs = official.cirr_submissions(bench, [gallery[1:51]], [["g2", "g1", "g3", "g4", "g5"]])
    assert docs["recall"]["version"] == "rc2" and docs["recall_subset"]["metric"] == "recall_subset"
    assert docs["recall_subset"]["7"] == ["g2", "g1", "g3"]
    for metric, document in docs.items():
        official.validate_cirr_submission(document, bench, metric)
    with pytest.raises(InputError, match="distinct ids"):
        official.validate_cirr_submission({**docs["recall"], "7": gallery[1:40]}, bench, "recall")
    with pytest.raises(InputError, match="reference"):
        official.validate_cirr_submission({**docs["recall"], "7": gallery[:50]}, bench, "recall")
    with pytest.raises(InputError, match="pairids differ"):
        official.validate_cirr_submission({"version": "rc2", "metric": "recall"}, bench, "recall")
    circo = _bench([Query(0, "1", "x"), Query(1, "2", "y")], [str(i) for i in range(60)], "circo")
    submission = official.circo_submission(circo, [[str(i) for i in range(50)]] * 2)
    official.validate_circo_submission(submission, circo)
    with pytest.raises(InputError, match="all query ids"):
        official.validate_circo_submission({"0": submission["0"]}, circo)
    with pytest.raises(InputError, match="integers"):
        official.validate_circo_submission({**submission, "1": [str(i) for i in range(50)]}, circo)


# -- end to end: tiny model, embedded engine ------------------------------------------------------


def _settings(**kwargs) -> runner.Settings:
    return runner.Settings(**{"strategies": SIMPLE, **kwargs})


@pytest.mark.parametrize("raw", [False, True], ids=["searle-layout", "img_raw-layout"])
def test_cirr_val_equals_the_official_computation(tmp_path, encoder, client, raw):
    write_cirr(tmp_path, "val", raw=raw)
    result = runner.run("cirr", tmp_path, client, encoder, _settings(out=tmp_path / "out"))
    benchmark = formats.load_cirr(tmp_path, "val")
    assert result["protocol"]["queries"] == len(benchmark.queries) == 18  # the whole split, no half
    assert result["protocol"]["reference"] == "removed (official)"
    assert result["protocol"]["ranking"].startswith("exact")
    for strategy in SIMPLE:
        expected = official_cirr(reference_rankings(benchmark, encoder, strategy, remove=True), benchmark)
        got = result["strategies"][strategy]
        assert {k: got[k] for k in expected} == pytest.approx(expected), strategy
    files = result["submissions"]["image_only"]
    recall = json.loads(Path(files["recall"]).read_text())
    assert recall["version"] == "rc2" and len(recall) == 18 + 2 and len(recall["1000"]) == 17  # gallery minus reference


def test_cirr_test1_writes_validated_submissions_despite_an_empty_caption(tmp_path, encoder, client):
    write_cirr(tmp_path, "test1")
    result = runner.run("cirr", tmp_path, client, encoder, _settings(split="test", out=tmp_path / "out"))
    assert result["strategies"] == {} and result["protocol"]["split"] == "test1"
    assert result["protocol"]["empty_text_queries"] == 1
    benchmark = formats.load_cirr(tmp_path, "test1")
    for strategy in SIMPLE:
        for metric, path in result["submissions"][strategy].items():
            document = json.loads(Path(path).read_text())
            official.validate_cirr_submission(document, benchmark, metric)
            assert set(document) - {"version", "metric"} == {str(1000 + q) for q in range(18)}
    subset = json.loads(Path(result["submissions"]["text_only"]["recall_subset"]).read_text())
    assert all(len(ids) == 3 for key, ids in subset.items() if key not in ("version", "metric"))


def test_identical_images_stay_separate_documents(tmp_path, encoder, client):
    names = write_cirr(tmp_path, "val", duplicate=True)  # images 0 and 1 have the same bytes
    assert (tmp_path / "dev" / f"{names[0]}.png").read_bytes() == (tmp_path / "dev" / f"{names[1]}.png").read_bytes()
    result = runner.run("cirr", tmp_path, client, encoder, _settings(strategies=("image_only",), out=tmp_path / "out"))
    assert result["protocol"]["gallery"] == 18
    assert client.count(index=result["index"])["count"] == 18
    # the reference is removed by its name only: its byte-identical twin is another image, ranked first
    recall = json.loads(Path(result["submissions"]["image_only"]["recall"]).read_text())
    assert recall["1000"][0] == names[1] and names[0] not in recall["1000"]


def test_fashioniq_val_keeps_the_reference_and_averages_as_the_papers(tmp_path, encoder, client):
    write_fashioniq(tmp_path, "val")
    result = runner.run("fashioniq", tmp_path, client, encoder, _settings())
    assert result["protocol"]["reference"] == "kept (official)" and result["protocol"]["queries"] == 36
    assert result["protocol"]["gallery"] == {"dress": 12, "shirt": 12, "toptee": 12}
    for category in formats.FASHIONIQ_CATEGORIES:
        benchmark = formats.load_fashioniq(tmp_path, category, "val")
        for strategy in SIMPLE:
            ranked = reference_rankings(benchmark, encoder, strategy, remove=False)
            labels = ranked == np.array([q.target for q in benchmark.queries])[:, None]
            got = result["groups"][category][strategy]
            assert got["recall@10"] == pytest.approx(labels[:, :10].sum() / len(labels))
            assert got["recall@50"] == pytest.approx(labels[:, :50].sum() / len(labels))
    row = result["strategies"]["image_only"]
    categories = [result["groups"][c]["image_only"] for c in formats.FASHIONIQ_CATEGORIES]
    assert row["recall@10"] == pytest.approx(np.mean([c["recall@10"] for c in categories]))
    assert row["overall"] == pytest.approx((row["recall@10"] + row["recall@50"]) / 2)
    # image_only with the reference kept ranks the reference first: R@10 only counts targets
    removed = runner.run("fashioniq", tmp_path, client, encoder, _settings(reference="remove", strategies=("image_only",)))
    assert "NOT official" in removed["protocol"]["reference"]
    assert removed["protocol"]["comparable_with_papers"].startswith("no")


def test_fashioniq_test_writes_start_kit_predictions(tmp_path, encoder, client):
    write_fashioniq(tmp_path, "test")
    result = runner.run("fashioniq", tmp_path, client, encoder, _settings(split="test", out=tmp_path / "out",
                                                                          strategies=("sum",)))
    assert "strategies" not in result
    predictions = json.loads(Path(result["submissions"]["dress"]["sum"]["predictions"]).read_text())
    assert len(predictions) == 12 and len(predictions[0]["ranking"]) == 12 and "target" not in predictions[0]


def test_circo_val_matches_the_official_evaluation_of_its_submission(tmp_path, encoder, client):
    write_circo(tmp_path)
    result = runner.run("circo", tmp_path, client, encoder, _settings(out=tmp_path / "out"))
    assert result["protocol"]["reference"] == "kept (official)"
    annotations = json.loads((tmp_path / "annotations" / "val.json").read_text())
    benchmark = formats.load_circo(tmp_path, "val")
    for strategy in SIMPLE:
        submission = json.loads(Path(result["submissions"][strategy]["submission"]).read_text())
        expected = official_circo(submission, annotations)
        got = result["strategies"][strategy]
        assert {k: got[k] for k in expected} == pytest.approx(expected), strategy
        ranked = reference_rankings(benchmark, encoder, strategy, remove=False)
        assert [[str(i) for i in submission[str(q)]] for q in range(10)] == ranked[:, :24].tolist()
    assert result["groups"]["semantic aspect: cardinality"]["sum"]["queries"] == 10


def test_circo_test_submission_and_glob_gallery(tmp_path, encoder, client):
    write_circo(tmp_path, info=False)  # no image_info file: every unlabeled2017/*.jpg
    result = runner.run("circo", tmp_path, client, encoder, _settings(split="test", out=tmp_path / "out"))
    submission = json.loads(Path(result["submissions"]["fusion" if "fusion" in result["submissions"] else "sum"]["submission"]).read_text())
    assert sorted(submission, key=int) == [str(q) for q in range(6)] and all(len(v) == 24 for v in submission.values())
    official.validate_circo_submission(submission, formats.load_circo(tmp_path, "test"))


def test_exact_ranking_is_enforced_and_ann_is_stated(tmp_path, encoder):
    from opensearch_cir.engines import connect

    write_circo(tmp_path)
    small = connect(f"embedded://{tmp_path / 'engine'}", hnsw_threshold=10)
    with pytest.raises(InputError, match="exact ranking of 24 images"):
        runner.run("circo", tmp_path, small, encoder, _settings())
    result = runner.run("circo", tmp_path, small, encoder, _settings(exact=False, strategies=("image_only",)))
    assert result["protocol"]["ranking"].startswith("approximate")
    assert "approximate ranking" in result["protocol"]["comparable_with_papers"]


def test_tuning_only_on_another_split(tmp_path, encoder, client):
    write_cirr(tmp_path, "val")
    write_cirr(tmp_path, "train")
    with pytest.raises(InputError, match="different split"):
        runner.run("cirr", tmp_path, client, encoder, runner.Settings(tune_on="val"))
    result = runner.run("cirr", tmp_path, client, encoder, runner.Settings(tune_on="train", tune_queries=6,
                                                                           strategies=("fusion",)))
    assert len(result["tuning"]["fusion.alpha"]) == 11
    assert "tuned on train" in result["protocol"]["settings"]
    assert result["protocol"]["queries"] == 18


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing CIRR val captions .*cap\.rc2\.val\.json"):
        formats.load_cirr(tmp_path, "val")
    names = write_cirr(tmp_path, "val")
    (tmp_path / "dev" / f"{names[3]}.png").unlink()
    with pytest.raises(InputError, match="1 of 18 images missing"):
        formats.load_cirr(tmp_path, "val")
    for path in (tmp_path / "dev").iterdir():
        path.unlink()
    with pytest.raises(InputError, match="not found \\(tried"):
        formats.load_cirr(tmp_path, "val")
    with pytest.raises(InputError, match="CIRR split must be"):
        formats.load_cirr(tmp_path, "test2")
    with pytest.raises(InputError, match="missing FashionIQ image list"):
        formats.load_fashioniq(tmp_path, "dress", "val")
    with pytest.raises(InputError, match="no COCO unlabeled2017 images"):
        (tmp_path / "annotations").mkdir()
        (tmp_path / "annotations" / "val.json").write_text("[]")
        formats.load_circo(tmp_path, "val")
    with pytest.raises(InputError, match="unknown benchmark"):
        formats.load("cifar", tmp_path, "val")


def test_cir_eval_commands(tmp_path, encoder, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from opensearch_cir.cli import app

    write_circo(tmp_path / "circo")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # a plain [cpu] install
    common = ["--out", str(tmp_path / "out"), "--model", str(encoder.model_dir)]
    result = CliRunner().invoke(app, ["eval", "circo", "--data", str(tmp_path / "circo"), *common])
    assert result.exit_code == 0, result.output
    for line in ("**split**: val", "**reference image**: kept (official)", "**ranking**: exact",
                 "**settings**: fixed (no tuning)", "comparable with the papers' tables**: yes", "| fusion |"):
        assert line in result.output
    assert "pip install 'opensearch-cir[plots]'" in result.output
    report = json.loads((tmp_path / "out" / "circo-val.json").read_text())
    assert report["protocol"]["queries"] == 10 and set(report["strategies"]) == set(runner.STRATEGIES)
    test = CliRunner().invoke(app, ["eval", "circo", "--data", str(tmp_path / "circo"), "--split", "test", "--ann", *common])
    assert test.exit_code == 0, test.output
    assert "submission files only" in test.output and "**ranking**: approximate" in test.output
    assert (tmp_path / "out" / "submissions" / "circo-test-fusion.json").is_file()
    missing = CliRunner().invoke(app, ["eval", "cirr", "--data", str(tmp_path / "nowhere"), *common])
    assert missing.exit_code == 2 and "missing CIRR val captions" in missing.output
