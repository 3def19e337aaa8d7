"""Dataset readers (on the shared data when present) and the synthetic scene generator."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.datasets import (
    FashionCatalog,
    Flickr8k,
    Scene,
    available_splits,
    generate_catalog,
    generate_queries,
    is_dev_product,
    parse_gender,
    render,
)
from opensearch_cir.datasets.scenes import SceneObject, modify
from opensearch_cir.errors import InputError


@pytest.mark.parametrize(
    "title, gender",
    [
        ("Puma Men's Toe Crusher Black T-shirt", "Men"),
        ("Wrangler Mens Blue Jeans", "Men"),
        ("Diva Women Printed Green Kurta", "Women"),
        ("Lee Women's Top", "Women"),
        ("Gini and Jony Kids Boys Red T-shirt", "Boys"),
        ("Doodle Kid's Girl's Pink Dress", "Girls"),
        ("Disney Kids Unisex Shoes", "Unisex"),
        ("Nike Kids Yellow Cap", "Unisex"),
        ("Ivory Tag Brown Fur Handbag", None),
        ("Menthol Balm", None),
    ],
)
def test_parse_gender(title, gender):
    assert parse_gender(title) == gender


def test_dev_split_is_deterministic_and_about_ten_percent():
    flags = [is_dev_product(str(i)) for i in range(5000)]
    assert flags == [is_dev_product(str(i)) for i in range(5000)]
    assert 0.08 < sum(flags) / len(flags) < 0.12


def _write_flickr(root, split="mini"):
    with tarfile.open(root / f"images-{split}.tar", "w") as tar:
        for name in ("a.jpg", "b.jpg"):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), "red").save(buf, "JPEG")
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    (root / f"captions-{split}.txt").write_text("b.jpg#1\tsecond b\nb.jpg#0\tfirst b\na.jpg#0\tonly a\n")
    (root / f"split-{split}.txt").write_text("a.jpg\nb.jpg\n")


def test_flickr8k_any_split_name(tmp_path):
    _write_flickr(tmp_path)
    assert available_splits(tmp_path) == ["mini"]
    data = Flickr8k(tmp_path, "mini")
    assert data.captions["b.jpg"] == ["first b", "second b"]
    images = dict(data.iter_images())
    assert set(images) == {"a.jpg", "b.jpg"}
    assert Image.open(io.BytesIO(images["a.jpg"])).size == (8, 8)
    with pytest.raises(InputError, match="available splits: \\['mini'\\]"):
        Flickr8k(tmp_path, "test")


def test_flickr8k_shared_dev(shared_data):
    data = Flickr8k(shared_data / "flickr8k", "dev")
    assert len(data) == 1000
    assert all(len(c) == 5 for c in data.captions.values())
    name, jpeg = next(data.iter_images())
    assert name in data.captions and jpeg[:2] == b"\xff\xd8"


def test_fashion_shared_catalog(shared_data):
    catalog = FashionCatalog(shared_data / "fashion")
    product = catalog.by_id["12783"]
    assert (product.colour, product.article_type, product.usage, product.gender) == ("Red", "Kurtas", "Ethnic", "Women")
    assert product.attribute_caption == "women red kurtas"
    dev, train = catalog.split("dev"), catalog.split("train")
    assert len(dev) + len(train) == len(catalog) and 0.08 < len(dev) / len(catalog) < 0.12
    first, jpeg = next(catalog.iter_images())
    assert Image.open(io.BytesIO(jpeg)).size == (60, 80)


def test_scenes_are_deterministic():
    a, b = generate_queries(7, 20), generate_queries(7, 20)
    assert [(q.reference.key, q.text, q.target.key) for q in a] == [(q.reference.key, q.text, q.target.key) for q in b]
    assert np.array_equal(np.asarray(render(a[0].reference)), np.asarray(render(b[0].reference)))
    assert [r.scene.key for r in generate_catalog(3, 10)] == [r.scene.key for r in generate_catalog(3, 10)]
    assert [r.scene.key for r in generate_catalog(3, 10)] != [r.scene.key for r in generate_catalog(4, 10)]


def test_modifications_change_exactly_one_thing():
    queries = generate_queries(1, 300)
    kinds = {q.modification.kind for q in queries}
    assert kinds == {"add", "remove", "colour", "shape", "size"}
    for q in queries:
        ref, tgt = set(q.reference.objects), set(q.target.objects)
        assert q.reference.key != q.target.key
        assert len(ref - tgt) + len(tgt - ref) == (2 if q.modification.kind in ("colour", "shape", "size") else 1)
    texts = {q.text.split()[0] for q in queries}
    assert len(texts) >= 8  # several phrasings


def test_render_draws_the_colours_of_the_graph():
    scene = Scene(()).with_objects([SceneObject("square", "red", "large", 4)])
    pixels = np.asarray(render(scene, size=48))
    assert pixels.shape == (48, 48, 3)
    assert tuple(pixels[24, 24]) == (220, 30, 30) and tuple(pixels[2, 2]) == (255, 255, 255)
    assert scene.caption == "a large red square in the center"
    import random

    target, mod = modify(scene, random.Random(0), kind="colour")
    assert mod.before.colour == "red" and target.objects[0].colour != "red" and "red" in mod.text
