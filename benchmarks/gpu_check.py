"""Stages of the prepared GPU check (issue 14): fp16 ViT-B/32 image encoding, model-only and from JPEG bytes.

Run through `benchmarks/gpu_check.sh`, which gives every stage its own process and time limit, so
one approach that fails or hangs still leaves the others' numbers. Each stage writes
`WORK/parts/STAGE.json` (rewritten after every result); `report` merges them into `OUT/results.json`
and `OUT/results.md`. `--device cpu --tiny --seconds 0.2` runs every stage end to end on a tiny
random CLIP (tests/test_gpu_check.py), so a slip cannot waste device time.

Model-only: pixels already on the device, embeddings copied back to host memory (1 KB an image).
End-to-end: JPEG bytes in host memory to embeddings in host memory.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import measure, synthetic_jpegs, write_random_clip  # noqa: E402
from gpu_check_common import (Skip, begin, decode_on_cpu, device_pixels, dtype_name, end, half, hf_dir,  # noqa: E402
                              image_spec, image_tower, init_decode_worker, jpegs, min_cosine, model_only, note,
                              onnx_dir, record, report, tiny_config)
from gpu_check_ort import stage_ort, stage_trt  # noqa: E402

STAGES = ("env", "prepare", "export", "torch", "compile", "cudagraph", "e2e_gpu", "e2e_cpu", "ort", "trt")


# -- stages --------------------------------------------------------------------------------------

def stage_env(args) -> None:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info |= {"gpu": torch.cuda.get_device_name(0), "cuda_runtime": torch.version.cuda,
                 "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
    for module in ("torchvision", "transformers", "onnx", "onnxruntime", "PIL"):
        try:
            info[module] = __import__(module).__version__
        except Exception as exc:  # noqa: BLE001
            info[module] = f"unavailable: {str(exc)[:120]}"
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception:  # noqa: BLE001
        pass
    note(**info)
    print(json.dumps(info, indent=1))


def stage_prepare(args) -> None:
    import importlib.util

    started = time.perf_counter()
    # the GPU machine has no open_clip (CLIP's merge list): byte-level tokens leave the image tower as it is
    merges = None if importlib.util.find_spec("open_clip") and not args.tiny else 0
    write_random_clip(hf_dir(args), tiny_config() if args.tiny else None, num_merges=merges)
    size = (320, 240) if args.tiny else (640, 480)
    images = synthetic_jpegs(8 if args.tiny else 256, size=size)
    (args.work / "jpegs").mkdir(exist_ok=True)
    for index, data in enumerate(images):
        (args.work / "jpegs" / f"{index:04d}.jpg").write_bytes(data)
    note(seconds=round(time.perf_counter() - started, 1), jpegs=len(images), jpeg_size="x".join(map(str, size)),
         tokenizer="CLIP BPE" if merges is None else "byte-level CLIP vocabulary, no merges",
         model="tiny CLIP" if args.tiny else "ViT-B/32 CLIP (transformers CLIPConfig defaults), random weights")


def stage_export(args) -> None:
    """The project's export path (`export_hf`, fp32 + fp16 graphs), as benchmarks/encode.py does."""
    from opensearch_cir.encoders.export import export_hf

    started = time.perf_counter()
    if not (onnx_dir(args) / "manifest.json").is_file():
        export_hf(hf_dir(args), onnx_dir(args), precisions=["fp32", "fp16"], model_id="vit-b-32-random")
    note(seconds=round(time.perf_counter() - started, 1))


def stage_torch(args) -> None:
    """PyTorch eager fp16: host pixels (today's method) vs device-resident pixels, SDPA vs eager attention."""
    import torch

    dtype = half(args)
    tower, device = image_tower(args, dtype)
    host = np.random.default_rng(0).standard_normal((args.batches[0], 3, 224, 224)).astype(np.float32)

    def from_host():
        with torch.inference_mode():
            return tower(torch.from_numpy(host).to(device, dtype)).float().cpu()

    runs = {f"torch eager {dtype_name(dtype)} sdpa, host pixels": (from_host, len(host))}
    for batch in args.batches:
        runs[f"torch eager {dtype_name(dtype)} sdpa, device pixels b{batch}"] = (model_only(tower, device_pixels(args, batch, dtype)), batch)
    eager_attention, _ = image_tower(args, dtype, attention="eager")
    largest = args.batches[-1]
    runs[f"torch eager {dtype_name(dtype)} eager-attention, device pixels b{largest}"] = (
        model_only(eager_attention, device_pixels(args, largest, dtype)), largest)
    reference, _ = image_tower(args, torch.float32)
    probe = device_pixels(args, 64, torch.float32)
    note(fp16_vs_fp32_min_cosine=min_cosine(model_only(tower, probe.to(dtype))(), model_only(reference, probe)()))
    del reference
    for name, (rate, _) in measure(runs, args.seconds, rounds=3).items():
        record(name, rate, batch=runs[name][1])


