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
from typing import Callable, Union

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
DRAFT_MARGIN = 1.5
"""Decoded pixels per output pixel, along each axis, that a reduced-scale JPEG decode leaves to the
resize: below ~1.5 the error against a full decode grows fast (3× at 1.0), above it hardly shrinks
(docs/ingest-speed.md measures it on Flickr8k photos)."""

DCT_SCALES = (8, 4, 2)
"""The reductions libjpeg's DCT scaling offers through PIL's `Image.draft`, largest first."""

DRAFT_INFO = "cir_draft"
"""`Image.info` key of an image decoded at a reduced scale: its (width, height, reduction) as stored,
upright; `ImagePreprocessor.resize` keeps the full decode's geometry with it."""

EXIF_ORIENTATION = 0x0112
"""The EXIF tag of an image's orientation (1: stored upright)."""

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


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, *,
               draft: Callable[[int, int], int] | None = None) -> Image.Image:
    """Decode `source` (path, bytes or PIL image) into an upright RGB PIL image.

    EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and transparent images become
    RGB (transparency is composited on white). Raises `ImageDecodeError` for a missing, empty,
    truncated, corrupt or non-image input and `ImageTooLargeError` above `max_pixels` pixels.
    With `draft` (e.g. `ImagePreprocessor.draft_scale`), a function of the stored (width, height)
    giving the largest reduction d (1, 2, 4 or 8) the caller tolerates, a JPEG is decoded at
    1/d of its size by libjpeg's DCT scaling (the high-frequency coefficients are never inverted):
    a 224 px photo decodes ~1.5× faster at 1/2, a 40 MP one at 1/8 in 1/64 of the memory.
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
        image = _decode(read_image_bytes(source), max_pixels, name, draft)
    try:
        if image is source:  # the caller's image is left as it is
            image = ImageOps.exif_transpose(image)
        else:  # our own: turned in place rather than copied
            ImageOps.exif_transpose(image, in_place=True)
    except _DECODE_ERRORS:
        pass  # malformed EXIF: keep the stored orientation rather than lose the image
    drafted = image.info.get(DRAFT_INFO)
    if drafted and image.size != _reduced_size(*drafted):  # turned a quarter: the sides swap
        image.info[DRAFT_INFO] = (drafted[1], drafted[0], drafted[2])
    return to_rgb(image)


def drafted_source(image: Image.Image) -> tuple[int, int, int] | None:
    """(width, height, reduction) of the JPEG `image` was decoded from at a reduced scale, upright;
    None for a full decode (or an image resized or cropped since)."""
    drafted = image.info.get(DRAFT_INFO)
    return drafted if drafted and image.size == _reduced_size(*drafted) else None


def _reduced_size(width: int, height: int, reduction: int) -> tuple[int, int]:
    """libjpeg's output size at 1/reduction: the last pixels of a side it does not divide are partial."""
    return -(-width // reduction), -(-height // reduction)


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


def _decode(data: bytes, max_pixels: int, name: str, draft: Callable[[int, int], int] | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image, max_pixels, name)  # from the header, before decoding any pixel
            width, height = image.size
            reduction = draft(width, height) if draft is not None and image.format == "JPEG" else 1
            if reduction > 1 and (width % reduction or height % reduction) and _orientation(image) != 1:
                reduction = math.gcd(reduction, width, height)  # partial pixels stay at the right and bottom
            if reduction > 1:  # PIL picks the largest of 8, 4, 2 that the requested size divides into:
                image.draft(None, (width // reduction, height // reduction))  # exactly `reduction`
            image.load()
            if reduction > 1 and image.size == _reduced_size(width, height, reduction):
                image.info[DRAFT_INFO] = (width, height, reduction)
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from None
    except _DECODE_ERRORS as exc:
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc
    return image


def _orientation(image: Image.Image) -> int:
    try:
        return image.getexif().get(EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1  # malformed EXIF: the image keeps its stored orientation


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
    """Callable turning an RGB PIL image into the image graph's `float32[3, size, size]` input.

    draft_margin: how coarse a JPEG may be decoded for this preprocessing (`draft_scale`): the
    resize must still average at least this many decoded pixels per output pixel along each axis.
    `DRAFT_MARGIN` by default; `math.inf` always decodes at full size (the exact path).
    """

    def __init__(self, spec: ImageSpec, *, draft_margin: float = DRAFT_MARGIN):
        if spec.resize not in ("shortest_edge", "squash", "pad_square"):
            raise ValueError(f"unknown resize rule {spec.resize!r}")
        if not draft_margin >= 1:
            raise ValueError("draft_margin must be at least 1 (math.inf: never decode at a reduced scale)")
        self.spec = spec
        self.draft_margin = draft_margin
        self._resample = _RESAMPLE[spec.interpolation]
        mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1)
        std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1)
        levels = np.arange(256, dtype=np.float32)[None, :] * np.float32(spec.rescale)
        # the normalised value of each 8-bit level per channel, in the same float32 arithmetic
        self._levels = np.ascontiguousarray((levels - mean) / std, dtype=np.float32)  # [3, 256]

    def reduction(self, width: int, height: int) -> float:
        """Source pixels per output pixel of this preprocessing's resize, along the less reduced axis."""
        spec = self.spec
        if spec.resize == "pad_square":  # the longer side becomes `size`
            return max(width, height) / spec.size
        return min(width, height) / (spec.size if spec.resize == "squash" else spec.resize_to)

    def draft_scale(self, width: int, height: int) -> int:
        """The largest DCT reduction (8, 4, 2, else 1) of a `width × height` JPEG that leaves the
        resize at least `draft_margin` decoded pixels per output pixel (for `load_image(draft=)`).
        The same for the image turned by its EXIF orientation (every resize rule is symmetric)."""
        allowed = self.reduction(width, height) / self.draft_margin
        return next((scale for scale in DCT_SCALES if scale <= allowed), 1)

    def load(self, source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """`source` decoded as coarsely as this preprocessing allows (`draft_scale`), then preprocessed."""
        return self(load_image(source, max_pixels, draft=self.draft_scale))

    def __call__(self, image: Image.Image) -> np.ndarray:
        levels = np.asarray(self.resize(to_rgb(image)))  # uint8 [H, W, 3]
        pixels = np.empty((3, *levels.shape[:2]), dtype=np.float32)
        for channel, table in enumerate(self._levels):
            np.take(table, levels[:, :, channel], out=pixels[channel])
        return pixels

    def resize(self, image: Image.Image) -> Image.Image:
        """Geometric part only: resize (+ crop or pad) to `size × size` per the spec. An image decoded
        at a reduced scale (`drafted_source`) gets the full decode's geometry, its partial last pixels
        and fractional offsets kept by the resize's box."""
        spec = self.spec
        width, height, reduction = drafted_source(image) or (*image.size, 1)
        box = (0, 0, width / reduction, height / reduction)
        if spec.resize == "squash":
            return image.resize((spec.size, spec.size), self._resample, box=box)
        if spec.resize == "pad_square":
            return self._pad_square(image, width, height, reduction)
        image = image.resize(shortest_edge_size(width, height, spec.resize_to), self._resample, box=box)
        return center_crop(image, spec.size) if spec.crop == "center" else image

    def _pad_square(self, image: Image.Image, width: int, height: int, reduction: int) -> Image.Image:
        """`image` centred on a square of the pad colour, resized to `size`. The square and the offsets
        are those of the stored `width × height`, in decoded pixels: after a reduced decode the offset
        may be fractional, which the box keeps (an integer paste would move the image by up to a pixel)."""
        longest = max(width, height)
        side = longest / reduction
        offsets = [(longest - stored) // 2 / reduction for stored in (width, height)]
        pastes = [math.ceil(offset) for offset in offsets]
        starts = [paste - offset for paste, offset in zip(pastes, offsets)]
        canvas = tuple(max(math.ceil(start + side), paste + decoded) for start, paste, decoded in zip(starts, pastes, image.size))
        if canvas != image.size:  # nothing to pad on a square
            pad = tuple(self.spec.pad_color)
            square = Image.new("RGB", canvas, pad)
            square.paste(image, tuple(pastes))
            for axis, (stored, paste, decoded) in enumerate(zip((width, height), pastes, image.size)):
                covered = stored / reduction - (decoded - 1)  # the image's share of its last, partial pixel
                if covered < 1 and stored < longest:  # pad follows it: mix the pad in
                    edge = paste + decoded - 1
                    strip = (edge, 0, edge + 1, canvas[1]) if axis == 0 else (0, edge, canvas[0], edge + 1)
                    part = square.crop(strip)
                    square.paste(Image.blend(part, Image.new("RGB", part.size, pad), 1 - covered), strip[:2])
            image = square
        return image.resize((self.spec.size, self.spec.size), self._resample, box=(*starts, starts[0] + side, starts[1] + side))


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
