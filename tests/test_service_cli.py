"""`cir demo`, `cir serve` and `cir bench` through typer's CliRunner (tiny model, tiny catalog)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from opensearch_cir.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from opensearch_cir.encoders.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def test_demo_indexes_scenes_and_prints_composed_queries(tiny_model_dir, tmp_path):
    args = ["demo", "--model", str(tiny_model_dir), "--n", "20", "--queries", "2", "--data-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("modification:") == 2
    assert "indexed 24, skipped 0, failed 0" in result.output  # 20 scenes + 2 references + 2 targets
    assert "targets in the top 5 of 24 images, by strategy:" in result.output
    assert all(f"  {name}" in result.output for name in ("image_only", "text_only", "fusion", "hybrid"))
    assert len(list((tmp_path / "images").glob("*.png"))) == 24

    again = runner.invoke(app, args)  # idempotent: nothing re-indexed
    assert again.exit_code == 0 and "indexed 0, skipped 24" in again.output


def test_demo_on_a_folder_built_with_another_model_says_what_to_do(tiny_model_dir, tmp_path):
    from opensearch_cir.encoders.tiny import build_tiny_model

    base = ["demo", "--n", "3", "--queries", "1", "--data-dir", str(tmp_path / "demo")]
    assert runner.invoke(app, [*base, "--model", str(tiny_model_dir)]).exit_code == 0
    other = build_tiny_model(tmp_path / "other", dim=16)
    result = runner.invoke(app, [*base, "--model", str(other)])
    assert result.exit_code == 2 and "delete it, or pass another --data-dir" in result.output


def test_demo_without_a_model_says_what_to_do(tmp_path):
    result = runner.invoke(app, ["demo", "--model", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no model at" in result.output and "cir models" in result.output


def test_serve_builds_the_app_from_options_and_environment(tiny_model_dir, tmp_path, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    import logging
    from logging.handlers import QueueHandler

    served = {}

    def run(server, sockets=None):
        handlers = logging.getLogger("uvicorn.access").handlers
        served.update(app=server.config.app, host=server.config.host, port=server.config.port, access_handlers=handlers)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setenv("CIR_MAX_K", "7")
    result = runner.invoke(app, ["serve", "--model", str(tiny_model_dir), "--url", f"embedded://{tmp_path}",
                                 "--index", "cir-x", "--port", "8123", "--api-key", "k"])
    assert result.exit_code == 0, result.output
    assert served["port"] == 8123 and served["host"] == "127.0.0.1"
    assert [type(h).__bases__ for h in served["access_handlers"]] == [(QueueHandler,)]  # written off the event loop
    settings = served["app"].state.settings
    assert (settings.index, settings.max_k, settings.api_key) == ("cir-x", 7, "k")
    health = TestClient(served["app"]).get("/health").json()
    assert health["index"] == "cir-x" and health["model_id"] and health["index_exists"] is False


def test_serve_refuses_a_missing_model_before_listening(tmp_path):
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "nowhere"), "--url", f"embedded://{tmp_path}"])
    assert result.exit_code == 2 and "no model at" in result.output


@pytest.mark.parametrize("command", ["serve", "demo", "bench"])
def test_help_documents_the_options(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert {"serve": "--port", "demo": "--serve", "bench": "encode"}[command] in result.output


def test_bench_rejects_an_unknown_benchmark():
    result = runner.invoke(app, ["bench", "teleport"])
    assert result.exit_code == 2 and "encode" in result.output


def test_bench_runs_the_benchmark_script(capfd):
    from opensearch_cir.cli.bench import BENCHMARKS_DIR

    if not (BENCHMARKS_DIR / "engine.py").is_file():
        pytest.skip("benchmarks/engine.py is not in this checkout")
    result = runner.invoke(app, ["bench", "engine", "--", "--help"])
    assert result.exit_code == 0
    assert "usage: engine.py" in capfd.readouterr().out


def test_the_service_encoder_runs_each_call_on_encoder_threads_cores(tiny_model_dir):
    from opensearch_cir.encoders.batches import available_cores
    from opensearch_cir.service.backend import Backend
    from opensearch_cir.service.settings import Settings

    def side_by_side(settings):
        encoder = Backend(settings).encoder
        assert encoder._sessions["image"].get_session_options().intra_op_num_threads == 1  # a graph call: one core
        return encoder._runner.workers

    assert Settings().encoder_threads == 1 and side_by_side(Settings(model=str(tiny_model_dir))) == 1
    assert side_by_side(Settings.from_env({"CIR_ENCODER_THREADS": "0"}, model=str(tiny_model_dir))) == available_cores()
