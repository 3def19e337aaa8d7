"""One-time preprocessing for training: decoded images as uint8 arrays and frozen text vectors.

Everything lands in a git-ignored cache folder (default `<repo>/.cache/training`) keyed by the
inputs, so repeated runs skip the work:

- `images-<name>.npy`: uint8 [N, S, S, 3], each image padded to a square with white and resized
  to S (the training crop source; larger than the model input so random-resized crops have room).
- `text-<digest>.npy`: float32 [T, 384] mean-pooled all-MiniLM-L6-v2 vectors of T strings, in
  the order given, tokenised as the exported model tokenises (`models.TEXT_SPEC`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..encoders.preprocess import load_image

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "training"


def pad_square(image: Image.Image, size: int, colour=(255, 255, 255)) -> Image.Image:
    """Pad to a centred square with `colour` and resize to `size` (the manifest's `pad_square`)."""
    side = max(image.size)
    square = Image.new("RGB", (side, side), colour)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square.resize((size, size), Image.Resampling.BILINEAR)


def decode_to_array(jpeg: bytes, size: int) -> np.ndarray:
    image = Image.open(io.BytesIO(jpeg))
    image.draft("RGB", (size, size))  # JPEG DCT scaling: decode big images faster
    return np.asarray(pad_square(load_image(image), size), dtype=np.uint8)


def cached_images(
    cache_dir: Path, name: str, count: int, items: Callable[[], Iterable[Image.Image | bytes]], size: int
) -> np.ndarray:
    """uint8 [count, size, size, 3] from `items()` (PIL images or encoded bytes), cached by `name`."""
    path = Path(cache_dir) / f"images-{name}-{size}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    out = np.empty((count, size, size, 3), np.uint8)
    filled = 0
    for item in tqdm(items(), total=count, desc=f"decode {name}", mininterval=5):
        if isinstance(item, Image.Image):
            out[filled] = np.asarray(pad_square(item.convert("RGB"), size), dtype=np.uint8)
        else:
            out[filled] = decode_to_array(item, size)
        filled += 1
    if filled != count:
        raise ValueError(f"{name}: expected {count} images, got {filled}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def pooled_text_vectors(texts: Sequence[str], cache_dir: Path, batch_size: int = 256) -> np.ndarray:
    """float32 [len(texts), 384]: frozen MiniLM mean-pooled vectors, cached by the texts' digest."""
    import torch

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"text-{digest}.npy"
    if path.is_file():
        return np.load(path)
    from ..encoders.runtime import load_tokenizer, tokenize_texts
    from .models import TEXT_SPEC, TextProjection, TextTower, minilm_path

    tower = TextTower(TextProjection())
    tokenizer = load_tokenizer(minilm_path() / "tokenizer.json", TEXT_SPEC)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
    out = np.empty((len(texts), 384), np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc="MiniLM", mininterval=5):
            index = order[start : start + batch_size]
            tokens = tokenize_texts(tokenizer, TEXT_SPEC, [texts[i] for i in index])
            out[index] = tower.pool(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out
