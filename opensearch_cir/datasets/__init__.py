"""Readers for the data sets the project trains and evaluates on, and the synthetic scene generator.

- `flickr8k`: Flickr8k in the layout `images-SPLIT.tar`, `captions-SPLIT.txt`, `split-SPLIT.txt`.
- `fashion`: the Myntra product catalog (`products.parquet` + `images.tar`) with parsed attributes.
- `scenes`: deterministic 2-D scenes (CSS/TIRG style) with captions and composed modifications.
"""

from .fashion import FashionCatalog, Product, is_dev_product, parse_gender
from .flickr8k import Flickr8k, available_splits
from .scenes import Modification, Scene, SceneObject, SceneQuery, generate_catalog, generate_queries, render

__all__ = [
    "FashionCatalog",
    "Flickr8k",
    "Modification",
    "Product",
    "Scene",
    "SceneObject",
    "SceneQuery",
    "available_splits",
    "generate_catalog",
    "generate_queries",
    "is_dev_product",
    "parse_gender",
    "render",
]
