"""A real, tiny, randomly initialised model folder for tests: built in milliseconds, without torch.

The graphs follow the manifest contract exactly (same input/output names, shapes and L2
normalisation as an exported CLIP), so code tested against this model runs unchanged on a real one:

- image: 4×4 average-pooled colour grid of the 32×32 input → linear projection → L2 norm;
- text: WordPiece ids → embedding bag (mean over the attention mask) → linear projection → L2 norm.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from .manifest import ImageSpec, Manifest, TextSpec

TINY_IMAGE_SIZE = 32
TINY_CONTEXT_LENGTH = 16
TINY_OPSET = 17
_GRID = 4
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_WORDS = (
    "a an the this that with without and or but in on of to for from at by is are it its",
    "red orange yellow green blue navy purple pink brown black white grey gray beige gold silver",
    "dark light bright striped plain floral checked dotted long short sleeve sleeves sleeveless hood",
    "shirt t-shirt tshirt jacket coat dress skirt jeans trousers pants shorts shoe shoes sneakers boots",
    "bag watch hat cap scarf sweater top men women man woman boy girl child dog cat bird horse",
    "car tree grass water sky beach snow street building house ball circle square triangle star",
    "small large big little one two three left right above below next more less instead same",
    "running playing sitting standing jumping walking riding holding wearing looking people person",
)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tiny_model(out_dir: str | Path, dim: int = 32, *, seed: int = 0, phi: bool = False) -> Path:
    """Write a complete tiny model folder (image.onnx, text.onnx, tokenizer.json, manifest.json);
    with `phi`, also a random φ and the pseudo-token text graph (`encoders.phi`)."""
    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _write_tokenizer(out_dir / "tokenizer.json")
    onnx.save(_image_graph(rng, dim), out_dir / "image.onnx")
    onnx.save(_text_graph(rng, dim, len(vocab)), out_dir / "text.onnx")
    Manifest(
        model_id=f"tiny-random-{dim}",
        source="opensearch_cir.encoders.tiny",
        family="tiny",
        embedding_dim=dim,
        image=ImageSpec(size=TINY_IMAGE_SIZE, resize="shortest_edge", resize_to=TINY_IMAGE_SIZE,
                        interpolation="bicubic", mean=CLIP_MEAN, std=CLIP_STD),
        text=TextSpec(tokenizer="tokenizer.json", kind="wordpiece", context_length=TINY_CONTEXT_LENGTH,
                      pad_id=vocab["[PAD]"], pad_to_context=False, lowercase=False),
        variants={"fp32": {"image": "image.onnx", "text": "text.onnx"}},
        opset=TINY_OPSET,
        extra={"seed": seed, "note": "random weights, for tests only"},
    ).save(out_dir)
    if phi:
        from .phi import PhiLayer, install_phi

        layers = [PhiLayer(rng.standard_normal((2 * dim, dim)).astype(np.float32), np.zeros(2 * dim, np.float32), "gelu"),
                  PhiLayer(rng.standard_normal((dim, 2 * dim)).astype(np.float32) / np.sqrt(2 * dim),
                           np.zeros(dim, np.float32))]
        install_phi(out_dir, layers, method="lincir", source="random (opensearch_cir.encoders.tiny)")
    return out_dir


def _write_tokenizer(path: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = list(_SPECIAL_TOKENS)
    characters = string.ascii_lowercase + string.digits
    pieces += list(characters + string.punctuation) + ["##" + c for c in characters]
    pieces += sorted({word for line in _WORDS for word in line.split()} - set(pieces))
    vocab = {piece: index for index, piece in enumerate(pieces)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.save(str(path))
    return vocab


def _image_graph(rng: np.random.Generator, dim: int):
    from onnx import TensorProto, helper, numpy_helper

    features = 3 * _GRID * _GRID
    kernel = TINY_IMAGE_SIZE // _GRID
    weight = (rng.standard_normal((features, dim)) / np.sqrt(features)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], ["projected"]),
        helper.make_node("LpNormalization", ["projected"], ["embedding"], axis=-1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[numpy_helper.from_array(weight, "projection")],
    )
    return _model(graph)


def _text_graph(rng: np.random.Generator, dim: int, vocab_size: int):
    from onnx import TensorProto, helper, numpy_helper

    table = rng.standard_normal((vocab_size, dim)).astype(np.float32)
    weight = (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["token_table", "input_ids"], ["tokens"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "sequence_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "sequence_axis"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "one"], ["safe_count"]),
        helper.make_node("Div", ["summed", "safe_count"], ["mean"]),
        helper.make_node("MatMul", ["mean", "projection"], ["projected"]),
        helper.make_node("LpNormalization", ["projected"], ["embedding"], axis=-1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[
            numpy_helper.from_array(table, "token_table"),
            numpy_helper.from_array(weight, "projection"),
            numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
            numpy_helper.from_array(np.array([1], np.int64), "sequence_axis"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ],
    )
    return _model(graph)


def _model(graph):
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TINY_OPSET)], producer_name="opensearch-cir")
    model.ir_version = 8  # readable by every onnxruntime >= 1.15
    checker.check_model(model)
    return model
