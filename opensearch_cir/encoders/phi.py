"""Textual inversion on exported models: the pseudo-token text graph, the φ graph, and their runtime.

Pic2Word, SEARLE and LinCIR map an image embedding to a *pseudo-word*: φ(E_I(image)) replaces the
placeholder of a prompt such as "a photo of $ that {T}" in the text encoder's input, and the
prompt's text embedding is the query. Two ONNX graphs make that work without PyTorch:

- the **pseudo-token text graph** (`text.pseudo.onnx`): the model's text graph plus two inputs,
  `pseudo_token` float[N,H] and `placeholder_position` int64[N]; the token embedding at that
  position is replaced by the pseudo token before the transformer runs. It is made from the exported
  text graph by `add_pseudo_token_input` (one `Where` after the token-embedding lookup), so it works
  for any family (HF CLIP, SigLIP, the default model's MiniLM) and any precision whose embeddings
  are float; its large weights reference the text graph's own bytes, so it adds almost nothing on disk.
- the **φ graph** (`phi.onnx`): `image_embedding` float[N,D] → `pseudo_token` float[N,H], an MLP
  written by `write_phi_graph` from plain weight matrices (Pic2Word: Linear-ReLU ×2 + Linear;
  SEARLE / LinCIR: Linear-GELU ×2 + Linear). `phi_layers_from_state_dict` reads published
  checkpoints (`cir models import-phi`); `training.phi` trains one text-only (`cir models train-phi`).

The manifest's `phi` section (`PhiSpec`) names both files, the placeholder and the prompt template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import CIRError, InputError
from .manifest import Manifest, PhiSpec

PSEUDO_TOKEN = "pseudo_token"
PLACEHOLDER_POSITION = "placeholder_position"
PHI_INPUT = "image_embedding"
SHARED_BYTES_MIN = 1024
"""Initializers at least this large reference the source graph's bytes instead of being copied."""
ACTIVATIONS = ("relu", "gelu", "none")


# -- the pseudo-token text graph ----------------------------------------------------------------


