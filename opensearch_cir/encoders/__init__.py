"""CLIP-family encoders exported to ONNX and run on ONNX Runtime.

`load_encoder()` returns an `Encoder` whose `encode_images`, `encode_texts` and `encode_pixels`
give float32 L2-normalised embeddings; `export` (needs the `[export]` extra) writes model folders.
"""

from .manifest import ImageSpec, Manifest, TextSpec
from .runtime import Encoder, load_encoder

__all__ = ["Encoder", "ImageSpec", "Manifest", "TextSpec", "load_encoder"]