def stage_compile(args) -> None:
    """torch.compile (inductor on CUDA; the `eager` backend on a CPU dry run) of the fp16 SDPA tower."""
    import torch

    dtype = half(args)
    tower, _ = image_tower(args, dtype)
    options = {"backend": "eager"} if args.device == "cpu" else {"mode": args.compile_mode}
    for batch in args.batches[-2:][::-1]:  # the largest first: it matters most
        compiled = torch.compile(tower, dynamic=False, **options)
        run = model_only(compiled, device_pixels(args, batch, dtype))
        started = time.perf_counter()
        run()
        compile_seconds = time.perf_counter() - started
        name = f"torch.compile({options.get('mode', 'eager backend')}) {dtype_name(dtype)} sdpa, device pixels b{batch}"
        record(name, measure({name: (run, batch)}, args.seconds)[name][0], batch=batch,
               compile_seconds=round(compile_seconds, 1))


def stage_cudagraph(args) -> None:
    """The eager fp16 tower captured in one CUDA graph per batch size and replayed."""
    import torch

    if args.device != "cuda":
        raise Skip("CUDA graphs need a GPU")
    dtype = half(args)
    tower, _ = image_tower(args, dtype)
    for batch in args.batches[-2:][::-1]:
        static_in = device_pixels(args, batch, dtype)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                tower(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = tower(static_in)

        def replay(graph=graph, static_out=static_out):
            graph.replay()
            return static_out.float().cpu()

        name = f"torch eager {dtype_name(dtype)} sdpa + CUDA graph, device pixels b{batch}"
        record(name, measure({name: (replay, batch)}, args.seconds)[name][0], batch=batch)


def stage_e2e_gpu(args) -> None:
    """JPEG bytes → nvJPEG batched decode + resize/crop/normalise on the GPU → fp16 tower → host."""
    import torch

    from opensearch_cir.encoders.preprocess import ImagePreprocessor, load_image
    from opensearch_cir.encoders.torch_preprocess import TorchImagePreprocessor

    dtype, spec, data = half(args), image_spec(args), jpegs(args)
    tower, _ = image_tower(args, dtype)
    preprocess = TorchImagePreprocessor(spec, device=args.device, dtype=dtype)
    note(decoder=preprocess.decoder)
    sample = data[:16]
    reference = np.stack([ImagePreprocessor(spec)(load_image(item)) for item in sample])
    gpu = TorchImagePreprocessor(spec, device=args.device)(sample).cpu().numpy()
    levels = np.abs(gpu - reference) * np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1) / spec.rescale
    note(pixels_vs_pil_grey_levels={"mean": float(levels.mean()), "p999": float(np.quantile(levels, 0.999)),
                                    "max": float(levels.max())})
    batch = min(args.batches[0], len(data))
    images = data if args.tiny else data * 4  # 4 batches a call, so that each decode thread has one
    chunks = [images[start:start + batch] for start in range(0, len(images), batch)]

    def pipeline(chunk, encode=True):
        with torch.inference_mode():
            pixels = preprocess(chunk)
            return tower(pixels).float().cpu() if encode else pixels.sum().item()

    runs = {f"{preprocess.decoder} decode + preprocess only, 1 thread": (
        lambda: [pipeline(chunk, encode=False) for chunk in chunks], len(images))}
    runs[f"e2e {preprocess.decoder} + tower, 1 thread, b{batch}"] = (lambda: [pipeline(chunk) for chunk in chunks], len(images))
    for threads in args.decode_threads:
        pool, streams = ThreadPoolExecutor(threads), [torch.cuda.Stream() if args.device == "cuda" else None for _ in range(threads)]

        def on_stream(index_chunk, streams=streams):
            index, chunk = index_chunk
            if streams[index % len(streams)] is None:
                return pipeline(chunk)
            with torch.cuda.stream(streams[index % len(streams)]):
                result = pipeline(chunk)
            return result

        runs[f"e2e {preprocess.decoder} + tower, {threads} threads (a stream each), b{batch}"] = (
            lambda pool=pool, on_stream=on_stream: list(pool.map(on_stream, enumerate(chunks))), len(images))
    for name, (rate, _) in measure(runs, args.seconds, rounds=3).items():
        record(name, rate, batch=batch, kind="e2e" if name.startswith("e2e") else "decode")
    note(images_decoded_by_pil=preprocess.pil_decoded)


