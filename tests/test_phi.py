"""Textual inversion: the pseudo-token text graph and φ graph vs PyTorch, import-phi, train-phi, prompts.

Tiny random HF CLIP / SigLIP checkpoints come from test_export's fixtures; the default model's text
tower is rebuilt tiny (random BERT with MiniLM's tokenizer + projection). φ shapes are the published
ones: Pic2Word `IM2TEXT(embed_dim=768, middle_dim=512, output_dim=768)` with its `state_dict_img2text`
checkpoint entry (google-research/composed_image_retrieval), SEARLE ViT-B/32 `Phi(512, 2048, 512)` with
its `Phi` entry (miccunifi/SEARLE hubconf.py, src/phi.py).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from test_export import hf_clip, hf_siglip  # noqa: E402,F401 - fixtures
from typer.testing import CliRunner  # noqa: E402

from opensearch_cir.cli import app  # noqa: E402
from opensearch_cir.encoders import Manifest, load_encoder  # noqa: E402
from opensearch_cir.encoders.export import export_hf, export_towers, hf_towers  # noqa: E402
from opensearch_cir.encoders.phi import (  # noqa: E402
    PLACEHOLDER_POSITION, PSEUDO_TOKEN, add_pseudo_token_graph, add_pseudo_token_input, phi_layers_from_state_dict,
    prompt_inputs, render_prompt, write_phi_graph,
)
from opensearch_cir.errors import CIRError, InputError  # noqa: E402
from opensearch_cir.training.phi import (  # noqa: E402
    Phi, PhiConfig, PseudoTokenTextTower, clean_caption, mask_keywords, train_phi,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
MODS = ["in red", "with long sleeves and a $ sign", "but smaller", "two of them at night"]


def _session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(path: Path, inputs: dict) -> np.ndarray:
    session = _session(path)
    names = {i.name for i in session.get_inputs()}
    out = session.run(None, {k: v for k, v in inputs.items() if k in names})[0]
    return out


@pytest.fixture(scope="module")
def exported_hf(hf_clip, hf_siglip, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("phi-export")
    export_hf(hf_clip, out / "clip", precisions=["fp32"])
    export_hf(hf_siglip, out / "siglip", precisions=["fp32"])
    return {"clip": (hf_clip, out / "clip"), "siglip": (hf_siglip, out / "siglip")}


def _torch_pseudo(model, family: str) -> PseudoTokenTextTower:
    return PseudoTokenTextTower(hf_towers(model, family)[1], model.text_model.embeddings.token_embedding).eval()


def _compare_with_torch(folder: Path, tower: PseudoTokenTextTower, token_dim: int) -> None:
    manifest = Manifest.load(folder)
    encoder = load_encoder(folder, device="cpu")
    spec = manifest.phi
    inputs = prompt_inputs(encoder.tokenizer, manifest.text.pad_id,
                           manifest.text.context_length if manifest.text.pad_to_context else None,
                           spec.template, spec.placeholder, MODS)
    inputs[PSEUDO_TOKEN] = np.random.default_rng(0).standard_normal((len(MODS), token_dim)).astype(np.float32)
    onnx_out = _run(folder / spec.text_graph, inputs)
    with torch.no_grad():
        torch_out = tower(*(torch.from_numpy(inputs[k]) for k in ("input_ids", "attention_mask", PSEUDO_TOKEN,
                                                                   PLACEHOLDER_POSITION))).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=2e-5)
    plain = _run(folder / manifest.graph("text", "fp32"), inputs)
    assert np.abs(plain - onnx_out).max() > 1e-3  # the pseudo token really changed the output


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_pseudo_token_graph_matches_pytorch_hf(family, exported_hf):
    source, folder = exported_hf[family]
    manifest = Manifest.load(folder)
    assert manifest.phi.text_graph == "text.pseudo.onnx" and manifest.phi.graph is None
    assert manifest.phi.placeholder == ("sks" if family == "siglip" else "$")
    model = transformers.AutoModel.from_pretrained(source).eval()
    _compare_with_torch(folder, _torch_pseudo(model, family), manifest.phi.token_dim)
    manifest.verify(folder)


class _TinyProjection(torch.nn.Module):
    def __init__(self, width: int, dim: int):
        super().__init__()
        self.proj = torch.nn.Linear(width, dim)

    def forward(self, pooled):
        return torch.nn.functional.normalize(self.proj(pooled), dim=-1)


@pytest.fixture(scope="module")
def tiny_default(tmp_path_factory):
    """A default-model-shaped folder: tiny random BERT (MiniLM's tokenizer) text tower, fp32 + int8."""
    from opensearch_cir.training.models import TEXT_SPEC, ImageTower, TextTower, minilm_path
    from opensearch_cir.encoders.manifest import ImageSpec

    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64)).eval()
    text = TextTower(_TinyProjection(32, 16), encoder=bert).eval()
    image = ImageTower(dim=16, widths=(8, 8, 8, 8), stem=8).eval()
    folder = tmp_path_factory.mktemp("tiny-default")
    spec = ImageSpec(size=32, resize="pad_square", resize_to=32, interpolation="bilinear", mean=[0.5] * 3,
                     std=[0.25] * 3, crop="none")
    export_towers(image, text, out_dir=folder, image_spec=spec, text_spec=TEXT_SPEC,
                  tokenizer_file=minilm_path() / "tokenizer.json", model_id="tiny-default", source="test",
                  family="minilm-cnn", precisions=("fp32", "int8"))
    add_pseudo_token_graph(folder)
    return folder, text


