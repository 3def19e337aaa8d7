"""Probe (not shipped): the default model's float text MatMuls smoothed and quantised to int8.

    python benchmarks/text_int8_probe.py [--alpha 0.75] [--weights 8bit|7bit] [--write DIR]

The shipped int8 MiniLM graph keeps 13 MatMuls (10 feed-forward, 3 value projections) in float on
int8 weights, because dynamic int8 with one activation scale per tensor lost too much there
(`encoders.precision._float_matmuls`); they are 52–59 % of the text graph's time. This probe
applies SmoothQuant (Xiao et al., 2023) to them: each input channel j of a MatMul is divided by
s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) (an explicit Mul before the MatMul), its weight row
multiplied by s_j, and the MatMul quantised like the graph's others (dynamic, signed weights, per
output channel; `--weights 7bit` uses reduce_range). max|X_j| comes from 256 Flickr8k *train*
captions, one at a time (no padding rows). Reports, on 500 Flickr8k dev captions: the cosine of
each embedding to the shipped graph's, and one caption's CPU ms on one thread for both graphs.
`--write DIR` copies the default model to DIR with the probed text graph (for `cir eval --model DIR`;
`text.pseudo.onnx`, which points into the shipped text graph's bytes, is not rebuilt there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import data_root  # noqa: E402


def float_matmuls(model) -> list[tuple[object, np.ndarray, set[str]]]:
    """(MatMul node, its float weight, the names of the Cast + Mul nodes that dequantise it)."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    producer = {output: node for node in model.graph.node for output in node.output}
    found = []
    for node in model.graph.node:
        mul = producer.get(node.input[1]) if node.op_type == "MatMul" else None
        if mul is None or mul.op_type != "Mul" or not mul.name.endswith("_int8_dequantize"):
            continue
        cast = producer[mul.input[0]]
        weight = numpy_helper.to_array(initializers[cast.input[0]]).astype(np.float32)
        found.append((node, weight * numpy_helper.to_array(initializers[mul.input[1]]), {mul.name, cast.name}))
    return found


def channel_maxima(path: Path, inputs: list[str], tokenized: list[dict]) -> list[np.ndarray]:
    """max |x| per channel of each named tensor over the tokenized texts."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    for name in inputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = [i.name for i in session.get_inputs()]
    maxima = [np.zeros(0)] * len(inputs)
    for tokens in tokenized:
        for index, value in enumerate(session.run(inputs, {k: tokens[k] for k in feeds})):
            value = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[index] = value if not maxima[index].size else np.maximum(maxima[index], value)
    return maxima


def smoothed_graph(source: Path, target: Path, tokenized: list[dict], alpha: float, reduce_range: bool) -> None:
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(source)
    graph = model.graph
    found = float_matmuls(model)
    maxima = channel_maxima(source, [node.input[0] for node, _, _ in found], tokenized)
    dropped: set[str] = set()
    for (node, weight, dequantize), x_max in zip(found, maxima):
        scale = (np.maximum(x_max, 1e-5) ** alpha / np.maximum(np.abs(weight).max(axis=1), 1e-5) ** (1 - alpha)).astype(np.float32)
        graph.initializer.extend([numpy_helper.from_array(weight * scale[:, None], f"{node.name}_smoothed_weight"),
                                  numpy_helper.from_array(1 / scale, f"{node.name}_smoothing")])
        smoothed = f"{node.input[0]}_smoothed_for_{node.name}"
        graph.node.insert(list(graph.node).index(node),
                          helper.make_node("Mul", [node.input[0], f"{node.name}_smoothing"], [smoothed], f"{node.name}_smooth"))
        node.input[0], node.input[1] = smoothed, f"{node.name}_smoothed_weight"
        dropped |= dequantize
    for node in [n for n in graph.node if n.name in dropped]:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for initializer in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(initializer)
    with tempfile.TemporaryDirectory() as scratch:
        onnx.save(model, Path(scratch) / "smoothed.onnx")
        quantize_dynamic(Path(scratch) / "smoothed.onnx", target, weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, nodes_to_quantize=[node.name for node, _, _ in found],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--weights", choices=("8bit", "7bit"), default="8bit")
    parser.add_argument("--write", type=Path, help="a copy of the default model with the probed text graph")
    args = parser.parse_args()
    import onnxruntime as ort

    from opensearch_cir.datasets.flickr8k import Flickr8k
    from opensearch_cir.encoders import load_encoder

    encoder = load_encoder(None)
    shipped = encoder.model_dir / encoder.manifest.graph("text", "int8")
    captions = {split: [c for texts in Flickr8k(data_root() / "flickr8k", split).captions.values() for c in texts]
                for split in ("train", "dev")}
    calibration = [encoder.tokenize([text]) for text in captions["train"][:256]]
    held_out = [encoder.tokenize([text]) for text in captions["dev"][:500]]
    probed = Path(tempfile.mkdtemp()) / "text.int8.onnx"
    smoothed_graph(shipped, probed, calibration, args.alpha, args.weights == "7bit")

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {label: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for label, path in (("shipped", shipped), ("probed", probed))}
    feeds = [i.name for i in sessions["shipped"].get_inputs()]

    def embed(session, tokens):
        vector = session.run(["embedding"], {k: tokens[k] for k in feeds})[0][0]
        return vector / np.linalg.norm(vector)

    cosines = np.array([embed(sessions["shipped"], t) @ embed(sessions["probed"], t) for t in held_out])
    times = {label: [] for label in sessions}
    for _ in range(3):  # interleaved rounds; each round's CPU time per caption, the best kept
        for label, session in sessions.items():
            started = time.process_time()
            for tokens in held_out[:200]:
                embed(session, tokens)
            times[label].append((time.process_time() - started) / 200 * 1000)
    print(f"alpha {args.alpha}, {args.weights} weights, {len(calibration)} train captions for the channel maxima")
    print(f"probed vs shipped, {len(held_out)} dev captions: cosine mean {cosines.mean():.5f}, min {cosines.min():.5f}, "
          f"1st percentile {np.quantile(cosines, 0.01):.5f}")
    print(f"one caption, one thread: shipped {min(times['shipped']):.2f} CPU ms, probed {min(times['probed']):.2f} "
          f"({min(times['shipped']) / min(times['probed']):.2f}x)")
    if args.write:
        shutil.copytree(encoder.model_dir, args.write, dirs_exist_ok=True)
        shutil.copyfile(probed, args.write / shipped.name)
        manifest = json.loads((args.write / "manifest.json").read_text())
        manifest["sha256"][shipped.name] = hashlib.sha256(probed.read_bytes()).hexdigest()
        (args.write / "manifest.json").write_text(json.dumps(manifest, indent=1))
        print(f"wrote {args.write} (cir eval flickr8k --model {args.write} ...)")


if __name__ == "__main__":
    main()
