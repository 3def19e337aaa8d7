"""Image decoding and preprocessing with PIL + numpy (no torch), matching the source model's processor.

`load_image` turns a path, bytes or PIL image into an upright RGB image, raising typed errors for
anything that is not a decodable image. `ImagePreprocessor(manifest.image)` turns that image into
the float32 `[3, H, W]` array the image graph expects, following the manifest's `ImageSpec`
(the same arithmetic as transformers' CLIP / SigLIP image processors).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from ..errors import ImageDecodeError, ImageTooLargeError
from .manifest import ImageSpec

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image]

DEFAULT_MAX_PIXELS = 64_000_000
"""Pixel cap (width × height) above which an image is refused as a likely decompression bomb."""

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)
_WHITE = (255, 255, 255)


def describe_source(source: ImageSource) -> str:
    """A short human-readable name of an image source, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, *, min_side: int | None = None) -> Image.Image:
    """Decode `source` (path, bytes or PIL image) into an upright RGB PIL image.

    EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and transparent images become
    RGB (transparency is composited on white). Raises `ImageDecodeError` for a missing, empty,
    truncated, corrupt or non-image input and `ImageTooLargeError` above `max_pixels` pixels.
    With `min_side` (see `ImagePreprocessor.decode_side`), a JPEG at least twice that size on its
    shorter side is decoded at a reduced scale (libjpeg's DCT scaling) that keeps both sides at
    least `min_side`: a 40 MP photo decodes ~5× faster and needs 1/16 of the memory.
    """
    name = describe_source(source)
    if isinstance(source, Image.Image):
        image = source
        _check_pixels(image, max_pixels, name)
        try:
            image.load()  # a lazily opened PIL image may still be truncated
        except _DECODE_ERRORS as exc:
            raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc
    else:
        image = _decode(read_image_bytes(source), max_pixels, name, min_side)
    try:
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        pass  # malformed EXIF: keep the stored orientation rather than lose the image
    return to_rgb(image)


def read_image_bytes(source: str | os.PathLike | bytes | bytearray | memoryview) -> bytes:
    """The bytes of a path or byte string; ImageDecodeError when missing, unreadable or empty."""
    name = describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageDecodeError(f"{name}: no such file") from None
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot be read ({exc})") from exc
    else:
        raise ImageDecodeError(f"{name}: expected a path, bytes or a PIL image")
    if not data:
        raise ImageDecodeError(f"{name}: empty (0 bytes)")
    return data


def _decode(data: bytes, max_pixels: int, name: str, min_side: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image, max_pixels, name)  # from the header, before decoding any pixel
            shorter = min(image.size)
            if min_side and image.format == "JPEG" and shorter >= 2 * min_side:
                image.draft(None, (math.ceil(image.width * min_side / shorter), math.ceil(image.height * min_side / shorter)))
            image.load()
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from None
    except _DECODE_ERRORS as exc:
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc
    return image


def _check_pixels(image: Image.Image, max_pixels: int, name: str) -> None:
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {image.width}x{image.height} = {pixels} pixels exceeds the cap of {max_pixels}"
        )
    if pixels == 0:
        raise ImageDecodeError(f"{name}: image has no pixels")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16/32-bit rescaled, alpha composited on white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = 1.0 if values.size and values.max() <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or (values.size and values.max() > 255):
        peak = 65535.0
    else:
        peak = 255.0
    gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


class ImagePreprocessor:
    """Callable turning an RGB PIL image into the image graph's `float32[3, size, size]` input."""

    def __init__(self, spec: ImageSpec):
        if spec.resize not in ("shortest_edge", "squash", "pad_square"):
            raise ValueError(f"unknown resize rule {spec.resize!r}")
        self.spec = spec
        self._resample = _RESAMPLE[spec.interpolation]
        self._mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)

    @property
    def decode_side(self) -> int:
        """The shorter side a decoder must keep for this preprocessing to be unaffected in practice:
        4× the largest side it resizes to (the resize then still averages ≥ 4 × 4 source pixels)."""
        return 4 * max(self.spec.size, self.spec.resize_to)

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = self.resize(to_rgb(image))
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) * np.float32(self.spec.rescale)
        return np.ascontiguousarray((pixels - self._mean) / self._std, dtype=np.float32)

    def resize(self, image: Image.Image) -> Image.Image:
        """Geometric part only: resize (+ crop or pad) to `size × size` per the spec."""
        spec = self.spec
        if spec.resize == "squash":
            return image.resize((spec.size, spec.size), self._resample)
        if spec.resize == "pad_square":
            side = max(image.size)
            square = Image.new("RGB", (side, side), tuple(spec.pad_color))
            square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            return square.resize((spec.size, spec.size), self._resample)
        image = image.resize(shortest_edge_size(image.width, image.height, spec.resize_to), self._resample)
        return center_crop(image, spec.size) if spec.crop == "center" else image


def shortest_edge_size(width: int, height: int, shortest: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `shortest`, the longer truncated as transformers does."""
    if width <= height:
        return shortest, int(shortest * height / width)
    return int(shortest * width / height), shortest


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Centre crop to `size × size`, zero-padding sides shorter than `size` (transformers' rule)."""
    width, height = image.size
    if width >= size and height >= size:
        top, left = (height - size) // 2, (width - size) // 2
        return image.crop((left, top, left + size, top + size))
    canvas = Image.new("RGB", (max(width, size), max(height, size)), (0, 0, 0))
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return center_crop(canvas, size)