def test_pseudo_token_graph_matches_pytorch_default_tower(tiny_default):
    folder, text = tiny_default
    _compare_with_torch(folder, PseudoTokenTextTower(text, text.encoder.embeddings.word_embeddings).eval(), 32)


def test_pseudo_token_graph_of_int8_text_shares_weights_and_keeps_the_plain_output(tiny_default, tmp_path):
    """The int8 graph's lookup is Gather + DequantizeLinear; fed a word's own (dequantised) embedding at
    the placeholder, the variant equals the plain graph on the prompt with that word."""
    folder, _ = tiny_default
    for name in ("text.int8.onnx", "tokenizer.json", "manifest.json"):
        shutil.copy(folder / name, tmp_path / name)
    add_pseudo_token_input(tmp_path / "text.int8.onnx", tmp_path / "text.pseudo.int8.onnx")
    assert (tmp_path / "text.pseudo.int8.onnx").stat().st_size < (tmp_path / "text.int8.onnx").stat().st_size / 3
    _word_substitution_is_identity(tmp_path / "text.int8.onnx", tmp_path / "text.pseudo.int8.onnx",
                                   load_encoder(folder, device="cpu"))


def _word_substitution_is_identity(text_graph: Path, pseudo_graph: Path, encoder) -> None:
    import onnx
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(text_graph).graph.initializer}
    table = next(k for k in weights if k.endswith("word_embeddings.weight_quantized"))
    stem = table.removesuffix("_quantized")
    word = encoder.tokenizer.encode("dog").ids[1]
    row = (weights[table][word].astype(np.float32) - weights[f"{stem}_zero_point"].astype(np.float32)) * weights[f"{stem}_scale"]
    inputs = prompt_inputs(encoder.tokenizer, 0, None, "a photo of $ that {}", "$", MODS)
    inputs[PSEUDO_TOKEN] = np.repeat(row[None].astype(np.float32), len(MODS), axis=0)
    plain = encoder.tokenize([render_prompt("a photo of $ that {}", "$", m)[0].replace("$", "dog", 1) for m in MODS])
    np.testing.assert_allclose(_run(pseudo_graph, inputs), _run(text_graph, plain), atol=1e-5)


def test_shipped_default_model_pseudo_token_graph(tmp_path):
    """The shipped default model (int8 MiniLM text graph) gets a ~0.25 MB variant; same identity."""
    source = REPO / "onnx_models" / "default"
    for name in ("text.int8.onnx", "tokenizer.json", "manifest.json", "image.onnx", "image.int8.onnx"):
        shutil.copy(source / name, tmp_path / name)
    manifest = Manifest.load(tmp_path)
    manifest.phi = None
    manifest.save(tmp_path)
    manifest = add_pseudo_token_graph(tmp_path)
    assert manifest.phi.token_dim == 384
    assert (tmp_path / "text.pseudo.onnx").stat().st_size < 1_000_000
    _word_substitution_is_identity(tmp_path / "text.int8.onnx", tmp_path / "text.pseudo.onnx",
                                   load_encoder(tmp_path, device="cpu"))


# -- φ graphs ------------------------------------------------------------------------------------


class _Im2Text(torch.nn.Module):
    """The Pic2Word module's structure (IM2TEXT): n × (Linear, Dropout, ReLU) blocks, then fc_out."""

    def __init__(self, embed_dim=768, middle_dim=512, output_dim=768, n_layer=2):
        super().__init__()
        self.fc_out = torch.nn.Linear(middle_dim, output_dim)
        dims = [embed_dim] + [middle_dim] * n_layer
        self.layers = torch.nn.Sequential(*[
            torch.nn.Sequential(torch.nn.Linear(dims[i], middle_dim), torch.nn.Dropout(0.1), torch.nn.ReLU())
            for i in range(n_layer)])

    def forward(self, x):
        return self.fc_out(self.layers(x))


