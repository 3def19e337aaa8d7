"""Export CLIP-family towers to ONNX model folders (needs the `[export]` extra: torch, transformers).

`export_towers` is the generic path: two torch modules that already return L2-normalised
embeddings become `image.onnx` / `text.onnx` (+ fp16 / int8 variants), the tokenizer is copied
and the manifest written. `export_hf` wraps a Hugging Face CLIP or SigLIP checkpoint (hub id or
local folder) and reads its preprocessing from the checkpoint's processor configuration.
"""

from __future__ import annotations

import logging
import shutil
import string
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import CIRError
from .manifest import ImageSpec, Manifest, TextSpec
from .phi import add_pseudo_token_graph
from .precision import convert_fp16, quantize_best, run_graph

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
EXPORT_EXTRA_HINT = "install the export extra: pip install 'opensearch-cir[export]'"
_PROBE_TEXTS = (
    "a photo of a dog", "a red dress with long sleeves", "two people riding bicycles on a street",
    "the same jacket but in navy and without the hood", "black leather shoes", "a bowl of fruit on a table",
    "children playing football in the park at sunset", "white sneakers", "a cat sleeping on a sofa",
    "a man in a blue shirt climbing a rock wall", "striped t-shirt", "snow covered mountains",
)


def _require_torch():
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise CIRError(f"exporting models needs torch and transformers: {EXPORT_EXTRA_HINT}") from exc
    return torch


# -- generic export ------------------------------------------------------------------------------