def add_pseudo_token_input(text_graph: str | Path, out: str | Path, *, share_weights: bool = True) -> int:
    """Write `out`: `text_graph` with the `pseudo_token` / `placeholder_position` inputs; returns H.

    The token-embedding lookup is the `Gather` on the largest 2-D initializer (the vocabulary
    table; followed by its `DequantizeLinear` in int8 graphs). Its output E[N,L,H] becomes
    Where(arange(L) == placeholder_position, pseudo_token, E). With `share_weights`, initializers of
    at least SHARED_BYTES_MIN bytes are stored as ONNX external data pointing at their bytes inside
    `text_graph` (which must then stay beside `out`, unchanged: the manifest's sha256 guards it).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    text_graph, out = Path(text_graph), Path(out)
    model = onnx.load(text_graph)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    tables = [(int(np.prod(initializers[n.input[0]].dims)), n) for n in graph.node
              if n.op_type == "Gather" and n.input[0] in initializers and len(initializers[n.input[0]].dims) == 2]
    if not tables:
        raise CIRError(f"{text_graph}: no token-embedding lookup (Gather on a 2-D table) found")
    lookup = max(tables, key=lambda pair: pair[0])[1]
    token_dim = int(initializers[lookup.input[0]].dims[1])
    embedded = lookup.output[0]
    consumers = [n for n in graph.node if embedded in n.input]
    if len(consumers) == 1 and consumers[0].op_type == "DequantizeLinear":
        embedded = consumers[0].output[0]
    ids = lookup.input[1]
    prefix = "pseudo_token_substitution/"
    replaced = prefix + "embeddings"
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == embedded:
                node.input[index] = replaced
    constants = [numpy_helper.from_array(np.asarray(value, np.int64), prefix + name)
                 for name, value in (("zero", 0), ("one", 1), ("axis1", [1]), ("axis2", [2]), ("length_index", 1))]
    nodes = [
        helper.make_node("Shape", [ids], [prefix + "shape"]),
        helper.make_node("Gather", [prefix + "shape", prefix + "length_index"], [prefix + "length"], axis=0),
        helper.make_node("Range", [prefix + "zero", prefix + "length", prefix + "one"], [prefix + "positions"]),
        helper.make_node("Unsqueeze", [PLACEHOLDER_POSITION, prefix + "axis1"], [prefix + "wanted"]),
        helper.make_node("Equal", [prefix + "positions", prefix + "wanted"], [prefix + "mask2d"]),
        helper.make_node("Unsqueeze", [prefix + "mask2d", prefix + "axis2"], [prefix + "mask"]),
        helper.make_node("Unsqueeze", [PSEUDO_TOKEN, prefix + "axis1"], [prefix + "token"]),
        helper.make_node("Where", [prefix + "mask", prefix + "token", embedded], [replaced]),
    ]
    position = next(i for i, node in enumerate(graph.node) if replaced in node.input)
    for offset, node in enumerate(nodes):
        node.name = prefix + node.op_type + str(offset)
        graph.node.insert(position + offset, node)
    graph.initializer.extend(constants)
    graph.input.extend([helper.make_tensor_value_info(PSEUDO_TOKEN, TensorProto.FLOAT, ["batch", token_dim]),
                        helper.make_tensor_value_info(PLACEHOLDER_POSITION, TensorProto.INT64, ["batch"])])
    if share_weights:
        _reference_source_bytes(graph, text_graph, out)
    onnx.save(model, out)
    return token_dim


def _reference_source_bytes(graph, source: Path, out: Path) -> None:
    """Point large raw initializers at the identical bytes inside `source` (ONNX external data)."""
    from onnx import TensorProto

    if source.resolve().parent != out.resolve().parent:
        raise CIRError(f"sharing weights needs {out} beside {source}")
    blob, location = source.read_bytes(), source.name
    for tensor in graph.initializer:
        if len(tensor.raw_data) < SHARED_BYTES_MIN:
            continue
        offset = blob.find(tensor.raw_data)
        if offset < 0:
            continue
        length = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value


TEXT_GRAPH = "text.pseudo.onnx"
PHI_GRAPH = "phi.onnx"
DEFAULT_PLACEHOLDERS = {"siglip": "sks"}
"""Placeholders by family where "$" does not survive the tokenizer (SigLIP drops punctuation)."""


def add_pseudo_token_graph(model_dir: str | Path, *, template: str | None = None,
                           placeholder: str | None = None) -> Manifest:
    """Give an exported model folder its pseudo-token text graph (from the fp32 variant's text graph)
    and a `phi` manifest section; an existing φ stays. Returns the saved manifest."""
    from .runtime import load_tokenizer

    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    token_dim = add_pseudo_token_input(model_dir / manifest.graph("text", "fp32"), model_dir / TEXT_GRAPH)
    previous = manifest.phi
    placeholder = placeholder or (previous.placeholder if previous else DEFAULT_PLACEHOLDERS.get(manifest.family, "$"))
    template = template or (previous.template if previous else PhiSpec.template.replace("$", placeholder))
    _check_template(template, placeholder)
    tokenizer = load_tokenizer(model_dir / manifest.text.tokenizer, manifest.text)
    prompt_inputs(tokenizer, manifest.text.pad_id, None, template, placeholder, ["probe"])  # raises when it vanishes
    manifest.phi = PhiSpec(text_graph=TEXT_GRAPH, token_dim=token_dim, template=template, placeholder=placeholder,
                           graph=previous.graph if previous else None, method=previous.method if previous else None,
                           source=previous.source if previous else None, extra=previous.extra if previous else {})
    manifest.save(model_dir)
    return manifest


def install_phi(model_dir: str | Path, layers: Sequence[PhiLayer], *, method: str, source: str,
                input_scale: float = 1.0, template: str | None = None, extra: dict | None = None,
                int8_weights: bool = False) -> Manifest:
    """Write `layers` as the folder's φ graph and record it in the manifest (the pseudo-token text
    graph is added first when missing); φ's output width must equal the text tower's token width."""
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    if manifest.phi is None or template:
        manifest = add_pseudo_token_graph(model_dir, template=template)
    in_dim, out_dim = np.asarray(layers[0].weight).shape[1], np.asarray(layers[-1].weight).shape[0]
    if in_dim != manifest.embedding_dim or out_dim != manifest.phi.token_dim:
        raise CIRError(f"φ maps {in_dim} → {out_dim} but model {manifest.model_id} needs "
                       f"{manifest.embedding_dim} (embedding) → {manifest.phi.token_dim} (token embedding)")
    write_phi_graph(layers, model_dir / PHI_GRAPH, input_scale=input_scale, int8_weights=int8_weights)
    manifest.phi.graph, manifest.phi.method, manifest.phi.source = PHI_GRAPH, method, source
    manifest.phi.extra = {"input_scale": input_scale, "int8_weights": int8_weights, **(extra or {})}
    manifest.save(model_dir)
    return manifest


def _check_template(template: str, placeholder: str) -> None:
    if template.count("{}") != 1 or template.replace("{}", "").count(placeholder) != 1:
        raise CIRError(f"the prompt template must hold `{{}}` once and the placeholder {placeholder!r} once, "
                       f"got {template!r}")


# -- prompts -------------------------------------------------------------------------------------


def render_prompt(template: str, placeholder: str, text: str) -> tuple[str, int]:
    """The prompt for modification `text` and the character offset of its placeholder.

    `template` holds `{}` (where the text goes) and `placeholder` once; a placeholder inside `text`
    is blanked out so that only the template's marks the pseudo token.
    """
    head, _, tail = template.partition("{}")
    text = text.replace(placeholder, " ").strip()
    if placeholder in head:
        return head + text + tail, head.index(placeholder)
    return head + text + tail, len(head) + len(text) + tail.index(placeholder)


def prompt_inputs(tokenizer, pad_id: int, pad_to: int | None, template: str, placeholder: str,
                  texts: Sequence[str]) -> dict[str, np.ndarray]:
    """`input_ids`, `attention_mask` and `placeholder_position` of `template` filled with each text."""
    return tokenize_prompts(tokenizer, pad_id, pad_to, [render_prompt(template, placeholder, t) for t in texts],
                            len(placeholder))


def tokenize_prompts(tokenizer, pad_id: int, pad_to: int | None, prompts: Sequence[tuple[str, int]],
                     placeholder_length: int) -> dict[str, np.ndarray]:
    """Inputs of the pseudo-token text graph for (prompt, placeholder offset) pairs.

    The tokens covering the placeholder collapse into one (its position is the substitution point),
    so any placeholder string that survives the tokenizer's normalisation works.
    """
    rows, positions = [], []
    for prompt, start in prompts:
        encoding = tokenizer.encode(prompt)
        length = sum(encoding.attention_mask)
        ids, offsets = encoding.ids[:length], encoding.offsets[:length]
        covering = [i for i, (begin, end) in enumerate(offsets)
                    if end > begin and begin < start + placeholder_length and end > start]
        if not covering:
            raise InputError(f"the placeholder at offset {start} vanishes when tokenising {prompt!r}; "
                             "choose another placeholder for this model")
        rows.append([token for i, token in enumerate(ids) if i not in covering[1:]])
        positions.append(covering[0])
    width = pad_to or max(len(row) for row in rows)
    input_ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for index, row in enumerate(rows):
        input_ids[index, :len(row)] = row
        mask[index, :len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            PLACEHOLDER_POSITION: np.asarray(positions, np.int64)}


# -- the φ graph ---------------------------------------------------------------------------------


@dataclass
class PhiLayer:
    """One Linear layer of φ: y = activation(x @ weight.T + bias); weight is [out, in] (torch layout)."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str = "none"


