"""The prepared GPU check (benchmarks/gpu_check.sh + gpu_check.py) runs end to end on the CPU.

Device time is scarce (one call, 15 minutes a task), so every stage's Python runs here first on a
tiny random CLIP: a syntax or logic slip fails this test instead of a lent GPU's run. The stages run
in this process (one import of torch) rather than through the shell script, which is checked by
`bash -n` and its report logic below.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def load_check():
    """benchmarks/gpu_check.py as the module `gpu_check` (registered: the CPU pool pickles its functions)."""
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_shell_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_stage_runs_on_a_tiny_model_on_the_cpu(tmp_path):
    check = load_check()
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--work", str(work), "--out", str(out), "--device", "cpu", "--tiny", "--seconds", "0.05",
              "--batches", "4", "--workers", "2", "--decode-threads", "2"]
    codes, seconds = {}, {}
    for stage in check.STAGES:
        started = time.perf_counter()
        codes[stage] = check.main([stage, *common])
        seconds[stage] = round(time.perf_counter() - started, 1)
    print(seconds)
    assert all(code == 0 for code in codes.values()), codes
    check.main(["report", *common])
    results = json.loads((out / "results.json").read_text())
    stages = results["stages"]
    assert {stage: part["status"] for stage, part in stages.items()} == {
        stage: "skipped" if stage in ("cudagraph", "trt") else "ok" for stage in check.STAGES}
    names = {stage: [row["name"] for row in part["results"]] for stage, part in stages.items()}
    assert len(names["torch"]) == 3 and len(names["compile"]) == 1
    assert any("device pixels" in name for name in names["ort"]) and any("Encoder" in name for name in names["ort"])
    assert len(names["e2e_gpu"]) == 3 and len(names["e2e_cpu"]) == 2
    # the towers measured are the exported graph's, and the tensor preprocessing is the PIL one's
    assert stages["ort"]["info"]["onnx_fp32_cpu_vs_torch_min_cosine"] > 0.9999
    assert stages["e2e_gpu"]["info"]["pixels_vs_pil_grey_levels"]["p999"] <= 1.01
    best = results["best_model_only"]
    assert best["images_per_s"] == max(row["images_per_s"] for part in stages.values()
                                       for row in part["results"] if row["kind"] == "model")
    table = (out / "results.md").read_text()
    assert "model-only fp16, goal 15,000 img/s" in table and "end-to-end from JPEG, goal 4,000 img/s" in table


def test_report_names_a_stage_the_shell_timed_out(tmp_path):
    check = load_check()
    parts = tmp_path / "work" / "parts"
    parts.mkdir(parents=True)
    (parts / "compile.json").write_text(json.dumps({"stage": "compile", "status": "running", "info": {}, "results": [
        {"name": "torch.compile b1024", "images_per_s": 20000.0, "batch": 1024, "kind": "model"}]}))
    (parts / "compile.rc").write_text("124\n")
    (parts / "ort.json").write_text(json.dumps({"stage": "ort", "status": "running", "info": {}, "results": []}))
    (parts / "ort.rc").write_text("139\n")
    summary = check.report(tmp_path / "work", tmp_path, check.STAGES)
    assert summary["stages"]["compile"]["status"] == "timed out"
    assert summary["stages"]["ort"]["status"] == "crashed (exit 139)"
    assert summary["stages"]["torch"]["status"] == "not run"
    # a result recorded before the limit still counts
    assert summary["best_model_only"]["images_per_s"] == 20000.0
    markdown = (tmp_path / "results.md").read_text()
    assert "20,000 img/s (torch.compile b1024): MET" in markdown
    # a partial rerun without the env stage says so, rather than claiming the machine has no GPU
    assert "env stage did not run" in markdown and "no GPU" not in markdown


def test_a_byte_level_clip_vocabulary_needs_no_open_clip(tmp_path, monkeypatch):
    """The GPU machine has no open_clip: the check's checkpoint then gets CLIP's byte symbols, no merges."""
    import importlib.util

    transformers = pytest.importorskip("transformers")
    from opensearch_cir.encoders.clip_bpe import write_clip_bpe_files
    from opensearch_cir.errors import CIRError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "open_clip" else real_find_spec(name, *rest))
    with pytest.raises(CIRError, match="open_clip"):
        write_clip_bpe_files(tmp_path / "merged", num_merges=10)
    write_clip_bpe_files(tmp_path / "bytes", num_merges=0)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tmp_path / "bytes")
    ids = tokenizer("a red dress")["input_ids"]
    assert len(tokenizer) == 514 and len(ids) == 2 + 1 + 3 + 5  # start, a, r-e-d, d-r-e-s-s, end
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|startoftext|>")