def _phi_onnx(layers, tmp_path, x, scale=1.0) -> np.ndarray:
    write_phi_graph(layers, tmp_path / "phi.onnx", input_scale=scale)
    return _session(tmp_path / "phi.onnx").run(None, {"image_embedding": x})[0]


@pytest.mark.parametrize("method", ["pic2word", "searle"])
def test_phi_graph_of_published_shapes_matches_pytorch(method, tmp_path):
    torch.manual_seed(1)
    module = (_Im2Text() if method == "pic2word" else Phi(512, 2048, 512, dropout=0.5)).eval()
    prefix = "module." if method == "pic2word" else ""
    state = {prefix + k: v.numpy() for k, v in module.state_dict().items()}
    layers = phi_layers_from_state_dict(state, method)
    assert [layer.weight.shape for layer in layers] == (
        [(512, 768), (512, 512), (768, 512)] if method == "pic2word" else [(2048, 512), (2048, 2048), (512, 2048)])
    x = np.random.default_rng(0).standard_normal((5, layers[0].weight.shape[1])).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x) * 3.0).numpy()
    np.testing.assert_allclose(_phi_onnx(layers, tmp_path, x, scale=3.0), expected, atol=1e-4, rtol=1e-4)


def test_phi_state_dict_errors_name_what_is_missing():
    with pytest.raises(CIRError, match="layers.3.weight"):
        phi_layers_from_state_dict({"layers.0.weight": np.zeros((4, 4)), "layers.0.bias": np.zeros(4)}, "searle")
    with pytest.raises(CIRError, match="unknown φ method"):
        phi_layers_from_state_dict({}, "magic")


def test_cli_import_phi_installs_a_working_phi(tiny_default, tmp_path):
    folder, text = tiny_default
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    torch.manual_seed(2)
    searle = Phi(16, 64, 32).eval()
    torch.save({"Phi": searle.state_dict()}, tmp_path / "searle.pt")
    torch.save({"state_dict_img2text": {"module." + k: v for k, v in _Im2Text(16, 8, 32).state_dict().items()}},
               tmp_path / "pic2word.pt")
    runner = CliRunner()
    result = runner.invoke(app, ["models", "import-phi", str(tmp_path / "searle.pt"), "--method", "searle",
                                 "--model", str(model)])
    assert result.exit_code == 0, result.output
    encoder = load_encoder(model, device="cpu")
    assert encoder.phi is not None and encoder.manifest.phi.method == "searle"
    vectors = np.random.default_rng(3).standard_normal((len(MODS), 16)).astype(np.float32)
    with torch.no_grad():
        tokens = searle(torch.from_numpy(vectors))
        spec = encoder.manifest.phi
        inputs = {k: torch.from_numpy(v) for k, v in prompt_inputs(encoder.tokenizer, 0, None, spec.template, "$",
                                                                     MODS).items()}
        expected = PseudoTokenTextTower(text, text.encoder.embeddings.word_embeddings)(
            inputs["input_ids"], inputs["attention_mask"], tokens, inputs[PLACEHOLDER_POSITION]).numpy()
    np.testing.assert_allclose(encoder.phi.compose(vectors, MODS), expected, atol=2e-5)
    result = runner.invoke(app, ["models", "import-phi", str(tmp_path / "pic2word.pt"), "--method", "pic2word",
                                 "--model", str(model), "--template", "a photo of $ , {}"])
    assert result.exit_code == 0, result.output
    assert Manifest.load(model).phi.template == "a photo of $ , {}"
    torch.save({"Phi": Phi(16, 64, 24).state_dict()}, tmp_path / "wrong.pt")
    result = runner.invoke(app, ["models", "import-phi", str(tmp_path / "wrong.pt"), "--method", "searle",
                                 "--model", str(model)])
    assert result.exit_code == 1 and "16 (embedding) → 32" in result.output


# -- prompts and training ------------------------------------------------------------------------


def test_render_prompt_places_the_placeholder_and_blanks_it_in_the_text():
    assert render_prompt("a photo of $ that {}", "$", "costs $5") == ("a photo of $ that costs  5", 11)
    prompt, start = render_prompt("{} , like $", "$", "red")
    assert prompt[start] == "$" and prompt.startswith("red")


