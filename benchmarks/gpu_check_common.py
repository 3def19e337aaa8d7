"""Shared parts of the prepared GPU check (benchmarks/gpu_check.py): bookkeeping, inputs, the report.

A stage's part is `WORK/parts/STAGE.json`, rewritten after every result; `STAGE.rc` beside it is
the exit code benchmarks/gpu_check.sh saw, so a stage killed at its time limit is reported as timed
out with the results it had recorded by then.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL_GOAL, E2E_GOAL = 15_000, 4_000
_part: dict = {}


# -- bookkeeping ---------------------------------------------------------------------------------

def record(name: str, rate: float, *, batch: int | None = None, kind: str = "model", **extra) -> None:
    """Add one throughput (images/s) to this stage's part and rewrite it at once."""
    _part["results"].append({"name": name, "images_per_s": round(rate, 1), "batch": batch, "kind": kind} | extra)
    print(f"  {name:<52} {rate:>10,.0f} img/s" + (f"  batch {batch}" if batch else ""), flush=True)
    _save()


def note(**info) -> None:
    _part["info"].update(info)
    _save()


def begin(stage: str, work: Path) -> None:
    """Start this process's part for `stage` (status `running` until `end`)."""
    (work / "parts").mkdir(parents=True, exist_ok=True)
    _part.clear()
    _part.update(stage=stage, status="running", results=[], info={}, path=work / "parts" / f"{stage}.json")
    _save()


def end(status: str, reason: str | None = None) -> None:
    _part.update(status=status, **({"reason": reason} if reason else {}))
    _save()


def _save() -> None:
    path = _part["path"]
    path.write_text(json.dumps({k: v for k, v in _part.items() if k != "path"}, indent=1, default=str))


class Skip(Exception):
    """This stage does not apply here (the reason is recorded)."""


# -- shared inputs -------------------------------------------------------------------------------

def tiny_config():
    import transformers

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    return transformers.CLIPConfig(text_config=small, projection_dim=16,
                                   vision_config=small | dict(image_size=224, patch_size=32))


def hf_dir(args) -> Path:
    return args.work / "hf"


def onnx_dir(args) -> Path:
    return args.work / "onnx-fp32-fp16"


def image_tower(args, dtype, attention: str = "sdpa"):
    """The exported image tower (`export.hf_towers`) on the device in `dtype` with `attention`."""
    import torch
    import transformers

    from opensearch_cir.encoders.export import hf_towers

    model = transformers.CLIPModel.from_pretrained(hf_dir(args), dtype=dtype, attn_implementation=attention)
    return hf_towers(model.to(args.device).eval(), "clip")[0], torch.device(args.device)


def half(args):
    import torch

    return torch.float16 if args.device == "cuda" else torch.float32  # CPUs have no fast fp16 kernels


def device_pixels(args, batch: int, dtype):
    import torch

    generator = torch.Generator(device=args.device).manual_seed(batch)
    return torch.randn((batch, 3, 224, 224), generator=generator, device=args.device).to(dtype)


def model_only(tower, pixels):
    import torch

    def run():
        with torch.inference_mode():
            return tower(pixels).float().cpu()
    return run


def jpegs(args) -> list[bytes]:
    return [path.read_bytes() for path in sorted((args.work / "jpegs").glob("*.jpg"))]


def image_spec(args):
    """The ImageSpec the export writes for this checkpoint (CLIP's defaults if reading it fails here)."""
    from opensearch_cir.encoders.export import _image_spec_from_processor
    from opensearch_cir.encoders.manifest import ImageSpec
    from opensearch_cir.encoders.tiny import CLIP_MEAN, CLIP_STD

    try:
        return _image_spec_from_processor(str(hf_dir(args)))
    except Exception as exc:  # noqa: BLE001 - the decode numbers do not depend on it
        note(image_spec_error=f"{type(exc).__name__}: {str(exc)[:200]}; CLIP defaults used")
        return ImageSpec(size=224, resize="shortest_edge", resize_to=224, interpolation="bicubic",
                         mean=CLIP_MEAN, std=CLIP_STD)


