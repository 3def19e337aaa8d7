"""Export a trained run to a model folder: `python -m opensearch_cir.training.export --checkpoint
runs/default/best.pt --out onnx_models/default`.

Uses the generic `encoders.export.export_towers` (fp32 + int8), then keeps what fits the 40 MB
budget of the shipped default model: the frozen MiniLM text graph is ~90 MB in fp32, so the text
tower ships as int8 only (its most drift-prone MatMuls keep int8 weights computed in float, see
`encoders.precision.INT8_TARGET`; its cosine to fp32 is measured on Flickr8k dev captions, apart from
the ones that chose those MatMuls, and recorded in the manifest). Variants: `fp32` = fp32 image graph + int8 text graph; `int8` = int8 image graph
(when its cosine to fp32 holds) + int8 text graph. `manifest.extra["text_fp32_omitted"]` says so.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..encoders.export import export_towers
from ..encoders.precision import run_graph
from ..encoders.manifest import ImageSpec, Manifest, TextSpec
from .models import TEXT_SPEC, TextTower, minilm_path
from .train import load_checkpoint

logger = logging.getLogger(__name__)

MODEL_ID = "cir-default-minilm-cnn-v2"
MIN_COSINE = 0.99


def specs(config: dict) -> tuple[ImageSpec, TextSpec]:
    """The preprocessing the model was trained with, as manifest specs."""
    size = config["image_size"]
    image = ImageSpec(size=size, resize="pad_square", resize_to=size, interpolation="bilinear",
                      mean=list(config["mean"]), std=list(config["std"]), crop="none", pad_color=[255, 255, 255])  # fmt: skip
    return image, TEXT_SPEC


def _cosines(path_a: Path, path_b: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.sum(run_graph(path_a, inputs) * run_graph(path_b, inputs), axis=1)


def export_default(checkpoint: Path, out_dir: Path, probe_texts: list[str], probe_images: np.ndarray,
                   calibration_texts: list[str] | None = None) -> Manifest:
    """Export `checkpoint` to `out_dir` (replaced). probe_*: real dev inputs for the parity checks;
    calibration_texts (default probe_texts): the captions that choose the int8 text graph."""
    from ..encoders.runtime import load_tokenizer, tokenize_texts

    config, image_tower, projection = load_checkpoint(checkpoint)
    image_spec, text_spec = specs(config)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        full = export_towers(
            image_tower, TextTower(projection), out_dir=scratch, image_spec=image_spec, text_spec=text_spec,
            tokenizer_file=minilm_path() / "tokenizer.json", model_id=MODEL_ID,
            source="trained from scratch by opensearch_cir.training (image) + frozen all-MiniLM-L6-v2 (text)",
            family="minilm-cnn", precisions=("fp32", "int8"), calibration_images=probe_images[:64],
            calibration_texts=calibration_texts or probe_texts,
        )  # fmt: skip
        tokens = tokenize_texts(load_tokenizer(scratch / "tokenizer.json", text_spec), text_spec, probe_texts)
        text_cos = _cosines(scratch / "text.onnx", scratch / "text.int8.onnx", tokens)
        image_cos = _cosines(scratch / "image.onnx", scratch / "image.int8.onnx", {"pixel_values": probe_images})
        parity = {"text_int8_vs_fp32": _summary(text_cos, len(probe_texts), "Flickr8k dev captions"),
                  "image_int8_vs_fp32": _summary(image_cos, len(probe_images), "Flickr8k dev images")}  # fmt: skip
        logger.info("int8 parity: %s", parity)
        if text_cos.min() < MIN_COSINE:
            raise RuntimeError(f"int8 text tower drifts from fp32 (min cosine {text_cos.min():.4f} < {MIN_COSINE})")
        variants = {"fp32": {"image": "image.onnx", "text": "text.int8.onnx"}}
        keep = ["image.onnx", "text.int8.onnx", "tokenizer.json"]
        if image_cos.mean() >= MIN_COSINE:
            variants["int8"] = {"image": "image.int8.onnx", "text": "text.int8.onnx"}
            keep.append("image.int8.onnx")
        if out_dir.exists():
            for name in ("manifest.json", "image.onnx", "image.int8.onnx", "text.onnx", "text.int8.onnx", "tokenizer.json"):
                (out_dir / name).unlink(missing_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in keep:
            shutil.copyfile(scratch / name, out_dir / name)
    extra = dict(full.extra)
    extra.update(
        parity=parity,
        text_fp32_omitted=(
            "The frozen all-MiniLM-L6-v2 text graph is ~90 MB in fp32, over the 40 MB budget of the shipped "
            "default model, so every variant uses the int8 text graph (see parity). The fp32 text graph is "
            "re-created with `python -m opensearch_cir.training.export`."
        ),
        training=dict(config=config, checkpoint_metrics=_checkpoint_metrics(checkpoint)),
    )
    manifest = Manifest(model_id=MODEL_ID, source=full.source, family=full.family, embedding_dim=full.embedding_dim,
                        image=image_spec, text=text_spec, variants=variants, opset=full.opset, extra=extra)  # fmt: skip
    manifest.save(out_dir)
    return manifest


def _summary(cosines: np.ndarray, n: int, what: str) -> dict:
    return {"mean_cosine": round(float(cosines.mean()), 5), "min_cosine": round(float(cosines.min()), 5),
            "probes": f"{n} {what}"}  # fmt: skip


def _checkpoint_metrics(checkpoint: Path) -> dict:
    import torch

    return torch.load(checkpoint, map_location="cpu", weights_only=False)["metrics"]


def dev_probes(data_root: Path, image_spec: ImageSpec, n_texts: int = 500, n_images: int = 200,
               n_calibration: int = 200):
    """(parity captions, calibration captions, preprocessed images) from Flickr8k dev for the int8
    choice and parity checks; the two caption sets are disjoint."""
    from ..datasets import Flickr8k
    from ..encoders.preprocess import ImagePreprocessor, load_image

    flickr = Flickr8k(data_root / "flickr8k", "dev")
    texts = [t for _, t in flickr.caption_pairs()][:n_texts + n_calibration]
    preprocess = ImagePreprocessor(image_spec)
    images = []
    for _, jpeg in flickr.iter_images():
        images.append(preprocess(load_image(jpeg)))
        if len(images) == n_images:
            break
    return texts[:n_texts], texts[n_texts:], np.stack(images)


def main(argv: list[str] | None = None) -> None:
    from .train import DEFAULT_DATA

    parser = argparse.ArgumentParser(description="Export a trained default-model checkpoint to ONNX.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config, _, _ = load_checkpoint(args.checkpoint)
    texts, calibration_texts, images = dev_probes(args.data, specs(config)[0])
    manifest = export_default(args.checkpoint, args.out, texts, images, calibration_texts)
    print(manifest.variants, manifest.extra["parity"])


if __name__ == "__main__":
    main()
