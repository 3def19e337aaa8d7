"""Encoder speed: ONNX Runtime fp32 / int8 vs PyTorch eager, plus JPEG decode + preprocessing.

Default: a full-size ViT-B/32 CLIP (transformers' CLIPConfig defaults, real CLIP BPE tokenizer)
with random weights (speed does not depend on weight values), exported with the project's own
export path. `--model DIR` measures an exported model folder instead (no PyTorch baseline) and
reports the int8 embeddings' cosine to fp32 on real-looking inputs (`--images DIR` for your own).
All figures come from one run on one machine; ratios are relative to PyTorch eager fp32 on the
same device. `--device cuda` (needs onnxruntime-gpu) compares ONNX Runtime's CUDA provider (fp32 and
fp16 graphs, IO binding) with PyTorch eager fp32 / fp16 on the GPU; both start from pixels in host
memory and end with embeddings in host memory.

    nice -n 10 python benchmarks/encode.py                 # ViT-B/32, random weights
    nice -n 10 python benchmarks/encode.py --model onnx_models/default --images some/jpegs
    python benchmarks/encode.py --device cuda --batch 256  # on a GPU machine
"""

from __future__ import annotations

import argparse
import copy
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from opensearch_cir.encoders import load_encoder
from opensearch_cir.encoders.preprocess import load_image

CAPTIONS = [
    "a black dog runs across the grass", "the same jacket but in navy and without the hood",
    "two children play football on a beach at sunset", "a woman in a red dress walks down a busy street",
    "white leather sneakers with a blue logo", "a man climbs a rock wall", "a striped cotton t-shirt",
    "a cat sleeping on a sofa next to a window",
]


