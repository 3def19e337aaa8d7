"""End to end: every benchmark on tiny fixtures written here, with the tiny model and the embedded
engine (setup_index + Ingestor + compose.search, the path users get)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from opensearch_cir.compose import STRATEGIES, CompositeQuery, search
from opensearch_cir.eval import fashion, flickr8k, scenes
from opensearch_cir.eval.report import write_report

COLOURS = {"Red": (220, 30, 30), "Blue": (30, 60, 220), "Black": (10, 10, 10), "White": (250, 250, 250)}
ARTICLES = {"Tshirts": ("Topwear", "ellipse"), "Shirts": ("Topwear", "rectangle"), "Jeans": ("Bottomwear", "polygon")}


def _jpeg(colour, shape: str, seed: int) -> bytes:
    image = Image.new("RGB", (48, 48), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = [6 + seed % 5, 6, 40, 42 - seed % 4]
    getattr(draw, shape)(box if shape != "polygon" else [(24, 4), (44, 44), (4, 44)], fill=colour)
    draw.rectangle([seed % 40, 44, seed % 40 + 3, 47], fill=(seed * 7 % 256, 90, 160))  # unique bytes per seed
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("fashion")
    rows = []
    with tarfile.open(root / "images.tar", "w") as tar:
        pid = 100
        for copy in range(2):
            for gender in ("Men", "Women"):
                for colour, rgb in COLOURS.items():
                    for article, (sub, shape) in ARTICLES.items():
                        for usage in ("Casual", "Sports") if copy == 0 else ("Casual",):
                            pid += 1
                            title = f"Brand{pid % 7} {gender} {colour} {article.rstrip('s')}"
                            rows.append({"product_id": str(pid), "title": title,
                                         "description": f"Apparel - {sub} - {article} - {colour} - {usage}",
                                         "price": 10.0, "category": "Apparel", "image": f"{pid}.jpg"})
                            _add(tar, f"{pid}.jpg", _jpeg(rgb, shape, pid))
    pq.write_table(pa.Table.from_pylist(rows), root / "products.parquet")
    return root


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny"), phi=True), device="cpu", threads=1)


@pytest.fixture()
def client(tmp_path):
    from opensearch_cir.engines import connect

    return connect(f"embedded://{tmp_path / 'engine'}")


COMPOSED_KEYS = {"recall@1", "recall@5", "recall@10", "recall@50", "map@10", "map@50"}


def _check_composed(result: dict, strategies) -> None:
    assert set(result["strategies"]) == set(strategies)
    for values in result["strategies"].values():
        assert COMPOSED_KEYS <= set(values)
        assert all(0.0 <= values[k] <= 1.0 for k in COMPOSED_KEYS)
        assert values["recall@1"] <= values["recall@5"] <= values["recall@10"] <= values["recall@50"]
    assert result["queries"]["dev"] > 0 and result["queries"]["test"] > 0


def test_fashion_benchmark_end_to_end(fashion_dir, encoder, client, tmp_path):
    result = fashion.run(fashion_dir, client, encoder, products="all", n_queries=30, tune_subset=8)
    _check_composed(result, STRATEGIES)
    assert {"colour", "article_type", "gender"} <= set(result["groups"])
    assert "usage" in result["groups"]  # reported apart
    # BM25 over the rewritten title is a strong signal on this toy catalog: titles are the attributes
    assert result["strategies"]["bm25"]["recall@10"] >= result["strategies"]["text_only"]["recall@10"]
    assert len(result["tuning"]["fusion.alpha"]) == 11
    paths = write_report(result, tmp_path / "out", "fashion")
    assert json.loads(paths["json"].read_text())["strategies"]["hybrid"]["recall@10"] >= 0
    assert "| hybrid |" in paths["markdown"].read_text()
    assert "**reference image**: removed" in paths["markdown"].read_text()
    assert "**split**: test half of the queries" in paths["markdown"].read_text()
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_fashion_queries_name_only_the_change(fashion_dir):
    from opensearch_cir.datasets.fashion import FashionCatalog

    catalog = FashionCatalog(fashion_dir)
    cases = fashion.build_cases([(p, p.product_id) for p in catalog.products], 30)
    assert len(cases) >= 30
    for case in cases:
        reference = catalog.by_id[case.reference]
        kept = [getattr(reference, a) for a in fashion.ATTRIBUTES if a != case.group]
        assert not any(str(v).lower() in case.text.lower().split() for v in kept if v), case.text
        targets = [catalog.by_id[i] for i in case.relevant]
        assert targets and all(getattr(t, case.group) == case.extra["to"] for t in targets)
        if case.group == "article_type":
            assert {t.sub_category for t in targets} == {reference.sub_category}


def test_flickr8k_any_split(tmp_path, encoder, client):
    root = tmp_path / "flickr"
    root.mkdir()
    names, lines = [], []
    with tarfile.open(root / "images-mini.tar", "w") as tar:
        for i, (colour, rgb) in enumerate(COLOURS.items()):
            for shape in ("ellipse", "rectangle"):
                name = f"{i}_{shape}.jpg"
                names.append(name)
                _add(tar, name, _jpeg(rgb, shape, i))
                lines += [f"{name}#{n}\ta {colour.lower()} {shape} number {n}" for n in range(5)]
    (root / "captions-mini.txt").write_text("\n".join(lines) + "\n")
    (root / "split-mini.txt").write_text("\n".join(names) + "\n")
    result = flickr8k.run(root, client, encoder, split="mini")
    assert result["t2i"]["queries"] == 40 and result["i2t"]["queries"] == 8
    for direction in ("t2i", "i2t"):
        values = result[direction]
        assert set(values) >= {"recall@1", "recall@5", "recall@10", "median_rank"}
        assert values["recall@1"] <= values["recall@5"] <= values["recall@10"]
        assert 1 <= values["median_rank"] <= 40
    assert result["t2i"]["recall@10"] == 1.0  # 8 images: the top 10 holds every image
    markdown = write_report(result, tmp_path / "out", "flickr8k-mini")["markdown"].read_text()
    threshold = client.hnsw_threshold
    assert f"**ranking**: the engine's k-NN (exact below {threshold} documents)" in markdown and "| t2i |" in markdown
    # 5 of the 40 captions are right: random vectors find one in the top 10 most of the time, never all at rank 1
    assert result["i2t"]["recall@10"] > 0 and result["i2t"]["recall@1"] < 1


def test_scenes_benchmark(encoder, client):
    result = scenes.run(client, encoder, seed=3, n_queries=24, n_distractors=10, tune_subset=6, image_size=32)
    _check_composed(result, scenes.STRATEGIES)
    assert result["gallery"] >= 24


def test_search_excludes_reference_and_explains(fashion_dir, encoder, client):
    result = fashion.run(fashion_dir, client, encoder, products="all", n_queries=12, tune_subset=4,
                         strategies=("image_only", "hybrid"))
    from opensearch_cir.datasets.fashion import FashionCatalog
    from opensearch_cir.ingest.records import document_id

    catalog = FashionCatalog(fashion_dir)
    product, blob = next(catalog.iter_images())
    index = f"cir-eval-fashion-all-{result['gallery']}"
    response = search(client, index, CompositeQuery(images=[blob], text="in blue", k=5), encoder, explain=True)
    assert document_id(blob) not in response.ids and len(response) == 5
    assert response.rewrite.text.split()[-2:] == ["blue", product.title.split()[-1]]
    for hit in response:
        assert set(hit.sub_scores) == {"caption_bm25", "image_knn", "caption_knn"}
        assert hit.sub_scores["image_knn"] is not None and hit.caption
    scores = [hit.score for hit in response]
    assert scores == sorted(scores, reverse=True)


def test_verdict_names_the_winner_and_checks_both_single_modalities():
    from opensearch_cir.eval.report import verdict

    rows = {"image_only": {"recall@10": 0.2}, "text_only": {"recall@10": 0.1}, "fusion": {"recall@10": 0.3}}
    assert "**fusion**" in verdict(rows) and "beats both" in verdict(rows)
    rows["fusion"]["recall@10"] = 0.15
    assert "does NOT beat" in verdict(rows) and "**image_only**" in verdict(rows)


def test_reports_need_no_matplotlib(tmp_path, monkeypatch):
    import sys

    from opensearch_cir.eval import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert not report.plots_available()
    result = {"benchmark": "CIRCO val", "strategies": {"sum": {"recall@10": 0.5, "map@10": 0.25, "queries": 2}},
              "protocol": {"split": "val", "reference": "kept (official)", "ranking": "exact (...)", "settings": "fixed",
                           "comparable_with_papers": "yes"}}
    paths = write_report(result, tmp_path, "circo-val")
    assert set(paths) == {"json", "markdown"} and not (tmp_path / "circo-val.png").exists()
    markdown = paths["markdown"].read_text()
    assert "**reference image**: kept (official)" in markdown and "| sum | 50.0 | 25.0 |" in markdown
    assert "opensearch-cir[plots]" in report.PLOTS_HINT
