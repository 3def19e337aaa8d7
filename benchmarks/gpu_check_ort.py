"""ONNX Runtime stages of the prepared GPU check (benchmarks/gpu_check.py): CUDA provider and TensorRT."""

from __future__ import annotations

import time

import numpy as np
from encode import measure
from gpu_check_common import Skip, image_tower, min_cosine, note, onnx_dir, record


def stage_ort(args) -> None:
    """ONNX Runtime on the exported fp16 graph: host pixels (the product's Encoder today), device-resident
    OrtValues, and CUDA graphs; plus the graph-vs-PyTorch check that the towers measured are the same."""
    import onnxruntime as ort
    import torch

    from opensearch_cir.encoders import load_encoder

    providers = ort.get_available_providers()
    note(providers=providers)
    folder = onnx_dir(args)
    if not (folder / "manifest.json").is_file():
        raise Skip("the export did not finish (see the export stage)")
    probe = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    reference, _ = image_tower(args, torch.float32)
    with torch.inference_mode():
        torch_embeddings = reference(torch.from_numpy(probe).to(args.device)).cpu().numpy()
    cpu_graph = load_encoder(folder, device="cpu", precision="fp32")
    note(onnx_fp32_cpu_vs_torch_min_cosine=min_cosine(cpu_graph.encode_pixels(probe), torch_embeddings))
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda" and "CUDAExecutionProvider" not in providers:
        raise Skip(f"this onnxruntime has no CUDA provider ({providers}); onnxruntime-gpu (243 MiB) "
                   "cannot travel in the 64 MiB a device call carries")
    precision = "fp16" if device == "cuda" else "fp32"
    encoder = load_encoder(folder, device=device, precision=precision, batch_size=args.batches[0])
    host = np.random.default_rng(0).standard_normal((args.batches[0], 3, 224, 224)).astype(np.float32)
    runs = {f"onnxruntime {precision} Encoder.encode_pixels, host pixels b{len(host)}": (lambda: encoder.encode_pixels(host), len(host))}
    graph = str(folder / encoder.manifest.graph("image", precision))
    ep = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    session = ort.InferenceSession(graph, providers=[ep])
    for batch in args.batches:
        runs[f"onnxruntime {precision} IO binding, device pixels b{batch}"] = (bound_run(ort, session, device, batch), batch)
    if device == "cuda":
        for batch in args.batches[-2:]:
            try:
                graphed = ort.InferenceSession(graph, providers=[(ep, {"enable_cuda_graph": "1"})])
                run = bound_run(ort, graphed, device, batch, dim=encoder.dim)
                run()  # the first run captures the graph
                runs[f"onnxruntime {precision} CUDA graph, device pixels b{batch}"] = (run, batch)
            except Exception as exc:  # noqa: BLE001 - e.g. nodes placed on the CPU refuse capture
                note(**{f"cuda_graph_b{batch}_error": str(exc)[:300]})
    for name, (rate, _) in measure(runs, args.seconds, rounds=3).items():
        record(name, rate, batch=runs[name][1])


def bound_run(ort, session, device: str, batch: int, dim: int | None = None):
    """A run with pixels in an OrtValue on `device`; the output preallocated there when `dim` is given
    (CUDA graphs need fixed addresses), else allocated by ONNX Runtime; embeddings copied to the host."""
    pixels = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    inputs = ort.OrtValue.ortvalue_from_numpy(pixels, device, 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input("pixel_values", inputs)
    if dim is None:
        binding.bind_output("embedding", device)

        def run():
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        return run
    output = ort.OrtValue.ortvalue_from_shape_and_type([batch, dim], np.float32, device, 0)
    binding.bind_ortvalue_output("embedding", output)

    def run_fixed():
        session.run_with_iobinding(binding)
        return output.numpy()
    return run_fixed


def stage_trt(args) -> None:
    """ONNX Runtime's TensorRT provider with fp16 on the fp32 graph, where the installed wheel has it."""
    import onnxruntime as ort

    from opensearch_cir.encoders import Manifest

    if args.device != "cuda" or "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"no TensorrtExecutionProvider here ({ort.get_available_providers()})")
    folder = onnx_dir(args)
    if not (folder / "manifest.json").is_file():
        raise Skip("the export did not finish (see the export stage)")
    largest = args.batches[-1]
    options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(args.work / "trt"),
               "trt_profile_min_shapes": "pixel_values:1x3x224x224",
               "trt_profile_opt_shapes": f"pixel_values:{largest}x3x224x224",
               "trt_profile_max_shapes": f"pixel_values:{largest}x3x224x224"}
    started = time.perf_counter()
    graph = folder / Manifest.load(folder).graph("image", "fp32")  # TensorRT makes its own fp16 engine
    session = ort.InferenceSession(str(graph), providers=[("TensorrtExecutionProvider", options), "CUDAExecutionProvider"])
    run = bound_run(ort, session, "cuda", largest)
    run()
    name = f"onnxruntime TensorRT fp16, device pixels b{largest}"
    record(name, measure({name: (run, largest)}, args.seconds)[name][0], batch=largest,
           engine_build_seconds=round(time.perf_counter() - started, 1))