def stage_e2e_cpu(args) -> None:
    """JPEG bytes → a pool of worker processes (PIL decode + resize, 8-bit) → normalise on the device → tower;
    also with libjpeg's reduced-scale decode (faster; its pixel difference to the project's is recorded)."""
    import multiprocessing

    import torch

    from opensearch_cir.encoders.torch_preprocess import TorchImagePreprocessor

    dtype, spec, data = half(args), image_spec(args), jpegs(args)
    batch = min(args.batches[0], len(data))
    workers = args.workers or os.cpu_count() or 1
    count = len(data) if args.tiny else max(len(data), 64 * workers)
    stream = (data * (count // len(data) + 1))[:count]
    # the workers are forked before this process touches CUDA
    with multiprocessing.get_context("fork").Pool(workers, init_decode_worker, (spec,)) as pool:
        pool.map(decode_on_cpu, data[:workers])
        tower, device = image_tower(args, dtype)
        normalise = TorchImagePreprocessor(spec, device=args.device, dtype=dtype)

        def encode(pending):
            with torch.inference_mode():
                images = torch.from_numpy(np.stack(pending)).to(device, non_blocking=True).permute(0, 3, 1, 2)
                return tower(normalise.preprocess(list(images))).float().cpu()

        def run(decode=decode_on_cpu):
            outputs, pending = [], []
            for image in pool.imap(decode, stream, chunksize=8):
                pending.append(image)
                if len(pending) == batch:
                    outputs.append(encode(pending))
                    pending = []
            return outputs + ([encode(pending)] if pending else [])

        reduced = functools.partial(decode_on_cpu, reduced=True)
        full, scaled = (np.stack(pool.map(decode, data[:16])).astype(np.float32) for decode in (decode_on_cpu, reduced))
        note(reduced_scale_decode_vs_project_grey_levels={"mean": float(np.abs(full - scaled).mean()),
                                                          "max": float(np.abs(full - scaled).max())})
        runs = {f"e2e CPU pool ({workers} processes, PIL) + tower, b{batch}": (run, count),
                f"e2e CPU pool ({workers} processes, PIL at reduced DCT scale) + tower, b{batch}": (
                    lambda: run(reduced), count)}
        for name, (rate, _) in measure(runs, args.seconds, rounds=2).items():
            record(name, rate, batch=batch, kind="e2e", workers=workers)


# -- helpers and entry point ---------------------------------------------------------------------

STAGE_FUNCTIONS = {"env": stage_env, "prepare": stage_prepare, "export": stage_export, "torch": stage_torch,
                   "compile": stage_compile, "cudagraph": stage_cudagraph, "e2e_gpu": stage_e2e_gpu,
                   "e2e_cpu": stage_e2e_cpu, "ort": stage_ort, "trt": stage_trt}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES + ("report",))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cir-gpu-check"), help="scratch folder (model, parts)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cir-gpu-check/out"), help="where report writes results.*")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny random CLIP instead of ViT-B/32 (dry runs)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per approach")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 256,512,1024; tiny: 4,8)")
    parser.add_argument("--decode-threads", default="4,8", help="comma-separated thread counts for GPU decode")
    parser.add_argument("--workers", type=int, default=0, help="CPU decode processes (default: all cores)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode on CUDA")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in (args.batches or ("4,8" if args.tiny else "256,512,1024")).split(",")]
    args.decode_threads = [int(t) for t in args.decode_threads.split(",") if t]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stage == "report":
        report(args.work, args.out, STAGES)
        return 0
    begin(args.stage, args.work)
    function = STAGE_FUNCTIONS[args.stage]
    print(f"== {args.stage}: {function.__doc__ or ''}".strip(), flush=True)
    status, reason = "ok", None
    try:
        function(args)
    except Skip as exc:
        status, reason = "skipped", str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded, and the other stages still run
        status, reason = "failed", f"{type(exc).__name__}: {str(exc)[:400]}"
        traceback.print_exc()
    end(status, reason)
    print(f"== {args.stage}: {status} {reason or ''}", flush=True)
    return 1 if status == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
