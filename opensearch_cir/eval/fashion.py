"""A Fashion200k-style composed benchmark built deterministically from a product catalog folder
(`products.parquet` + `images.tar`, read by `opensearch_cir.datasets.fashion`).

Indexing is what a shop would do: each product's image with its **title** as the caption. The
attribute labels (colour, article type, usage, gender parsed from the title) are ground truth only:
never indexed, never given to a strategy.

A query is a reference product plus a modification naming exactly one changed attribute, in one of
several phrasings ("in navy blue instead", "replace black with navy blue", "make it a shirt",
"for women"), never the attributes that stay. Article types change only within the reference's
sub-category (T-shirt → shirt, never T-shirt → watch). A result is a hit when its attributes
(gender, colour, article type, usage) all equal the target's; every such gallery product is ground
truth. Usage changes (rarely visible) are a separate group, kept out of the overall numbers.
The gallery is a deterministic sample of the catalog (sha256 order of product ids).
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..ingest.records import document_id
from .harness import Case

ATTRIBUTES = ("colour", "article_type", "gender", "usage")
_PLURAL_ONLY = ("shoes", "pants", "jeans", "shorts", "trousers", "leggings", "capris", "briefs", "boxers",
                "heels", "flats", "sandals", "flops", "sunglasses", "tights", "jeggings", "salwar", "patiala")
_SPECIAL_NAMES = {"tshirts": "t-shirt", "innerwear vests": "vest", "necklace and chains": "necklace",
                  "perfume and body mist": "perfume"}


def article_phrase(article_type: str) -> tuple[str, bool]:
    """A natural name for an article type and whether it takes "a": "Tshirts" -> ("t-shirt", True)."""
    lowered = article_type.lower().strip()
    if lowered in _SPECIAL_NAMES:
        return _SPECIAL_NAMES[lowered], True
    if lowered.split()[-1] in _PLURAL_ONLY:
        return lowered, False
    if lowered.endswith("ses") or lowered.endswith("ches") or lowered.endswith("shes"):
        return lowered[:-2], True
    if lowered.endswith("s") and not lowered.endswith("ss"):
        return lowered[:-1], True
    return lowered, True


def _a(phrase: str, countable: bool) -> str:
    if not countable:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def modification_text(attribute: str, old: str, new: str, rng: random.Random) -> str:
    """One phrasing, chosen by `rng`, of changing `attribute` from `old` to `new`; names only the change."""
    if attribute == "colour":
        old, new = old.lower(), new.lower()
        return rng.choice([f"in {new} instead", f"replace {old} with {new}", f"make it {new}",
                           f"same but in {new}", f"change the colour to {new}", f"{new} instead of {old}"])
    if attribute == "article_type":
        (old_name, _), (name, countable) = article_phrase(old), article_phrase(new)
        return rng.choice([f"make it {_a(name, countable)}", f"I want {_a(name, countable)} instead",
                           f"as {_a(name, countable)}", f"replace the {old_name} with {_a(name, countable)}",
                           f"change it to {_a(name, countable)}"])
    if attribute == "gender":
        new = new.lower()
        if new == "unisex":
            return rng.choice(["a unisex version", "make it unisex", "for everyone, unisex"])
        return rng.choice([f"for {new}", f"make it for {new}", f"the {new}'s version"])
    new = new.lower()
    return rng.choice([f"for {new}", f"a {new} version", f"something {new} instead", f"suitable for {new} use"])


def _attributes(product: Any) -> tuple:
    return tuple(getattr(product, a) for a in ATTRIBUTES)


def sample_gallery(products: list[Any], size: int | None) -> list[Any]:
    """The first `size` products in sha256(product_id) order (all when `size` is None)."""
    ordered = sorted(products, key=lambda p: hashlib.sha256(p.product_id.encode()).hexdigest())
    return ordered if size is None else ordered[:size]


def gallery_images(catalog: Any, products: list[Any]) -> Iterator[tuple[Any, bytes]]:
    """(product, image bytes) for the gallery products; the first product per identical image wins."""
    wanted = {p.product_id for p in products}
    seen: set[str] = set()
    for product, data in catalog.iter_images():
        doc_id = document_id(data)
        if product.product_id in wanted and doc_id not in seen:
            seen.add(doc_id)
            yield product, data


def build_cases(products: list[tuple[Any, str]], n_queries: int, seed: int = 0) -> list[Case]:
    """`n_queries` composed queries (+10 % usage changes, reported apart) over `products`
    [(product, doc id)], each with at least one target in the gallery."""
    by_key: dict[tuple, list[str]] = defaultdict(list)
    for product, doc_id in products:
        by_key[_attributes(product)].append(doc_id)
    sub_categories: dict[str, set[str]] = defaultdict(set)
    for product, _ in products:
        sub_categories[product.sub_category].add(product.article_type)
    rng = random.Random(f"fashion-benchmark-{seed}")
    order = list(products)
    rng.shuffle(order)
    wanted = {"colour": n_queries // 3, "article_type": n_queries // 3, "gender": n_queries - 2 * (n_queries // 3),
              "usage": max(1, n_queries // 10)}
    cases: list[Case] = []
    for product, doc_id in order:
        options = []
        for attribute in ATTRIBUTES:
            if wanted[attribute] <= 0 or getattr(product, attribute) is None:
                continue
            old = getattr(product, attribute)
            values = sub_categories[product.sub_category] if attribute == "article_type" else \
                {key[ATTRIBUTES.index(attribute)] for key in by_key}
            for new in sorted(v for v in values if v is not None and v != old):
                target = dict(zip(ATTRIBUTES, _attributes(product)), **{attribute: new})
                if by_key.get(tuple(target[a] for a in ATTRIBUTES)):
                    options.append((attribute, old, new, tuple(target[a] for a in ATTRIBUTES)))
        if not options:
            continue
        attribute, old, new, target = rng.choice(options)
        wanted[attribute] -= 1
        cases.append(Case(
            id=f"fashion-{product.product_id}-{attribute}",
            reference=doc_id,
            text=modification_text(attribute, old, new, rng),
            relevant=frozenset(by_key[target]),
            group=attribute,
            extra={"separate": attribute == "usage", "from": old, "to": new},
        ))
        if all(v <= 0 for v in wanted.values()):
            break
    return cases


def gallery(data: str | Path, products: str = "dev", gallery_size: int | None = None) -> list[tuple[Any, bytes]]:
    """(product, image bytes) of the gallery: `products` split (dev, train or all), capped at `gallery_size`."""
    from ..datasets.fashion import FashionCatalog

    catalog = FashionCatalog(data)
    pool = catalog.products if products == "all" else catalog.split(products)
    images = list(gallery_images(catalog, sample_gallery(pool, gallery_size)))
    if not images:
        raise InputError(f"{data}: no product images found for the gallery")
    return images


def build(data: str | Path, client: Any, encoder: Any, *, products: str = "dev", gallery_size: int | None = None,
          n_queries: int = 4600) -> tuple[str, list[Case], list[str]]:
    """Index the gallery of `data` (cached) and build the queries: (index name, cases, notes).

    products: `dev` (the catalog's dev split, which the default model never trains on), `train`
    or `all`; gallery_size caps the gallery (None = every product of that split)."""
    from ..ingest import Record
    from .harness import build_index

    images = gallery(data, products, gallery_size)
    index = f"cir-eval-fashion-{products}-{len(images)}"
    records = (Record(image=blob, captions=[p.title], uri=f"{Path(data).name}/{p.image_name}",
                      metadata={"product_id": p.product_id}) for p, blob in images)
    build_index(client, index, encoder, records, expected=len(images))
    cases = build_cases([(p, document_id(blob)) for p, blob in images], n_queries)
    notes = [
        f"gallery: {len(images)} products ({products} split) of {Path(data).name} indexed as image + title; "
        "attribute labels are ground truth only",
        "overall = colour, article type and gender changes; usage changes are the separate group 'usage'",
    ]
    return index, cases, notes


def run(data: str | Path, client: Any, encoder: Any, *, products: str = "dev", gallery_size: int | None = None,
        n_queries: int = 4600, tune_subset: int = 200, test_subset: int | None = None,
        strategies: tuple[str, ...] | None = None) -> dict:
    """Build the gallery index and the queries (`build`), tune on dev queries, score on test queries."""
    from ..compose.query import STRATEGIES
    from .harness import run_composed

    index, cases, notes = build(data, client, encoder, products=products, gallery_size=gallery_size, n_queries=n_queries)
    result = run_composed(client, index, encoder, cases, name="fashion", strategies=strategies or STRATEGIES,
                          tune_subset=tune_subset, test_subset=test_subset)
    result["gallery"] = client.count(index=index)["count"]
    result["notes"] = notes
    return result