def export_towers(
    image_tower,
    text_tower,
    *,
    out_dir: str | Path,
    image_spec: ImageSpec,
    text_spec: TextSpec,
    tokenizer_file: str | Path,
    model_id: str,
    source: str,
    family: str,
    precisions: Sequence[str] = ("fp32",),
    opset: int = 17,
    calibration_images: np.ndarray | None = None,
    calibration_texts: Sequence[str] | None = None,
    fuse: bool = True,
    attention_shapes: Mapping[str, tuple[int, int]] | None = None,
) -> Manifest:
    """Export two towers to an ONNX model folder and return its saved manifest.

    image_tower(pixel_values float[N,3,H,W]) and text_tower(input_ids int64[N,L], attention_mask
    int64[N,L]) must return L2-normalised float[N,D]. fp32 is always written; `fp16` adds a
    half-precision copy for GPUs (float32 inputs/outputs kept), `int8` a quantised copy: several
    dynamic settings (and static QDQ when `calibration_images`, preprocessed pixels, are given)
    are compared on probe inputs (`calibration_texts` replace the built-in probe sentences) and the
    fastest within INT8_TOLERANCE of the best mean cosine to fp32 is kept; when it misses
    INT8_TARGET, its most sensitive MatMuls compute in float (scores and those MatMuls are recorded
    in `manifest.extra["int8"]`). With `fuse`, ONNX
    Runtime's transformer fusions (attention, skip-LayerNorm, QuickGelu) are applied to the fp32
    graphs when they keep the outputs within 1e-5 (the fused graphs need ONNX Runtime to run);
    attention is only fused when `attention_shapes` gives each tower's (heads, hidden size).
    """
    torch = _require_torch()
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise ValueError(f"unknown precision(s) {sorted(unknown)}; choose from {PRECISIONS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_tower.eval()
    text_tower.eval()
    shutil.copyfile(tokenizer_file, out_dir / text_spec.tokenizer)
    probes = _probe_inputs(image_spec, text_spec, out_dir, calibration_texts or _PROBE_TEXTS)

    with torch.no_grad():
        dim = int(image_tower(torch.from_numpy(probes["image"]["pixel_values"][:1])).shape[-1])
    _torch_export(torch, image_tower, probes["image"], out_dir / "image.onnx", opset)
    _torch_export(torch, text_tower, probes["text"], out_dir / "text.onnx", opset)
    variants = {"fp32": {"image": "image.onnx", "text": "text.onnx"}}
    shapes = attention_shapes or {}
    extra: dict = {"fused": {tower: fuse and _fuse(out_dir / f"{tower}.onnx", probes[tower], *shapes.get(tower, (0, 0)))
                             for tower in ("image", "text")}}
    if "fp16" in precisions:
        variants["fp16"] = {tower: convert_fp16(out_dir, tower) for tower in ("image", "text")}
    if "int8" in precisions:
        if calibration_images is not None:
            probes["image"] = {"pixel_values": np.asarray(calibration_images, np.float32)}
        variants["int8"] = {}
        extra["int8"] = {}
        for tower in ("image", "text"):
            variants["int8"][tower], extra["int8"][tower] = quantize_best(
                out_dir, tower, probes[tower], static=tower == "image" and calibration_images is not None)
    manifest = Manifest(model_id=model_id, source=source, family=family, embedding_dim=dim, image=image_spec,
                        text=text_spec, variants=variants, opset=opset, extra=extra)
    manifest.save(out_dir)
    return manifest


def _torch_export(torch, tower, inputs: dict[str, np.ndarray], path: Path, opset: int) -> None:
    names = list(inputs)
    dynamic = {name: {0: "batch", **({1: "sequence"} if name != "pixel_values" else {})} for name in names}
    dynamic["embedding"] = {0: "batch"}
    args = tuple(torch.from_numpy(inputs[name][:2]) for name in names)
    torch.onnx.export(tower, args, str(path), input_names=names, output_names=["embedding"],
                      dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)


def _fuse(path: Path, probe: dict[str, np.ndarray], num_heads: int, hidden_size: int) -> dict[str, int]:
    """Replace the graph at `path` by its ONNX Runtime transformer-fused version if outputs stay within 1e-5.

    Returns the fused operator counts ({} when nothing was fused or the fusion was rejected).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    fused_path = path.with_suffix(".fused.onnx")
    try:
        fused = optimize_model(str(path), model_type="clip", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
        counts = {op: count for op, count in fused.get_fused_operator_statistics().items() if count}
        fused.save_model_to_file(str(fused_path))
        difference = float(np.abs(run_graph(fused_path, probe) - run_graph(path, probe)).max())
    except Exception as exc:  # noqa: BLE001 - fusion is an optimisation; any failure keeps the plain graph
        logger.info("transformer fusion skipped for %s: %s", path.name, exc)
        fused_path.unlink(missing_ok=True)
        return {}
    if difference > 1e-5 or not counts:
        logger.info("transformer fusion rejected for %s (max difference %.2g)", path.name, difference)
        fused_path.unlink()
        return {}
    fused_path.replace(path)
    return counts


def _probe_inputs(image_spec: ImageSpec, text_spec: TextSpec, out_dir: Path,
                  texts: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Inputs for tracing and for choosing the int8 variant: smooth random images, real sentences."""
    from PIL import Image

    from .preprocess import ImagePreprocessor
    from .runtime import load_tokenizer, tokenize_texts

    rng = np.random.default_rng(0)
    preprocess = ImagePreprocessor(image_spec)
    images = []
    for _ in range(8):
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        images.append(preprocess(Image.fromarray(coarse).resize((96, 80), Image.Resampling.BICUBIC)))
    tokenizer = load_tokenizer(out_dir / text_spec.tokenizer, text_spec)
    return {"image": {"pixel_values": np.stack(images)},
            "text": tokenize_texts(tokenizer, text_spec, list(texts))}


def export_hf(source: str | Path, out_dir: str | Path, precisions: Iterable[str] = ("fp32",), *,
              model_id: str | None = None, opset: int = 17) -> Manifest:
    """Export a Hugging Face CLIP or SigLIP checkpoint (hub id or local folder) to `out_dir`, with the
    pseudo-token text graph for textual inversion (`encoders.phi`; a φ is added by `import-phi`)."""
    torch = _require_torch()
    try:
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ModuleNotFoundError as exc:
        raise CIRError(f"exporting models needs transformers: {EXPORT_EXTRA_HINT}") from exc

    source = str(source)
    local = Path(source)
    if local.is_dir() and (local / "open_clip_config.json").is_file() and not (local / "config.json").is_file():
        raise CIRError(f"{source} is an OpenCLIP-native checkpoint; export its Hugging Face-format release "
                       "(config.json + CLIPModel weights, which most laion/* repositories include) instead")
    config = AutoConfig.from_pretrained(source)
    family = config.model_type
    if family not in ("clip", "siglip"):
        raise CIRError(f"{source}: model type {family!r} is not supported (supported: clip, siglip)")
    # eager attention exports the MatMul/Softmax pattern that ONNX Runtime fuses into one Attention op
    model = AutoModel.from_pretrained(source, dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    image_spec = _image_spec_from_processor(source)
    context = int(config.text_config.max_position_embeddings)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_file = Path(scratch) / "tokenizer.json"
        if family == "siglip":
            _siglip_tokenizer(tokenizer).save(str(tokenizer_file))
            text_spec = TextSpec(tokenizer="tokenizer.json", kind="sentencepiece", context_length=context,
                                 pad_id=int(tokenizer.pad_token_id), pad_to_context=True)
        else:
            tokenizer.backend_tokenizer.save(str(tokenizer_file))
            text_spec = TextSpec(tokenizer="tokenizer.json", kind="clip_bpe", context_length=context,
                                 pad_id=int(tokenizer.pad_token_id), pad_to_context=False)
        export_towers(
            *hf_towers(model, family),
            out_dir=out_dir, image_spec=image_spec, text_spec=text_spec, tokenizer_file=tokenizer_file,
            model_id=model_id or Path(source.rstrip("/")).name, source=source, family=family,
            precisions=tuple(precisions), opset=opset,
            attention_shapes={tower: (config.num_attention_heads, config.hidden_size)
                              for tower, config in (("image", config.vision_config), ("text", config.text_config))},
        )
    return add_pseudo_token_graph(out_dir)


def hf_towers(model, family: str):
    """(image_tower, text_tower) torch modules returning projected, L2-normalised embeddings.

    SigLIP was trained on max-length padded text without a mask, so its text tower ignores the
    mask (the exported graph then takes `input_ids` only); CLIP's uses it.
    """
    torch = _require_torch()
    import torch.nn.functional as F

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return F.normalize(_pooled(self.model.get_image_features(pixel_values=pixel_values)), dim=-1)

    class TextTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            mask = attention_mask if family == "clip" else None
            return F.normalize(_pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=mask)), dim=-1)

    return ImageTower().eval(), TextTower().eval()


