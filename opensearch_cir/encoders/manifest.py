"""The model manifest: the single source of truth about an exported model.

A model folder holds `manifest.json`, the ONNX graphs of each precision, and the tokenizer file:

    onnx_models/<name>/
        manifest.json
        image.onnx  text.onnx            (fp32, always present: the reference precision)
        image.int8.onnx  text.int8.onnx  (optional, CPU)
        image.fp16.onnx  text.fp16.onnx  (optional, GPU)
        tokenizer.json                   (Hugging Face `tokenizers` format)

Image graph: input `pixel_values` float[N,3,H,W] → output `embedding` float[N,D], projected and
L2-normalised. Text graph: inputs `input_ids` int64[N,L] and `attention_mask` int64[N,L] →
output `embedding` float[N,D], projected and L2-normalised.

Optional textual inversion (`phi`, see `encoders.phi`): `text.pseudo.onnx` (the text graph with
`pseudo_token` float[N,H] and `placeholder_position` int64[N] inputs) and `phi.onnx`
(`image_embedding` float[N,D] → `pseudo_token` float[N,H]).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ManifestError, ModelNotFoundError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

Precision = Literal["fp32", "fp16", "int8"]
ResizeRule = Literal["shortest_edge", "squash", "pad_square"]


@dataclass
class ImageSpec:
    """How raw pixels become the image graph's input.

    resize: `shortest_edge` (CLIP: shortest side to `resize_to`, then centre crop to `size`),
    `squash` (SigLIP: both sides to `size`, aspect ignored), or `pad_square` (pad to a square with
    `pad_color`, then resize to `size`).
    """

    size: int
    resize: ResizeRule
    resize_to: int
    interpolation: Literal["bicubic", "bilinear", "nearest"]
    mean: list[float]
    std: list[float]
    rescale: float = 1.0 / 255.0
    crop: Literal["center", "none"] = "center"
    pad_color: list[int] = field(default_factory=lambda: [255, 255, 255])


@dataclass
class TextSpec:
    """How strings become the text graph's input.

    tokenizer: file name of a Hugging Face `tokenizers` JSON beside the manifest.
    kind: `clip_bpe`, `sentencepiece` or `wordpiece` (informational; the JSON carries the rules).
    Sequences are truncated to `context_length` (keeping the end token) and padded with `pad_id`,
    to `context_length` when `pad_to_context` else to the longest in the batch.
    """

    tokenizer: str
    kind: str
    context_length: int
    pad_id: int
    pad_to_context: bool = True
    lowercase: bool = False


@dataclass
class PhiSpec:
    """Textual inversion for this model (see `encoders.phi`).

    text_graph: the pseudo-token text graph; graph: the φ graph (None until one is imported or
    trained); template: the prompt, with `{}` for the modification text and `placeholder` where the
    pseudo token goes; token_dim: H, the text encoder's token-embedding width; method: pic2word |
    searle | lincir; source: where φ came from; extra: training curve, parity, notes.
    """

    text_graph: str
    token_dim: int
    template: str = "a photo of $ that {}"
    placeholder: str = "$"
    graph: str | None = None
    method: str | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Manifest:
    """Everything the runtime needs to load and run a model; see the module docstring."""

    model_id: str
    source: str
    family: str
    embedding_dim: int
    image: ImageSpec
    text: TextSpec
    variants: dict[str, dict[str, str]]
    opset: int
    sha256: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)
    phi: PhiSpec | None = None

    # -- loading and saving ------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        try:
            data = dict(data)
            image = ImageSpec(**data.pop("image"))
            text = TextSpec(**data.pop("text"))
            phi = data.pop("phi", None)
            manifest = cls(image=image, text=text, phi=PhiSpec(**phi) if phi else None, **data)
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise ManifestError(
                f"manifest format {manifest.format_version} is not supported (expected {FORMAT_VERSION}); "
                "re-export the model with this version of opensearch-cir"
            )
        if "fp32" not in manifest.variants:
            raise ManifestError("manifest has no fp32 variant")
        return manifest

    @classmethod
    def load(cls, model_dir: str | Path, verify: bool = False) -> "Manifest":
        """Read `model_dir/manifest.json`; with `verify`, check every file's sha256."""
        path = Path(model_dir) / MANIFEST_FILE
        if not path.is_file():
            raise ModelNotFoundError(
                f"no model at {Path(model_dir)} (missing {MANIFEST_FILE}). Export one with "
                "`cir models export openai/clip-vit-base-patch32 --out DIR` "
                "(needs `pip install 'opensearch-cir[export]'`), or see `cir models list`."
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
        manifest = cls.from_dict(data)
        if verify:
            manifest.verify(model_dir)
        return manifest

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["phi"] is None:
            del data["phi"]
        return data

    def save(self, model_dir: str | Path) -> Path:
        """Write the manifest, recording the sha256 of every file it references."""
        model_dir = Path(model_dir)
        self.sha256 = {name: sha256_file(model_dir / name) for name in sorted(self.files())}
        path = model_dir / MANIFEST_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    # -- queries -----------------------------------------------------------------------------

    def files(self) -> set[str]:
        """Names of all files the manifest references (graphs of every variant, tokenizer)."""
        names = {self.text.tokenizer}
        for graphs in self.variants.values():
            names.update(graphs.values())
        if self.phi is not None:
            names.update(name for name in (self.phi.text_graph, self.phi.graph) if name)
        return names

    def graph(self, tower: Literal["image", "text"], precision: str) -> str:
        """File name of one tower's graph at one precision."""
        try:
            return self.variants[precision][tower]
        except KeyError:
            raise ManifestError(
                f"model {self.model_id} has no {precision} {tower} graph "
                f"(available: {sorted(self.variants)})"
            ) from None

    def verify(self, model_dir: str | Path) -> None:
        """Raise ManifestError when a referenced file is missing or its checksum differs."""
        for name in sorted(self.files()):
            path = Path(model_dir) / name
            if not path.is_file():
                raise ManifestError(f"{path} is referenced by the manifest but missing")
            expected = self.sha256.get(name)
            if expected and sha256_file(path) != expected:
                raise ManifestError(f"{path} does not match its sha256 in the manifest (corrupt or replaced)")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
