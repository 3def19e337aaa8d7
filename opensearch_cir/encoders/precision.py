"""fp16 and int8 variants of an exported fp32 graph, each checked against fp32 on probe inputs.

`convert_fp16` halves the weights (inputs and outputs stay float32); `quantize_best` tries several
dynamic int8 settings (and static when asked), keeps the fastest within `INT8_TOLERANCE` of the
best, and keeps the most sensitive MatMuls in float when none reaches `INT8_TARGET`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

def convert_fp16(out_dir: Path, tower: str) -> str:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    name = f"{tower}.fp16.onnx"
    model = convert_float_to_float16(onnx.load(out_dir / f"{tower}.onnx"), keep_io_types=True)
    onnx.save(model, out_dir / name)
    return name


# Dynamic quantisation settings tried for int8, fastest first on x86 CPUs: signed weights use the
# u8×s8 kernels but can saturate on CPUs without VNNI (then the reduced range or unsigned weights,
# slower, stay closer to fp32). The fastest candidate within INT8_TOLERANCE of the best is kept.
_DYNAMIC_INT8 = {
    "dynamic-s8": dict(weight_type="QInt8"),
    "dynamic-s8-reduced-range-per-channel": dict(weight_type="QInt8", reduce_range=True, per_channel=True),
    "dynamic-u8": dict(weight_type="QUInt8"),
    "dynamic-s8-reduced-range": dict(weight_type="QInt8", reduce_range=True),
}
INT8_TOLERANCE = 1e-3
"""Largest loss in mean cosine to fp32 accepted for a faster int8 candidate."""
INT8_TARGET = (0.998, 0.99)
"""(mean, min) cosine to fp32 on the probes that a dynamic int8 graph must reach; below it, its most
sensitive MatMuls keep int8 weights but compute in float (see `_float_matmuls`)."""


def quantize_best(out_dir: Path, tower: str, probe: dict[str, np.ndarray], static: bool) -> tuple[str, dict]:
    """Quantise one tower several ways; keep the fastest whose embeddings are (nearly) closest to fp32."""
    source = out_dir / f"{tower}.onnx"
    reference = run_graph(source, probe)
    target = out_dir / f"{tower}.int8.onnx"
    scores = {}
    info: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        candidates = {}
        for method in _DYNAMIC_INT8:
            candidates[method] = Path(scratch) / f"{method}.onnx"
            _quantize_dynamic(source, candidates[method], method)
        if static:
            try:
                _quantize_static(source, Path(scratch) / "static.onnx", probe)
                candidates["static-qdq"] = Path(scratch) / "static.onnx"
            except Exception as exc:  # noqa: BLE001 - static is one candidate among several
                logger.warning("static int8 quantisation of the %s tower failed, skipped: %s", tower, exc)
        for method, path in candidates.items():
            scores[method] = _cosine_mean_min(path, probe, reference)
        closest = max(mean for mean, _ in scores.values())
        best = next(method for method in candidates if scores[method][0] >= closest - INT8_TOLERANCE)
        if best in _DYNAMIC_INT8 and not _meets_target(scores[best]):
            path, info["float_matmuls"], mixed = _float_matmuls(source, Path(scratch), best, probe, reference)
            best = f"{best}+float-matmuls"
            candidates[best], scores[best] = path, mixed
        shutil.copyfile(candidates[best], target)
    logger.info("int8 %s tower: kept %s (mean/min cosine to fp32 %s)", tower, best, scores)
    return target.name, {"method": best, "probe_cosine_mean_min": {m: list(s) for m, s in scores.items()}, **info}


def _quantize_dynamic(source: Path, target: Path, method: str, **options) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = dict(_DYNAMIC_INT8[method])
    quantize_dynamic(source, target, weight_type=QuantType[settings.pop("weight_type")], **settings, **options,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _cosine_mean_min(path: Path, probe: dict[str, np.ndarray], reference: np.ndarray) -> tuple[float, float]:
    cosine = np.sum(run_graph(path, probe) * reference, axis=1)
    return float(cosine.mean()), float(cosine.min())


def _meets_target(score: tuple[float, float]) -> bool:
    return score[0] >= INT8_TARGET[0] and score[1] >= INT8_TARGET[1]


def _float_matmuls(source: Path, scratch: Path, method: str, probe: dict[str, np.ndarray],
                   reference: np.ndarray) -> tuple[Path, list[str], tuple[float, float]]:
    """Mixed precision for a dynamic int8 `method` that drifts from fp32 beyond INT8_TARGET.

    Dynamic int8 quantises each MatMul's activations with one scale per tensor, which outlier
    activations make coarse; int8 weights alone (per output channel) stay close to fp32. The
    weight MatMuls are ranked by the mean cosine lost when only that one is quantised, and the
    top 1, 2, 3, 4, 6, 9, ... keep int8 weights computed in float (`_int8_weights_in_float`)
    while the rest is quantised by `method`, until INT8_TARGET holds (or all are kept).
    Returns (graph, the kept MatMuls, its (mean, min) cosine to fp32).
    """
    import onnx

    matmuls = _weight_matmuls(onnx.load(source))
    loss = {}
    for name in matmuls:
        _quantize_dynamic(source, scratch / "one.onnx", method, nodes_to_quantize=[name])
        loss[name] = 1 - _cosine_mean_min(scratch / "one.onnx", probe, reference)[0]
    ranked = sorted(matmuls, key=loss.__getitem__, reverse=True)
    count = 0
    while True:
        count = min(len(ranked), max(count + 1, count * 3 // 2))
        kept = ranked[:count]
        model = onnx.load(source)
        _int8_weights_in_float(model, kept)
        onnx.save(model, scratch / "float-matmuls.fp32.onnx")
        path = scratch / "float-matmuls.onnx"
        _quantize_dynamic(scratch / "float-matmuls.fp32.onnx", path, method, nodes_to_exclude=kept)
        score = _cosine_mean_min(path, probe, reference)
        if _meets_target(score) or count == len(ranked):
            return path, kept, score


def _weight_matmuls(model) -> list[str]:
    """Names of the MatMul nodes whose second input is a 2-D initializer (a weight matrix)."""
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def _int8_weights_in_float(model, matmuls: Sequence[str]) -> None:
    """Store the weights of `matmuls` as int8 (symmetric, one scale per output channel) + Cast and Mul.

    The file keeps one byte per weight; ONNX Runtime folds the Cast and Mul of constants when the
    session is created, so these MatMuls run in float on the dequantised weights.
    """
    from onnx import TensorProto, helper, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    dequantize = []
    for node in model.graph.node:
        if node.name not in matmuls:
            continue
        name = node.input[1]
        weight = numpy_helper.to_array(initializers[name])
        scale = np.maximum(np.abs(weight).max(axis=0), np.finfo(np.float32).tiny) / 127
        model.graph.initializer.remove(initializers[name])
        model.graph.initializer.extend([numpy_helper.from_array(np.round(weight / scale).astype(np.int8), f"{name}_int8"),
                                        numpy_helper.from_array(scale.astype(np.float32), f"{name}_int8_scale")])
        dequantize += [helper.make_node("Cast", [f"{name}_int8"], [f"{name}_int8_float"], f"{name}_int8_cast", to=TensorProto.FLOAT),
                       helper.make_node("Mul", [f"{name}_int8_float", f"{name}_int8_scale"], [name], f"{name}_int8_dequantize")]
    nodes = dequantize + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _quantize_static(source: Path, target: Path, probe: dict[str, np.ndarray]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._rows = iter([{name: value[i:i + 1] for name, value in probe.items()}
                               for i in range(len(next(iter(probe.values()))))])

        def get_next(self):
            return next(self._rows, None)

    quantize_static(source, target, _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Conv", "Gemm"], extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def run_graph(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """L2-normalised `embedding` output of an exported graph on CPU (one thread), given any superset of its inputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    output = session.run(["embedding"], {k: v for k, v in inputs.items() if k in wanted})[0]
    return output / np.linalg.norm(output, axis=1, keepdims=True)


# -- Hugging Face checkpoints --------------------------------------------------------------------