def write_phi_graph(layers: Sequence[PhiLayer], out: str | Path, *, input_scale: float = 1.0, opset: int = 17,
                    int8_weights: bool = False) -> None:
    """Write the MLP `layers` as an ONNX graph `image_embedding` float[N,D] → `pseudo_token` float[N,H].

    `input_scale` multiplies the (L2-normalised) input first: published φ were trained on CLIP's
    unnormalised image features, whose norm is roughly constant per model. `int8_weights` stores each
    weight matrix as int8 with one scale per output row (a quarter of the size; dequantised by a
    Cast and a Mul that ONNX Runtime folds at load, so φ still computes in float).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not layers:
        raise CIRError("φ needs at least one layer")
    nodes, initializers = [], [numpy_helper.from_array(np.asarray([input_scale], np.float32), "input_scale")]
    nodes.append(helper.make_node("Mul", [PHI_INPUT, "input_scale"], ["x0"]))
    current = "x0"
    for index, layer in enumerate(layers):
        if layer.activation not in ACTIVATIONS:
            raise CIRError(f"unknown activation {layer.activation!r}; choose from {ACTIVATIONS}")
        weight, bias = np.asarray(layer.weight, np.float32), np.asarray(layer.bias, np.float32)
        if index and weight.shape[1] != np.asarray(layers[index - 1].weight).shape[0]:
            raise CIRError(f"φ layer {index} takes {weight.shape[1]} inputs but layer {index - 1} gives "
                           f"{np.asarray(layers[index - 1].weight).shape[0]}")
        initializers.append(numpy_helper.from_array(bias, f"b{index}"))
        if int8_weights:
            scale = np.maximum(np.abs(weight).max(axis=1, keepdims=True), np.finfo(np.float32).tiny) / 127
            initializers += [numpy_helper.from_array(np.round(weight / scale).astype(np.int8), f"w{index}_int8"),
                             numpy_helper.from_array(scale.astype(np.float32), f"w{index}_scale")]
            nodes += [helper.make_node("Cast", [f"w{index}_int8"], [f"w{index}_float"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", [f"w{index}_float", f"w{index}_scale"], [f"w{index}"])]
        else:
            initializers.append(numpy_helper.from_array(weight, f"w{index}"))
        linear = f"linear{index}" if layer.activation != "none" or index < len(layers) - 1 else PSEUDO_TOKEN
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [linear], transB=1))
        current = linear
        if layer.activation == "relu":
            nodes.append(helper.make_node("Relu", [linear], [f"act{index}"]))
            current = f"act{index}"
        elif layer.activation == "gelu":  # exact GELU (torch.nn.GELU's default): x·Φ(x) = 0.5·x·(1 + erf(x/√2))
            initializers += [numpy_helper.from_array(np.asarray(v, np.float32), f"gelu{index}_{n}")
                             for n, v in (("rsqrt2", 1 / np.sqrt(2)), ("one", 1.0), ("half", 0.5))]
            nodes += [helper.make_node("Mul", [linear, f"gelu{index}_rsqrt2"], [f"gelu{index}_scaled"]),
                      helper.make_node("Erf", [f"gelu{index}_scaled"], [f"gelu{index}_erf"]),
                      helper.make_node("Add", [f"gelu{index}_erf", f"gelu{index}_one"], [f"gelu{index}_cdf2"]),
                      helper.make_node("Mul", [linear, f"gelu{index}_cdf2"], [f"gelu{index}_x"]),
                      helper.make_node("Mul", [f"gelu{index}_x", f"gelu{index}_half"], [f"act{index}"])]
            current = f"act{index}"
    if current != PSEUDO_TOKEN:
        nodes.append(helper.make_node("Identity", [current], [PSEUDO_TOKEN]))
    in_dim, out_dim = np.asarray(layers[0].weight).shape[1], np.asarray(layers[-1].weight).shape[0]
    graph = helper.make_graph(
        nodes, "phi", [helper.make_tensor_value_info(PHI_INPUT, TensorProto.FLOAT, ["batch", int(in_dim)])],
        [helper.make_tensor_value_info(PSEUDO_TOKEN, TensorProto.FLOAT, ["batch", int(out_dim)])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="opensearch-cir")
    model.ir_version = 8  # readable by every onnxruntime >= 1.15
    onnx.checker.check_model(model)
    onnx.save(model, out)


PHI_METHODS = ("pic2word", "searle", "lincir")


def phi_layers_from_state_dict(state: Mapping[str, np.ndarray], method: str) -> list[PhiLayer]:
    """φ layers from a published state dict (values as numpy arrays; `module.` prefixes allowed).

    pic2word (google-research/composed_image_retrieval, `IM2TEXT`): `layers.{i}.0` Linear + ReLU
    per hidden layer, then `fc_out`. searle (miccunifi/SEARLE `src/phi.py`, `Phi`) and lincir (same
    `Phi` module): `layers.0`, `layers.3` Linear + GELU, then `layers.6`.
    """
    state = {key.removeprefix("module."): np.asarray(value, np.float32) for key, value in state.items()}

    def linear(name: str, activation: str) -> PhiLayer:
        try:
            return PhiLayer(state[f"{name}.weight"], state[f"{name}.bias"], activation)
        except KeyError:
            raise CIRError(f"{method} checkpoint has no {name}.weight/{name}.bias "
                           f"(keys: {', '.join(sorted(state)[:8])}...)") from None

    if method == "pic2word":
        hidden = sorted({int(key.split(".")[1]) for key in state if key.startswith("layers.")})
        return [linear(f"layers.{i}.0", "relu") for i in hidden] + [linear("fc_out", "none")]
    if method in ("searle", "lincir"):
        return [linear("layers.0", "gelu"), linear("layers.3", "gelu"), linear("layers.6", "none")]
    raise CIRError(f"unknown φ method {method!r}; choose from {', '.join(PHI_METHODS)}")


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The φ state dict inside a checkpoint file: the `Phi` (SEARLE / LinCIR) or `state_dict_img2text`
    (Pic2Word) entry, or the file itself when it is already a flat state dict."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise CIRError("reading PyTorch checkpoints needs torch: pip install 'opensearch-cir[export]'") from exc
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("Phi", "phi", "state_dict_img2text"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(hasattr(v, "numpy") for v in checkpoint.values()):
        raise CIRError(f"{path} holds no φ state dict (expected a `Phi` or `state_dict_img2text` entry)")
    return {key: value.detach().float().numpy() for key, value in checkpoint.items()}


# -- runtime -------------------------------------------------------------------------------------


class PhiComposer:
    """φ and the pseudo-token text graph of one model folder: `compose(image_vectors, texts)`."""

    def __init__(self, model_dir: str | Path, manifest: Manifest, tokenizer, session_factory):
        spec = manifest.phi
        if spec is None or not spec.graph:
            raise CIRError(f"model {manifest.model_id} has no φ graph (see `cir models import-phi` / `train-phi`)")
        self.spec = spec
        self._text = session_factory(Path(model_dir) / spec.text_graph)
        self._phi = session_factory(Path(model_dir) / spec.graph)
        self._tokenizer = tokenizer
        self._text_spec = manifest.text
        self._text_inputs = {i.name for i in self._text.get_inputs()}

    def pseudo_tokens(self, image_vectors: np.ndarray) -> np.ndarray:
        """φ(image_vectors): float32[N, H]."""
        return self._phi.run([PSEUDO_TOKEN], {PHI_INPUT: np.asarray(image_vectors, np.float32)})[0]

    def compose(self, image_vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised E_T(template with φ(image) at the placeholder and each text), float32[N, D]."""
        image_vectors = np.atleast_2d(np.asarray(image_vectors, np.float32))
        if len(image_vectors) != len(texts):
            raise InputError(f"need one text per image vector ({len(image_vectors)} vectors, {len(texts)} texts)")
        inputs = prompt_inputs(self._tokenizer, self._text_spec.pad_id,
                               self._text_spec.context_length if self._text_spec.pad_to_context else None,
                               self.spec.template, self.spec.placeholder,
                               [t.lower() if self._text_spec.lowercase else t for t in texts])
        inputs[PSEUDO_TOKEN] = self.pseudo_tokens(image_vectors)
        output = self._text.run(["embedding"], {k: v for k, v in inputs.items() if k in self._text_inputs})[0]
        return (output / np.maximum(np.linalg.norm(output, axis=1, keepdims=True), 1e-12)).astype(np.float32)


__all__ = ["PhiComposer", "PhiLayer", "PhiSpec", "add_pseudo_token_graph", "add_pseudo_token_input", "install_phi", "load_state_dict",
           "phi_layers_from_state_dict", "prompt_inputs", "render_prompt", "tokenize_prompts", "write_phi_graph"]
