"""Batched image preprocessing in PyTorch, on the GPU where there is one.

The same contract as `preprocess.ImagePreprocessor` (the manifest's `ImageSpec`: resize rule, crop,
rescale, mean/std), computed on tensors: JPEG bytes are decoded in batches by nvJPEG
(`torchvision.io.decode_jpeg(..., device="cuda")`) when torchvision is installed and the device is
CUDA; other formats, EXIF-rotated JPEGs and any JPEG nvJPEG refuses go through `load_image` (PIL)
exactly as on the CPU path, so bad input raises the same typed errors. Resizing uses PyTorch's
antialiased interpolation, rounded to 8 bits as PIL does: outputs agree with the PIL path to one
grey level on 99.9 % of values (up to 3 where bicubic upscaling overshoots; with `nearest`, under 1 %
of pixels take a neighbouring source pixel); tests/test_torch_preprocess.py measures it.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from .manifest import ImageSpec
from .preprocess import DEFAULT_MAX_PIXELS, EXIF_ORIENTATION, load_image, read_image_bytes, shortest_edge_size

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact"}


class TorchImagePreprocessor:
    """Callable turning image bytes into the image graph's input `[N, 3, size, size]` on `device`."""

    def __init__(self, spec: ImageSpec, device: str = "cuda", dtype=None, max_pixels: int = DEFAULT_MAX_PIXELS):
        import torch

        if spec.resize not in ("shortest_edge", "squash", "pad_square"):
            raise ValueError(f"unknown resize rule {spec.resize!r}")
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.max_pixels = max_pixels
        self._mode = _MODES[spec.interpolation]
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._decode_jpeg = _nvjpeg_decoder() if self.device.type == "cuda" else None
        self.pil_decoded = 0
        """How many images went through PIL (non-JPEG, EXIF-rotated, CMYK, or refused by nvJPEG)."""

    @property
    def decoder(self) -> str:
        """`nvjpeg` when JPEGs are decoded on the GPU, else `pil`."""
        return "nvjpeg" if self._decode_jpeg else "pil"

    def __call__(self, items: Sequence) -> "torch.Tensor":
        """Decode (see the module's docstring) and preprocess `items` (bytes, paths or PIL images)."""
        return self.preprocess(self.decode(items))

    def decode(self, items: Sequence) -> list:
        """Upright RGB `uint8[3, H, W]` tensors on the device, one per item, in order."""
        import torch

        images: list = [None] * len(items)
        jpegs: dict[int, bytes] = {}
        for index, item in enumerate(items):
            if self._decode_jpeg and not isinstance(item, Image.Image):
                data = read_image_bytes(item)
                if self._plain_jpeg(data):
                    jpegs[index] = data
                    continue
            images[index] = self._pil_decode(item)
        if jpegs:
            tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in jpegs.values()]
            try:
                decoded = self._decode_jpeg(tensors)
            except RuntimeError as exc:  # a variant nvJPEG refuses: PIL decodes this batch
                logger.warning("nvJPEG refused a batch of %d JPEGs (%s); decoding them with PIL", len(jpegs), exc)
                decoded = [self._pil_decode(data) for data in jpegs.values()]
            for index, image in zip(jpegs, decoded):
                images[index] = image
        return images

    def preprocess(self, images: Sequence) -> "torch.Tensor":
        """`uint8[3, H, W]` RGB tensors (any sizes) → normalised `[N, 3, size, size]` in `dtype`."""
        import torch

        spec, size = self.spec, self.spec.size
        out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=self.device)
        by_shape = defaultdict(list)  # images of one size are resized in one call
        for index, image in enumerate(images):
            by_shape[tuple(image.shape[1:])].append(index)
        for (height, width), indices in by_shape.items():
            batch = torch.stack([images[i] for i in indices]).to(self.device, torch.float32)
            if spec.resize == "squash":
                batch = self._resize(batch, size, size)
            elif spec.resize == "pad_square":
                batch = self._resize(_pad_square(batch, spec.pad_color), size, size)
            else:
                new_width, new_height = shortest_edge_size(width, height, spec.resize_to)
                batch = self._resize(batch, new_height, new_width)
                if spec.crop == "center":
                    batch = _center_crop(batch, size)
            out[indices] = batch
        return ((out * spec.rescale - self._mean) / self._std).to(self.dtype)

    def _resize(self, batch, height: int, width: int):
        import torch.nn.functional as F

        if batch.shape[-2:] == (height, width):
            return batch
        antialias = self._mode != "nearest-exact"
        resized = F.interpolate(batch, size=(height, width), mode=self._mode, antialias=antialias,
                                **({} if self._mode == "nearest-exact" else {"align_corners": False}))
        return resized.round_().clamp_(0, 255)  # PIL resizes to 8 bits

    def _plain_jpeg(self, data: bytes) -> bool:
        """True for a JPEG nvJPEG can take as is: within the pixel cap and not EXIF-rotated."""
        if data[:3] != b"\xff\xd8\xff":
            return False
        try:
            with Image.open(io.BytesIO(data)) as header:
                if header.width * header.height > self.max_pixels or header.mode not in ("RGB", "L"):
                    return False  # load_image raises the typed error / converts CMYK exactly
                return header.getexif().get(EXIF_ORIENTATION, 1) == 1
        except Exception:  # noqa: BLE001 - load_image reports what is wrong with it
            return False

    def _pil_decode(self, item):
        import numpy as np
        import torch

        self.pil_decoded += 1
        image = load_image(item, self.max_pixels)  # full size, as nvJPEG decodes: both paths share the geometry
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()).to(self.device)


def _nvjpeg_decoder():
    """`decode(list of byte tensors) -> list of uint8[3, H, W] cuda tensors`, or None without torchvision."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # noqa: BLE001 - missing, or a build that does not match torch
        return None
    return lambda tensors: decode_jpeg(tensors, mode=ImageReadMode.RGB, device="cuda")


def _pad_square(batch, color: Sequence[int]):
    """Pad `[N, 3, H, W]` to a square with `color`, centred as `ImagePreprocessor.resize` pastes it."""
    import torch

    height, width = batch.shape[-2:]
    side = max(height, width)
    square = torch.tensor(color, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1).repeat(len(batch), 1, side, side)
    top, left = (side - height) // 2, (side - width) // 2
    square[:, :, top:top + height, left:left + width] = batch
    return square


def _center_crop(batch, size: int):
    """Centre crop `[N, 3, H, W]` to `size × size`, zero-padding short sides (`preprocess.center_crop`)."""
    import torch.nn.functional as F

    height, width = batch.shape[-2:]
    if height < size or width < size:
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        batch = F.pad(batch, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = batch.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return batch[:, :, top:top + size, left:left + size]