def synthetic_jpegs(count: int, size=(640, 480), seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs (smooth structure + noise) of a typical web size."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
        noisy = np.clip(np.asarray(coarse, np.int16) + rng.integers(-12, 13, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def measure(runs: dict[str, tuple[callable, int]], seconds: float, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """(items per wall second, items per process-CPU second) of each `run()`, best of interleaved rounds.

    Interleaving and keeping each runtime's best round make ratios robust to other load on a shared
    machine; the CPU-time rate (all threads of this process) shows the work per item regardless of load.
    """
    best = {name: (0.0, 0.0) for name in runs}
    for run, _ in runs.values():
        run()  # warm-up
    for _ in range(rounds):
        for name, (run, items) in runs.items():
            calls, wall, cpu = 0, time.perf_counter(), time.process_time()
            while calls < 2 or time.perf_counter() - wall < seconds / rounds:
                run()
                calls += 1
            wall_rate = calls * items / (time.perf_counter() - wall)
            cpu_rate = calls * items / max(time.process_time() - cpu, 1e-9)
            best[name] = (max(best[name][0], wall_rate), max(best[name][1], cpu_rate))
    return best


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b, axis=1).min())


def write_random_clip(hf_dir: Path, config=None, num_merges: int | None = None) -> Path:
    """A random-weight CLIP checkpoint in HF format (default config: ViT-B/32), kept when already there;
    `num_merges` limits the BPE merges (`clip_bpe.write_clip_bpe_files`; default all, 0 needs no open_clip)."""
    import torch
    import transformers

    from opensearch_cir.encoders.clip_bpe import write_clip_bpe_files

    if not (hf_dir / "config.json").is_file():
        write_clip_bpe_files(hf_dir, *([] if num_merges is None else [num_merges]))
        transformers.CLIPTokenizer.from_pretrained(hf_dir).save_pretrained(hf_dir)
        torch.manual_seed(0)
        transformers.CLIPModel(config or transformers.CLIPConfig()).save_pretrained(hf_dir)
        # transformers >= 5 names the PIL-backed processor CLIPImageProcessorPil, older ones CLIPImageProcessor
        (getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor)().save_pretrained(hf_dir)
    return hf_dir


def export_random_vit_b32(work_dir: Path, precisions: list[str], config=None):
    """Random-weight ViT-B/32 CLIP in HF format, exported at `precisions` (reused when `work_dir` has them)."""
    import transformers

    from opensearch_cir.encoders.export import export_hf

    hf_dir = write_random_clip(work_dir / "hf", config)
    onnx_dir = work_dir / f"onnx-{'-'.join(precisions)}"
    if not (onnx_dir / "manifest.json").is_file():
        started = time.perf_counter()
        export_hf(hf_dir, onnx_dir, precisions=precisions, model_id="vit-b-32-random")
        print(f"export ({' + '.join(precisions)}): {time.perf_counter() - started:.0f} s")
    return transformers.CLIPModel.from_pretrained(hf_dir).eval(), onnx_dir


def pytorch_runs(model, tokens: dict[str, np.ndarray], pixels: np.ndarray, args) -> tuple[dict, dict]:
    """PyTorch eager runs on the benchmark's device: fp32, plus fp16 on CUDA; host arrays in, host arrays out."""
    import torch

    from opensearch_cir.encoders.export import hf_towers

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtypes = {"fp32": torch.float32} | ({"fp16": torch.float16} if device.type == "cuda" else {})
    image_runs, text_runs = {}, {}
    for name, dtype in dtypes.items():
        image_tower, text_tower = hf_towers(copy.deepcopy(model).to(device, dtype), "clip")

        def images(image_tower=image_tower, dtype=dtype):
            with torch.inference_mode():
                return image_tower(torch.from_numpy(pixels).to(device, dtype)).float().cpu()

        def texts(text_tower=text_tower):
            with torch.inference_mode():
                return text_tower(**{k: torch.from_numpy(v).to(device) for k, v in tokens.items()}).float().cpu()

        image_runs[f"pytorch eager {name}"] = (images, len(pixels))
        text_runs[f"pytorch eager {name}"] = (texts, len(pixels))
    return image_runs, text_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="exported model folder (default: random ViT-B/32)")
    parser.add_argument("--images", type=Path, help="folder of JPEG/PNG files for preprocessing and cosine")
    parser.add_argument("--work-dir", type=Path, help="keep (and reuse) the random ViT-B/32 export here")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (intra-op)")
    parser.add_argument("--batch", type=int, help="default: 8 on CPU, 256 on CUDA")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing window per runtime (3 interleaved rounds)")
    args = parser.parse_args()

    if args.images:
        if not args.images.is_dir():
            parser.error(f"--images {args.images}: not a folder")
        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:64]
        if not files:
            parser.error(f"--images {args.images}: no .jpg/.jpeg/.png files")
        image_bytes = [p.read_bytes() for p in files]
    else:
        image_bytes = synthetic_jpegs(32)
    batch = args.batch or (256 if args.device == "cuda" else 8)
    # CPU: fp32 vs int8 (the CPU variants); CUDA: fp32 vs fp16 (the GPU variants).
    second = "fp16" if args.device == "cuda" else "int8"

    with tempfile.TemporaryDirectory() as scratch:
        torch_model = None
        model_dir = args.model
        if model_dir is None:
            torch_model, model_dir = export_random_vit_b32(args.work_dir or Path(scratch), ["fp32", second])
        options = {"device": args.device, "threads": args.threads, "batch_size": batch}
        encoders = {"onnxruntime fp32": load_encoder(model_dir, precision="fp32", **options)}
        if second in encoders["onnxruntime fp32"].manifest.variants:
            encoders[f"onnxruntime {second}"] = load_encoder(model_dir, precision=second, **options)
        reference = encoders["onnxruntime fp32"]
        print(f"model {reference.model_id} (dim {reference.dim}, image {reference.manifest.image.size}px, "
              f"context {reference.manifest.text.context_length}); {args.device}, {args.threads} threads, batch {batch}")

        preprocess = reference.preprocess
        pixels = np.stack([preprocess(load_image(data)) for data in (image_bytes * (batch // len(image_bytes) + 1))[:batch]])
        texts = (CAPTIONS * (batch // len(CAPTIONS) + 1))[:batch]
        image_runs, text_runs = {}, {}
        if torch_model is not None:
            image_runs, text_runs = pytorch_runs(torch_model, reference.tokenize(texts), pixels, args)
        for name, encoder in encoders.items():
            image_runs[name] = (lambda encoder=encoder: encoder.encode_pixels(pixels), batch)
            text_runs[name] = (lambda encoder=encoder: encoder.encode_texts(texts), batch)
        decode = {"decode": (lambda: [preprocess(load_image(data)) for data in image_bytes], len(image_bytes))}
        decode_rate = measure(decode, args.seconds)["decode"][0]
        image_rates, text_rates = measure(image_runs, args.seconds), measure(text_runs, args.seconds)

        baseline = ("pytorch eager fp32" in image_rates) and (image_rates["pytorch eager fp32"], text_rates["pytorch eager fp32"])
        cpu_columns = args.device == "cpu"  # per process-CPU-second rates say nothing about GPU work
        print(f"\n{'runtime':<20}{'images/s':>9}{'texts/s':>9}{'img ratio':>10}{'txt ratio':>10}"
              + (f"{'img/cpu-s':>11}{'txt/cpu-s':>11}{'img ratio':>10}{'txt ratio':>10}" if cpu_columns else ""))
        for name in image_rates:
            (image_wall, image_cpu), (text_wall, text_cpu) = image_rates[name], text_rates[name]
            line = f"{name:<20}{image_wall:>9.1f}{text_wall:>9.1f}"
            line += f"{image_wall / baseline[0][0]:>9.2f}x{text_wall / baseline[1][0]:>9.2f}x" if baseline else " " * 20
            if cpu_columns:
                line += f"{image_cpu:>11.1f}{text_cpu:>11.1f}"
                line += f"{image_cpu / baseline[0][1]:>9.2f}x{text_cpu / baseline[1][1]:>9.2f}x" if baseline else ""
            print(line)
        print(f"\nJPEG decode + preprocess ({len(image_bytes)} images, 1 thread): {decode_rate:.1f} images/s")
        fastest = max(rate[0] for name, rate in image_rates.items() if name.startswith("onnxruntime"))
        print(f"  = {decode_rate / fastest:.2f}x the fastest ONNX image encoding rate "
              f"({'not a bottleneck' if decode_rate > fastest else 'a bottleneck: decode in more worker threads'})")

        if f"onnxruntime {second}" in encoders:
            other = encoders[f"onnxruntime {second}"]
            all_pixels = np.stack([preprocess(load_image(data)) for data in image_bytes])
            method = reference.manifest.extra.get("int8", {})
            print(f"\n{second} vs fp32 min cosine: images {min_cosine(other.encode_pixels(all_pixels), reference.encode_pixels(all_pixels)):.4f}"
                  f", texts {min_cosine(other.encode_texts(CAPTIONS), reference.encode_texts(CAPTIONS)):.4f}"
                  + (f" (int8 method: {method.get('image', {}).get('method', '?')} image,"
                     f" {method.get('text', {}).get('method', '?')} text)" if second == "int8" else ""))


if __name__ == "__main__":
    main()