def test_prompt_inputs_collapse_a_multi_token_placeholder(tiny_default):
    folder, _ = tiny_default
    encoder = load_encoder(folder, device="cpu")
    one = prompt_inputs(encoder.tokenizer, 0, None, "a photo of $ that {}", "$", ["in red"])
    many = prompt_inputs(encoder.tokenizer, 0, None, "a photo of xqzv that {}", "xqzv", ["in red"])
    assert encoder.tokenizer.encode("xqzv").ids.__len__() > 3  # several word pieces
    assert one["placeholder_position"][0] == many["placeholder_position"][0] == 4
    assert one["input_ids"].shape == many["input_ids"].shape
    with pytest.raises(InputError, match="vanishes"):
        prompt_inputs(encoder.tokenizer, 0, None, "a photo of \u200b that {}", "\u200b", ["x"])


def test_mask_keywords_is_seeded_and_masks_a_content_word():
    caption = "a black dog is running after a white dog in the snow"
    first = [mask_keywords(caption, "$", random.Random(5)) for _ in range(3)]
    assert first == [mask_keywords(caption, "$", random.Random(5)) for _ in range(3)]
    masked = {mask_keywords(caption, "$", random.Random(seed), whole_caption=0.0) for seed in range(30)}
    assert all(m.count("$") == 1 for m in masked) and len(masked) > 3
    assert "a $ dog is running after a white dog in the snow" in masked or any("$ dog" in m for m in masked)
    assert clean_caption("costs {$5}", "$") == "costs 5"


def test_train_phi_learns_resumes_identically_and_installs(tiny_default, tmp_path):
    folder, text = tiny_default
    encoder = load_encoder(folder, device="cpu")
    captions = [f"a {c} {o} {p}" for c in ("red", "blue", "green", "black", "white") for o in
                ("dog", "shirt", "car", "house", "ball") for p in ("in the park", "on a table", "at night", "")]
    config = PhiConfig(steps=6, batch=8, eval_every=2, val_captions=16, hidden=32, warmup=2, threads=1)
    token_embedding = text.encoder.embeddings.word_embeddings
    straight, info = train_phi(config, captions, text, token_embedding, encoder.tokenizer, 0, tmp_path / "a",
                               lowercase=True, progress=False)
    assert [p["step"] for p in info["curve"]] == [0, 2, 4, 6]
    assert info["curve"][-1]["val_loss"] < info["curve"][0]["val_loss"]
    _, partial = train_phi(config, captions, text, token_embedding, encoder.tokenizer, 0, tmp_path / "b",
                           lowercase=True, progress=False, max_new_steps=3)
    assert partial["steps"] == 3
    resumed, info_b = train_phi(config, captions, text, token_embedding, encoder.tokenizer, 0, tmp_path / "b",
                                lowercase=True, progress=False)
    assert info_b["steps"] == 6
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert json.loads((tmp_path / "b" / "phi-curve.json").read_text())[-1]["step"] == 6
    with pytest.raises(ValueError, match="another configuration"):
        train_phi(PhiConfig(**{**config.__dict__, "lr": 0.5}), captions, text, token_embedding, encoder.tokenizer, 0,
                  tmp_path / "b", progress=False)


def test_shipped_default_model_carries_a_trained_phi():
    """onnx_models/default ships the φ trained by `cir models train-phi` (int8 weights, < 2 MB)."""
    folder = REPO / "onnx_models" / "default"
    manifest = Manifest.load(folder, verify=True)
    if manifest.phi is None or manifest.phi.graph is None:
        pytest.skip("this checkout's default model has no φ")
    assert (folder / manifest.phi.graph).stat().st_size < 2_000_000
    training = manifest.phi.extra["training"]
    assert training["curve"][-1]["val_loss"] < training["curve"][0]["val_loss"]
    assert manifest.phi.extra["parity"]["composed_cosine_min"] > 0.98
    encoder = load_encoder(folder, device="cpu", threads=1)
    image = encoder.encode_texts(["a red t-shirt"])  # any unit vector of the right width
    composed = encoder.phi.compose(image, ["in blue"])
    assert composed.shape == (1, encoder.dim) and abs(float(np.linalg.norm(composed)) - 1) < 1e-5


def test_cli_train_phi_checks_its_inputs(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["models", "train-phi"])
    assert result.exit_code == 2 and "--captions" in result.output
    few = tmp_path / "few.txt"
    few.write_text("a dog\na cat\n")
    result = runner.invoke(app, ["models", "train-phi", "--captions", str(few)])
    assert result.exit_code == 2 and "only 2 distinct captions" in result.output
