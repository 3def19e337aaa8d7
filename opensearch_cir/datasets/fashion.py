"""The fashion product catalog (Myntra "Fashion Product Images (small)") with parsed attributes.

A data folder holds `products.parquet` (product_id, title, description, price, category, image)
and `images.tar` (`<product_id>.jpg`). The attributes come from the description
"master - sub - articleType - colour - usage" and, for gender, from the title:

- gender: the first gender word in the title, case-insensitive, with or without the possessive
  ("Men", "Men's", "Mens" -> Men; "Women", "Women's", "Womens" -> Women; "Boy", "Boys", "Boy's"
  -> Boys; "Girl", "Girls", "Girl's" -> Girls; "Unisex" -> Unisex). "Kids"/"Kid's" only marks the
  age group: "Kids Boys ..." is Boys; a title with "Kids" and no other gender word is Unisex.
  Titles without any of these words (handbags, lipsticks, ...) have gender `None`.

The attribute labels are ground truth for evaluation and training captions; the title is what a
shop would index. `is_dev_product` defines the deterministic dev split used for model selection.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ._tar import iter_tar_files

GENDERS = ("Men", "Women", "Boys", "Girls", "Unisex")

_GENDER_WORDS = {
    "men": "Men", "mens": "Men", "man": "Men",
    "women": "Women", "womens": "Women", "woman": "Women",
    "boy": "Boys", "boys": "Boys",
    "girl": "Girls", "girls": "Girls",
    "unisex": "Unisex",
}  # fmt: skip
_KIDS_WORDS = {"kid", "kids"}
_WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]*)?")

DEV_FRACTION = 0.1


def parse_gender(title: str) -> str | None:
    """Gender from a product title (see the module docstring), one of GENDERS or None."""
    kids = False
    for match in _WORD.finditer(title):
        word = match.group(0).lower().replace("\u2019", "'")
        word = word.removesuffix("'s").removesuffix("'")
        if word in _GENDER_WORDS:
            return _GENDER_WORDS[word]
        kids = kids or word in _KIDS_WORDS
    return "Unisex" if kids else None


def is_dev_product(product_id: str, fraction: float = DEV_FRACTION) -> bool:
    """Deterministic dev split: sha256(product_id) mod 1000 < fraction*1000 (10 % by default)."""
    bucket = int.from_bytes(hashlib.sha256(str(product_id).encode()).digest()[:8], "big") % 1000
    return bucket < round(fraction * 1000)


@dataclass(frozen=True)
class Product:
    """One catalog product with its attribute labels."""

    product_id: str
    title: str
    master_category: str
    sub_category: str
    article_type: str
    colour: str
    usage: str
    gender: str | None
    image_name: str

    @property
    def attribute_caption(self) -> str:
        """A caption from the labels, e.g. "men black sports shoes" (gender omitted when unknown)."""
        words = [self.gender, self.colour, self.article_type]
        return " ".join(w for w in words if w).lower()

    @property
    def description(self) -> str:
        return " - ".join([self.master_category, self.sub_category, self.article_type, self.colour, self.usage])


def parse_description(description: str) -> tuple[str, str, str, str, str]:
    """(master, sub, article type, colour, usage) from "master - sub - articleType - colour - usage"."""
    parts = [p.strip() for p in description.split(" - ")]
    if len(parts) != 5:
        raise InputError(f"description {description!r} is not 'master - sub - articleType - colour - usage'")
    return parts[0], parts[1], parts[2], parts[3], parts[4]


class FashionCatalog:
    """The products of a catalog folder (in parquet order) and access to their images."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        parquet = self.root / "products.parquet"
        if not parquet.is_file() or not self.images_tar.is_file():
            raise InputError(f"{self.root} is not a fashion catalog folder (needs products.parquet and images.tar)")
        import pyarrow.parquet as pq

        table = pq.read_table(parquet, columns=["product_id", "title", "description", "image"])
        self.products: list[Product] = []
        for row in table.to_pylist():
            master, sub, article, colour, usage = parse_description(row["description"] or "")
            title = (row["title"] or "").strip()
            self.products.append(
                Product(
                    product_id=str(row["product_id"]),
                    title=title,
                    master_category=master,
                    sub_category=sub,
                    article_type=article,
                    colour=colour,
                    usage=usage,
                    gender=parse_gender(title),
                    image_name=row["image"] or f"{row['product_id']}.jpg",
                )
            )
        self.by_id = {p.product_id: p for p in self.products}

    @property
    def images_tar(self) -> Path:
        return self.root / "images.tar"

    def __len__(self) -> int:
        return len(self.products)

    def split(self, name: str) -> list[Product]:
        """Products of the `train` or `dev` split (see `is_dev_product`)."""
        if name not in ("train", "dev"):
            raise InputError(f"unknown fashion split {name!r} (use 'train' or 'dev')")
        return [p for p in self.products if is_dev_product(p.product_id) == (name == "dev")]

    def iter_images(self) -> Iterator[tuple[Product, bytes]]:
        """Yield (product, JPEG bytes) in archive order; images without a product are skipped."""
        by_image = {p.image_name: p for p in self.products}
        for name, data in iter_tar_files(self.images_tar):
            product = by_image.get(name)
            if product is not None:
                yield product, data