def _pooled(output):
    """transformers ≥ 5 returns a model output whose pooler_output is projected; older ones a tensor."""
    return getattr(output, "pooler_output", output)


def _image_spec_from_processor(source: str) -> ImageSpec:
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(source)
    size = processor.size
    interpolation = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(processor.resample))
    if interpolation is None:
        raise CIRError(f"{source}: unsupported resample mode {processor.resample!r}")
    common = dict(interpolation=interpolation, mean=[float(v) for v in processor.image_mean],
                  std=[float(v) for v in processor.image_std], rescale=float(processor.rescale_factor))
    shortest = size.get("shortest_edge") if hasattr(size, "get") else getattr(size, "shortest_edge", None)
    if shortest:
        crop = processor.crop_size
        crop_side = int(crop["height"]) if getattr(processor, "do_center_crop", True) else int(shortest)
        return ImageSpec(size=crop_side, resize="shortest_edge", resize_to=int(shortest),
                         crop="center" if getattr(processor, "do_center_crop", True) else "none", **common)
    height, width = int(size["height"]), int(size["width"])
    if height != width:
        raise CIRError(f"{source}: non-square image size {height}x{width} is not supported")
    return ImageSpec(size=height, resize="squash", resize_to=height, crop="none", **common)


def _siglip_tokenizer(hf_tokenizer):
    """SigLIP's sentencepiece model as a `tokenizers` JSON with its text canonicalisation.

    SiglipTokenizer lowercases, drops ASCII punctuation, collapses whitespace and strips, then runs
    sentencepiece (unigram) and appends `</s>`; the same rules expressed as tokenizers components.
    """
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(hf_tokenizer.vocab_file).read_bytes())
    if proto.trainer_spec.model_type != 1:
        raise CIRError("SigLIP tokenizer is not a sentencepiece unigram model")
    tokenizer = Tokenizer(models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=proto.trainer_spec.unk_id))
    steps = [normalizers.Lowercase()] if getattr(hf_tokenizer, "do_lower_case", True) else []
    steps += [
        normalizers.Replace(Regex("[" + "".join("\\" + c for c in string.punctuation) + "]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ]
    if proto.normalizer_spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    eos = hf_tokenizer.eos_token
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {eos}",
                                                             special_tokens=[(eos, hf_tokenizer.eos_token_id)])
    return tokenizer