def dtype_name(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1].replace("float16", "fp16").replace("float32", "fp32")


def min_cosine(a, b) -> float:
    a, b = (np.asarray(x, np.float64) for x in (a, b))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return round(float(np.sum(a * b, axis=1).min()), 5)


_decode_worker = {}


def init_decode_worker(spec) -> None:
    from opensearch_cir.encoders.preprocess import ImagePreprocessor

    _decode_worker["preprocess"] = ImagePreprocessor(spec)
    _decode_worker["reduced"] = ImagePreprocessor(spec, draft_margin=1.0)


def decode_on_cpu(data: bytes, reduced: bool = False) -> np.ndarray:
    """The project's PIL decode + resize/crop (`ImagePreprocessor.resize`) as `uint8[H, W, 3]`.

    `reduced` lets libjpeg decode at the smallest DCT scale that still covers the output (a draft
    margin of 1 instead of the project's 1.5): faster, and not quite the project's pixels."""
    from opensearch_cir.encoders.preprocess import load_image

    preprocess = _decode_worker["reduced" if reduced else "preprocess"]
    return np.asarray(preprocess.resize(load_image(data, draft=preprocess.draft_scale)), np.uint8)


# -- report --------------------------------------------------------------------------------------

def report(work: Path, out: Path, stages: Sequence[str]) -> dict:
    """Merge every stage's part into OUT/results.json and a table in OUT/results.md."""
    parts = {}
    for stage in stages:
        path, rc = work / "parts" / f"{stage}.json", work / "parts" / f"{stage}.rc"
        part = json.loads(path.read_text()) if path.is_file() else {"status": "not run", "results": [], "info": {}}
        if rc.is_file():
            code = rc.read_text().strip()
            part["exit_code"] = code
            if code in ("124", "137") and part["status"] == "running":
                part["status"] = "timed out"
            elif code != "0" and part["status"] == "running":
                part["status"] = f"crashed (exit {code})"
        parts[stage] = part
    rows = [row | {"stage": stage} for stage, part in parts.items() for row in part["results"]]
    best = {kind: max((r for r in rows if r["kind"] == kind), key=lambda r: r["images_per_s"], default=None)
            for kind in ("model", "e2e")}
    summary = {"goals": {"model_only_fp16": MODEL_GOAL, "end_to_end_from_jpeg": E2E_GOAL},
               "best_model_only": best["model"], "best_end_to_end": best["e2e"], "stages": parts}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    lines = ["# GPU check (benchmarks/gpu_check.sh)", ""]
    env = parts["env"]["info"]
    if env:
        lines.append(f"{env.get('gpu', 'no GPU')}; torch {env.get('torch')}, torchvision {env.get('torchvision')}, "
                     f"onnxruntime {env.get('onnxruntime')} {env.get('onnxruntime_providers', '')}; {env.get('cpus')} CPUs")
    else:
        lines.append("machine not described: the env stage did not run (a partial rerun)")
    for kind, goal, label in (("model", MODEL_GOAL, "model-only fp16"), ("e2e", E2E_GOAL, "end-to-end from JPEG")):
        top = best[kind]
        verdict = f"{top['images_per_s']:,.0f} img/s ({top['name']}): {'MET' if top['images_per_s'] >= goal else 'not met'}" if top else "no result"
        lines.append(f"- {label}, goal {goal:,} img/s: {verdict}")
    lines += ["", "| stage | approach | batch | images/s | ratio to goal |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        goal = E2E_GOAL if row["kind"] == "e2e" else MODEL_GOAL if row["kind"] == "model" else None
        ratio = f"{row['images_per_s'] / goal:.2f}x" if goal else ""
        lines.append(f"| {row['stage']} | {row['name']} | {row['batch'] or ''} | {row['images_per_s']:,.0f} | {ratio} |")
    lines += ["", "| stage | status | notes |", "| --- | --- | --- |"]
    for stage, part in parts.items():
        notes = "; ".join(f"{k}={v}" for k, v in part["info"].items() if k not in ("python",))
        lines.append(f"| {stage} | {part['status']}{': ' + part['reason'] if part.get('reason') else ''} | {notes[:600]} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return summary
