"""Export of tiny randomly initialised HF CLIP and SigLIP models: ONNX vs PyTorch parity, int8, CLI.

The checkpoints are built here in Hugging Face format with real tokenizer files: CLIP's from
OpenAI's BPE vocabulary shipped in open_clip (merge list truncated to the first 2000 merges,
vocab built consistently from them), SigLIP's from a small sentencepiece unigram model trained
on a fixed corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from opensearch_cir.encoders import Manifest, load_encoder  # noqa: E402
from opensearch_cir.encoders.clip_bpe import write_clip_bpe_files  # noqa: E402
from opensearch_cir.encoders.export import export_hf  # noqa: E402
from opensearch_cir.encoders.precision import INT8_TOLERANCE  # noqa: E402

torch.set_num_threads(1)

CLIP_MERGES = 2000
TEXTS = [
    "a photo of a dog",
    "The same jacket, but in NAVY and without the hood!",
    "two people riding bicycles on a street at night",
    "x",
    "",
    "café crème — naïve façade, “quoted” words & symbols: 100% ok?",
    " ".join(["very long caption"] * 40),
]
CORPUS = [
    "a photo of a dog", "a red dress with long sleeves", "people riding bicycles on a street",
    "the same jacket but in navy and without the hood", "black leather shoes on a wooden floor",
    "a bowl of fruit on a kitchen table", "children playing football in the park", "white sneakers",
    "a cat sleeping on a sofa", "a man in a blue shirt climbing a rock wall", "snow covered mountains",
    "cafe creme naive facade quoted words and symbols", "very long caption", "two girls at night",
]


def _write_clip_tokenizer(folder: Path):
    write_clip_bpe_files(folder, num_merges=CLIP_MERGES)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _write_siglip_tokenizer(folder: Path):
    spm = pytest.importorskip("sentencepiece")
    model = folder / "spiece.model"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4), model_prefix=str(model.with_suffix("")), vocab_size=80, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", minloglevel=2, num_threads=1,
    )
    tokenizer = transformers.SiglipTokenizer(vocab_file=str(model), model_max_length=16)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _tiny_configs(vocab_size: int, context: int, **text_ids) -> dict:
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=context, **text_ids)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    return {"text_config": text, "vision_config": vision}


@pytest.fixture(scope="session")
def hf_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf-clip")
    tokenizer = _write_clip_tokenizer(folder)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = transformers.CLIPConfig(**_tiny_configs(len(tokenizer), 77, **ids), projection_dim=24)
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPImageProcessorPil(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_siglip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf-siglip")
    tokenizer = _write_siglip_tokenizer(folder)
    ids = dict(bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = transformers.SiglipConfig(**_tiny_configs(len(tokenizer), 16, **ids))
    config.text_config.projection_size = 32
    torch.manual_seed(0)
    transformers.SiglipModel(config).save_pretrained(folder)
    transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def exported(hf_clip, hf_siglip, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exported")
    export_hf(hf_clip, out / "clip", precisions=["fp32", "fp16", "int8"])
    export_hf(hf_siglip, out / "siglip", precisions=["fp32", "int8"])
    return {"clip": out / "clip", "siglip": out / "siglip"}


def _hf(family: str, folders: dict[str, Path]):
    source = folders[family]
    return transformers.AutoModel.from_pretrained(source).eval(), transformers.AutoTokenizer.from_pretrained(source)


@pytest.fixture(scope="session")
def hf_models(hf_clip, hf_siglip):
    folders = {"clip": hf_clip, "siglip": hf_siglip}
    return {family: _hf(family, folders) for family in folders}


def _torch_embeddings(model, family, pixels, token_ids):
    with torch.no_grad():
        image = model.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output
        mask = torch.from_numpy(token_ids["attention_mask"]) if family == "clip" else None
        text = model.get_text_features(input_ids=torch.from_numpy(token_ids["input_ids"]), attention_mask=mask).pooler_output
    return (torch.nn.functional.normalize(image, dim=-1).numpy(), torch.nn.functional.normalize(text, dim=-1).numpy())


def _pixels(count=5, size=32) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((count, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_tokenizer_json_matches_hf_tokenizer(family, exported, hf_models):
    encoder = load_encoder(exported[family], threads=1)
    _, hf_tokenizer = hf_models[family]
    context = encoder.manifest.text.context_length
    expected = hf_tokenizer(TEXTS, padding="max_length", truncation=True, max_length=context)["input_ids"]
    ours = encoder.tokenize(TEXTS)
    for row, text in enumerate(TEXTS):
        length = int(ours["attention_mask"][row].sum())
        assert ours["input_ids"][row][:length].tolist() == [t for t in expected[row]][:length], text
    assert max(len(t) for t in ours["input_ids"]) <= context


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_onnx_fp32_matches_pytorch(family, exported, hf_models):
    model, _ = hf_models[family]
    encoder = load_encoder(exported[family], threads=1)
    pixels = _pixels()
    tokens = encoder.tokenize(TEXTS)
    torch_image, torch_text = _torch_embeddings(model, family, pixels, tokens)
    assert np.abs(encoder.encode_pixels(pixels) - torch_image).max() <= 1e-4
    assert np.abs(encoder.encode_texts(TEXTS) - torch_text).max() <= 1e-4


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_int8_close_to_fp32(family, exported):
    fp32 = load_encoder(exported[family], threads=1)
    int8 = load_encoder(exported[family], precision="int8", threads=1)
    pixels = _pixels()
    assert np.sum(fp32.encode_pixels(pixels) * int8.encode_pixels(pixels), axis=1).min() >= 0.99
    assert np.sum(fp32.encode_texts(TEXTS) * int8.encode_texts(TEXTS), axis=1).min() >= 0.99
    chosen = fp32.manifest.extra["int8"]["image"]["method"]
    assert chosen in fp32.manifest.extra["int8"]["image"]["probe_cosine_mean_min"]


def test_fp16_variant_close_to_fp32(exported):
    manifest = Manifest.load(exported["clip"], verify=True)
    assert set(manifest.variants) == {"fp32", "fp16", "int8"}
    fp32 = load_encoder(exported["clip"], threads=1)
    fp16 = load_encoder(exported["clip"], precision="fp16", threads=1)
    pixels = _pixels()
    assert np.sum(fp32.encode_pixels(pixels) * fp16.encode_pixels(pixels), axis=1).min() >= 0.999
    assert np.sum(fp32.encode_texts(TEXTS) * fp16.encode_texts(TEXTS), axis=1).min() >= 0.999


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_batch_equals_one_by_one(family, exported):
    encoder = load_encoder(exported[family], threads=1, batch_size=3)
    pixels = _pixels(4)
    single = np.concatenate([encoder.encode_pixels(pixels[i:i + 1]) for i in range(len(pixels))])
    np.testing.assert_allclose(encoder.encode_pixels(pixels), single, atol=1e-5)
    single = np.concatenate([encoder.encode_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), single, atol=1e-5)


def test_manifest_records_preprocessing_and_tokenizer(exported, hf_clip):
    clip = Manifest.load(exported["clip"], verify=True)
    assert (clip.family, clip.embedding_dim, clip.opset) == ("clip", 24, 17)
    assert (clip.image.resize, clip.image.resize_to, clip.image.size, clip.image.interpolation) == ("shortest_edge", 36, 32, "bicubic")
    assert clip.text.kind == "clip_bpe" and clip.text.context_length == 77
    assert clip.text.pad_id == json.loads((hf_clip / "vocab.json").read_text())["<|endoftext|>"]
    assert clip.source == str(hf_clip) and set(clip.sha256) == clip.files()
    assert clip.extra["fused"]["image"]["Attention"] == 2  # ONNX Runtime attention fusion, parity-checked
    siglip = Manifest.load(exported["siglip"], verify=True)
    assert (siglip.image.resize, siglip.image.mean, siglip.text.pad_to_context) == ("squash", [0.5] * 3, True)
    assert siglip.text.kind == "sentencepiece" and siglip.text.context_length == 16


def test_export_towers_with_calibration_tries_static_int8(hf_clip, hf_models, exported, tmp_path):
    from opensearch_cir.encoders.export import export_towers, hf_towers

    reference = Manifest.load(exported["clip"])
    model, _ = hf_models["clip"]
    manifest = export_towers(
        *hf_towers(model, "clip"), out_dir=tmp_path, image_spec=reference.image, text_spec=reference.text,
        tokenizer_file=hf_clip / "tokenizer.json", model_id="calibrated", source="test", family="clip",
        precisions=("fp32", "int8"), calibration_images=_pixels(6),
    )
    scores = manifest.extra["int8"]["image"]["probe_cosine_mean_min"]
    assert "static-qdq" in scores and len(scores) == 5
    kept = scores[manifest.extra["int8"]["image"]["method"]][0]
    assert kept >= max(mean for mean, _ in scores.values()) - INT8_TOLERANCE
    encoder = load_encoder(tmp_path, precision="int8", threads=1)
    fp32 = load_encoder(tmp_path, threads=1)
    assert np.sum(encoder.encode_pixels(_pixels()) * fp32.encode_pixels(_pixels()), axis=1).min() >= 0.99


def test_cli_export_and_list(hf_clip, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from opensearch_cir.cli import app

    monkeypatch.setenv("CIR_MODELS_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["models", "export", str(hf_clip), "--out", str(tmp_path / "mine"), "--model-id", "tiny-clip"])
    assert result.exit_code == 0, result.output
    assert Manifest.load(tmp_path / "mine", verify=True).model_id == "tiny-clip"
    listing = runner.invoke(app, ["models", "list"])
    assert listing.exit_code == 0
    assert "tiny-clip" in listing.output and "24" in listing.output and str(hf_clip) in listing.output
    bad = runner.invoke(app, ["models", "export", str(hf_clip), "--precision", "int4"])
    assert bad.exit_code != 0 and "int4" in bad.output


def test_cli_export_without_extras_says_what_to_install(hf_clip, tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from opensearch_cir.cli import app

    monkeypatch.setitem(sys.modules, "torch", None)  # as if the [export] extra were not installed
    result = CliRunner().invoke(app, ["models", "export", str(hf_clip), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "pip install 'opensearch-cir[export]'" in result.output


def test_open_clip_native_checkpoint_is_refused_clearly(tmp_path):
    from opensearch_cir.errors import CIRError

    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(CIRError, match="OpenCLIP-native"):
        export_hf(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_images_end_to_end_match_hf_processor_and_model(family, exported, hf_models, hf_clip, hf_siglip):
    from PIL import Image

    model, _ = hf_models[family]
    processor = transformers.AutoImageProcessor.from_pretrained({"clip": hf_clip, "siglip": hf_siglip}[family])
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((50, 70), (90, 40), (32, 32))]
    with torch.no_grad():
        pixels = torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"])
        expected = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1).numpy()
    ours = load_encoder(exported[family], threads=1).encode_images(images)
    assert np.abs(ours - expected).max() <= 1e-4


def test_int8_keeps_drift_prone_matmuls_in_float(tmp_path):
    """A MatMul fed one outlier channel drifts under dynamic int8: it is the first kept in float (int8 weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from opensearch_cir.encoders.precision import INT8_TARGET, quantize_best, run_graph

    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(32, 32)).astype(np.float32), rng.normal(size=(32, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_first"], ["hidden"], "first"),
         helper.make_node("MatMul", ["hidden", "w_second"], ["embedding"], "second")],
        "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(first, "w_first"), numpy_helper.from_array(second, "w_second")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "text.onnx")
    x = rng.normal(size=(24, 32)).astype(np.float32)
    x[:, 0] *= 300  # one outlier channel: a single per-tensor activation scale leaves the others ~1 level
    name, info = quantize_best(tmp_path, "text", {"x": x}, static=False)
    assert info["method"].endswith("+float-matmuls") and info["float_matmuls"][0] == "first"
    mean, worst = info["probe_cosine_mean_min"][info["method"]]
    assert mean >= INT8_TARGET[0] and worst >= INT8_TARGET[1] > info["probe_cosine_mean_min"]["dynamic-s8"][1]
    held_out = rng.normal(size=(16, 32)).astype(np.float32)
    held_out[:, 0] *= 300
    cosine = np.sum(run_graph(tmp_path / name, {"x": held_out}) * run_graph(tmp_path / "text.onnx", {"x": held_out}), axis=1)
    assert cosine.min() >= INT8_TARGET[1]
    assert (tmp_path / name).stat().st_size < (tmp_path / "text.onnx").stat().st_size / 2  # weights stay int8
