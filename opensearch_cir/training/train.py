"""Train the default model: `python -m opensearch_cir.training.train --config CONFIG --out DIR`.

The image tower learns from scratch against frozen MiniLM text vectors (precomputed once, see
`cache`); only the image tower, the text projection and the temperature are trained. Symmetric
InfoNCE with a learned temperature; images whose sampled captions are the same string are
positives for each other. Batched random-resized crops (+ flips except for scenes, where left and
right are part of the caption), AdamW with warmup + cosine decay, an EMA of the weights, fixed
seeds. Every `eval_every` steps the EMA model is scored on Flickr8k dev text->image Recall@K (model
selection only) and the best one is kept as `DIR/best.pt`. With `time_budget_minutes`, the cosine
decay also follows elapsed time, so a slow (shared) machine still ends at a zero learning rate
inside the budget; on a machine fast enough for `steps`, the run is step-exact. Losses and metrics go to `DIR/log.jsonl`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .cache import DEFAULT_CACHE
from .data import DevSet, Domain, TrainingData, build_flickr_dev, build_training_data
from .models import ImageTower, TextProjection

logger = logging.getLogger("opensearch_cir.training")

DEFAULT_CONFIG = Path(__file__).with_name("config.json")
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def random_resized_crops(
    images: torch.Tensor, out_size: int, min_scale: float, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """uint8 [N,S,S,3] -> float [N,3,out,out] in [0,1]: one random crop (area fraction in
    [min_scale, 1], aspect 3:4..4:3) per image, resized bilinearly; random horizontal flips."""
    n = images.shape[0]
    x = images.permute(0, 3, 1, 2).float().div_(255.0)  # on the images' device; the random draws stay on the CPU
    area = torch.empty(n).uniform_(min_scale, 1.0, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    w = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)
    h = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * sign, cx, h, cy
    grid = F.affine_grid(theta.to(x.device), [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_batch(images: np.ndarray, out_size: int) -> torch.Tensor:
    """uint8 [N,S,S,3] -> float [N,3,out,out] in [0,1] (whole image, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] == out_size:
        return x
    return F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, text_ids: torch.Tensor, logit_scale) -> torch.Tensor:
    """Symmetric InfoNCE; every pair whose captions are the same string is a positive."""
    logits = logit_scale.exp() * image_emb @ text_emb.T
    positives = (text_ids[:, None] == text_ids[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    loss_i2t = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t2i = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


class Normalizer:
    def __init__(self, mean, std, device: torch.device | str = "cpu"):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def flickr_recall(image_tower, projection, dev: DevSet, normalize: Normalizer, size: int) -> dict:
    """Text->image Recall@1/5/10 and median rank over the dev gallery."""
    image_tower.eval()
    device = normalize.mean.device
    images = torch.cat([image_tower(normalize(resize_batch(dev.images[i : i + 250], size).to(device)))
                        for i in range(0, len(dev.images), 250)])  # fmt: skip
    texts = projection(torch.from_numpy(dev.caption_vectors).to(device))
    scores = (texts @ images.T).cpu()
    target = scores[torch.arange(len(texts)), torch.from_numpy(dev.caption_image)]
    ranks = (scores > target[:, None]).sum(dim=1) + 1
    return {f"recall@{k}": float((ranks <= k).float().mean()) for k in (1, 5, 10)} | {
        "median_rank": float(ranks.float().median())
    }


class Sampler:
    """Per-domain shuffled epochs and random caption choice, from one numpy Generator."""

    def __init__(self, domains: list[Domain], rng: np.random.Generator):
        self.domains, self.rng = domains, rng
        self.orders = [np.empty(0, np.int64) for _ in domains]

    def draw(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        domain = self.domains[d]
        while len(self.orders[d]) < domain.batch:
            self.orders[d] = np.concatenate([self.orders[d], self.rng.permutation(len(domain.images))])
        index, self.orders[d] = np.sort(self.orders[d][: domain.batch]), self.orders[d][domain.batch :]
        candidates = domain.caption_ids[index]
        counts = (candidates >= 0).sum(axis=1)
        choice = (self.rng.random(len(index)) * counts).astype(np.int64)
        return index, candidates[np.arange(len(index)), choice]


def lr_factor(step: int, steps: int, warmup: int, time_progress: float = 0.0) -> float:
    """Linear warmup, then cosine decay to zero by the last step, or by the end of the time
    budget when that comes first (`time_progress` = elapsed / budget)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, steps - warmup), time_progress)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_device(device: str) -> torch.device:
    """`auto` (CUDA when PyTorch sees a GPU, else CPU), `cpu` or `cuda`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: PyTorch sees no CUDA GPU (a CPU-only torch build, or no driver)")
    return torch.device(device)


def train(config: dict, data: TrainingData, dev: DevSet | None, out_dir: Path, steps: int | None = None,
          init: Path | None = None, device: str = "cpu") -> dict:
    """Run the training loop; returns the best dev metrics (or the last loss without dev data).

    init: a checkpoint to start from (a warm restart: a new warmup + cosine cycle on its weights).
    device: where the towers train (`resolve_device`); on CUDA the training images move to the GPU
    once and the random draws stay on the CPU, so both devices see the same batches and crops."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["threads"])
    steps = steps or config["steps"]
    size = config["image_size"]
    device = resolve_device(device)
    image_tower = ImageTower(config["dim"], tuple(config["widths"]), config["stem"]).to(device, memory_format=torch.channels_last)
    projection = TextProjection(config["dim"]).to(device)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / config["init_temperature"]), device=device))
    if init is not None:
        state = torch.load(init, map_location=device, weights_only=False)
        image_tower.load_state_dict(state["image_tower"])
        projection.load_state_dict(state["text_projection"])
        if "logit_scale" in state:
            logit_scale.data.fill_(state["logit_scale"])
        logger.info("initialised from %s (%s)", init, state["metrics"])
    ema_image, ema_projection = copy.deepcopy(image_tower), copy.deepcopy(projection)
    optimizer = torch.optim.AdamW(
        [
            {"params": image_tower.parameters(), "lr": config["lr"], "weight_decay": config["weight_decay"]},
            {"params": projection.parameters(), "lr": config["text_lr"], "weight_decay": config["weight_decay"]},
            {"params": [logit_scale], "lr": config["text_lr"], "weight_decay": 0.0},
        ]
    )
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    normalize = Normalizer(config["mean"], config["std"], device)
    sampler = Sampler(data.domains, np.random.default_rng(config["seed"]))
    generator = torch.Generator().manual_seed(config["seed"])
    text_vectors = torch.from_numpy(data.text_vectors).to(device)
    domain_images = [torch.from_numpy(np.array(d.images)).to(device) for d in data.domains]  # read once, on the device
    logger.info("training on %s", device)
    log = (out_dir / "log.jsonl").open("a")
    best: dict = {"recall@10": -1.0}
    budget = config.get("time_budget_minutes", 0) * 60
    start = time.time()

    def evaluate(step: int, loss: float) -> None:
        nonlocal best
        record = {"step": step, "loss": loss, "minutes": round((time.time() - start) / 60, 2),
                  "temperature": float(1 / logit_scale.detach().exp())}  # fmt: skip
        if dev is not None:
            record["dev_t2i"] = flickr_recall(ema_image, ema_projection, dev, normalize, size)
            if record["dev_t2i"]["recall@10"] > best["recall@10"]:
                best = record["dev_t2i"] | {"step": step}
                save_checkpoint(out_dir / "best.pt", config, ema_image, ema_projection, logit_scale, best)
        save_checkpoint(out_dir / "last.pt", config, ema_image, ema_projection, logit_scale, record)
        log.write(json.dumps(record) + "\n")
        log.flush()
        logger.info("%s", record)

    evaluate(0, float("nan"))
    losses: list[float] = []
    for step in range(steps):
        image_tower.train()
        factor = lr_factor(step, steps, config["warmup_steps"], (time.time() - start) / budget if budget else 0.0)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        batches, ids = [], []
        for d, domain in enumerate(data.domains):
            index, text_id = sampler.draw(d)
            images = domain_images[d][torch.from_numpy(index).to(device)]
            batches.append(random_resized_crops(images, size, domain.min_crop_scale, domain.flip, generator))
            ids.append(torch.from_numpy(text_id))
        text_ids = torch.cat(ids).to(device)
        image_emb = image_tower(normalize(torch.cat(batches)))
        text_emb = projection(text_vectors[text_ids])
        loss = contrastive_loss(image_emb, text_emb, text_ids, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logit_scale.clamp_(0, math.log(100))
            decay = min(config["ema_decay"], (1 + step) / (10 + step))
            for ema, live in ((ema_image, image_tower), (ema_projection, projection)):
                for e, p in zip(ema.parameters(), live.parameters()):
                    e.lerp_(p, 1 - decay)
                for e, b in zip(ema.buffers(), live.buffers()):
                    e.copy_(b)
        losses.append(loss.item())
        if (step + 1) % 10 == 0:
            logger.info("step %d/%d loss %.4f (%.1f s/step)", step + 1, steps, np.mean(losses[-10:]),
                        (time.time() - start) / (step + 1))  # fmt: skip
        out_of_time = budget and time.time() - start > budget
        if (step + 1) % config["eval_every"] == 0 or step + 1 == steps or out_of_time:
            evaluate(step + 1, float(np.mean(losses[-config["eval_every"]:])))
        if out_of_time:
            logger.warning("time budget of %s min reached at step %d of %d", config["time_budget_minutes"], step + 1, steps)
            break
    log.close()
    return best if dev is not None else {"loss": losses[-1]}


def save_checkpoint(path: Path, config: dict, image_tower, projection, logit_scale, metrics: dict) -> None:
    torch.save({"config": config, "image_tower": image_tower.state_dict(), "text_projection": projection.state_dict(),
                "logit_scale": float(logit_scale.detach()), "metrics": metrics}, path)  # fmt: skip


def load_checkpoint(path: str | Path) -> tuple[dict, ImageTower, TextProjection]:
    """(config, image tower, text projection) from a checkpoint written by `train`, in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = state["config"]
    image_tower = ImageTower(config["dim"], tuple(config["widths"]), config["stem"])
    image_tower.load_state_dict(state["image_tower"])
    projection = TextProjection(config["dim"])
    projection.load_state_dict(state["text_projection"])
    return config, image_tower.eval(), projection.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, required=True, help="run folder (log.jsonl, best.pt, last.pt)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with flickr8k/ and fashion/")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--steps", type=int, help="override the config's step count")
    parser.add_argument("--init", type=Path, help="start from this checkpoint (warm restart, e.g. a previous run's best.pt)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to train (auto: CUDA when PyTorch sees a GPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = json.loads(args.config.read_text())
    torch.set_num_threads(config["threads"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    data = build_training_data(config, args.data, args.cache)
    dev = build_flickr_dev(args.data, args.cache, config["image_size"])
    best = train(config, data, dev, args.out, args.steps, args.init, args.device)
    logger.info("best dev text->image: %s", best)


if __name__ == "__main__":
    main()
