"""setup_index: idempotent create/upgrade of template, index and pipelines; refuses another model's index."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from opensearch_cir import admin, dsl
from opensearch_cir.errors import IndexMismatchError
from test_ingest import InMemoryClient

MODEL = SimpleNamespace(model_id="tiny-random-32", embedding_dim=32)


def test_creates_then_changes_nothing():
    client = InMemoryClient()
    first = admin.setup_index(client, "cir-a", MODEL)
    assert first.index_action == "created"
    assert first.pipelines == dict.fromkeys(dsl.PIPELINES, "created")
    mapping = client.mappings["cir-a"]
    assert mapping["_meta"]["cir"] == {"model_id": "tiny-random-32", "dimension": 32}
    assert mapping["properties"]["caption_vector"]["dimension"] == 32
    template = client.templates["cir-template-cir-a"]
    assert template["index_patterns"] == ["cir-a"] and template["priority"] == admin.TEMPLATE_PRIORITY
    again = admin.setup_index(client, "cir-a", MODEL)
    assert again.index_action == "unchanged" and set(again.pipelines.values()) == {"unchanged"}


def test_refuses_an_index_of_another_model():
    client = InMemoryClient()
    admin.setup_index(client, "cir-a", MODEL)
    with pytest.raises(IndexMismatchError, match="32-dimensional vectors .* makes 64-dimensional"):
        admin.setup_index(client, "cir-a", SimpleNamespace(model_id="tiny-random-32", embedding_dim=64))
    with pytest.raises(IndexMismatchError, match="built with model 'tiny-random-32', not 'clip-b32'"):
        admin.setup_index(client, "cir-a", SimpleNamespace(model_id="clip-b32", embedding_dim=32))


def test_upgrades_an_older_index_and_updates_changed_pipelines():
    client = InMemoryClient()
    body = admin.index_body(MODEL)
    del body["mappings"]["properties"]["caption_vector"], body["mappings"]["properties"]["model_id"]
    client.indices.create(index="cir-old", body=body)
    client.search_pipeline.put(id="cir-rrf", body=dsl.rrf_pipeline(rank_constant=10))
    report = admin.setup_index(client, "cir-old", MODEL)
    assert report.index_action == "upgraded" and report.added_fields == ["caption_vector", "model_id"]
    assert client.mappings["cir-old"]["properties"]["caption_vector"]["dimension"] == 32
    assert report.pipelines["cir-rrf"] == "updated" and client.pipelines["cir-rrf"] == dsl.PIPELINES["cir-rrf"]


def test_an_engine_without_put_mapping_says_to_recreate():
    from opensearch_cir.errors import CIRError

    client = InMemoryClient()
    body = admin.index_body(MODEL)
    del body["mappings"]["properties"]["model_id"]
    client.indices.create(index="cir-old", body=body)
    del client.indices.put_mapping
    with pytest.raises(CIRError, match=r"lacks \['model_id'\] .* re-create it"):
        admin.setup_index(client, "cir-old", MODEL, pipelines={})


def test_default_pipeline_setting_and_check_index_model():
    client = InMemoryClient()
    with pytest.raises(ValueError, match="unknown search pipeline 'cir-nope'"):
        admin.setup_index(client, "cir-b", MODEL, default_pipeline="cir-nope")
    admin.setup_index(client, "cir-b", MODEL, default_pipeline="cir-rrf", pipelines={"cir-rrf": dsl.PIPELINES["cir-rrf"]})
    assert list(client.pipelines) == ["cir-rrf"]
    assert admin.index_model(client.mappings["cir-b"]) == ("tiny-random-32", 32)
    assert admin.check_index_model(client, "cir-b", MODEL)["_meta"]["cir"]["dimension"] == 32


def test_embedded_engine_setup_and_hybrid_search_with_each_pipeline(tmp_path):
    """setup_index on B's embedded engine, then every shipped pipeline ranks the matching image first."""
    import io

    from PIL import Image

    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.ingest import Record, ingest

    encoder = load_encoder(build_tiny_model(tmp_path / "tiny"), threads=1, device="cpu")
    client = EmbeddedClient(tmp_path / "engine")
    try:
        assert admin.setup_index(client, "cir-e", encoder.manifest).index_action == "created"
        assert admin.setup_index(client, "cir-e", encoder.manifest).index_action == "unchanged"
        records = []
        for colour in ("red", "green", "blue", "yellow"):
            buffer = io.BytesIO()
            Image.new("RGB", (24, 24), colour).save(buffer, format="PNG")
            records.append(Record(buffer.getvalue(), captions=[f"a {colour} square"], metadata={"colour": colour}))
        assert ingest(client, "cir-e", encoder, records).indexed == 4
        vector = encoder.encode_texts(["a red square"])[0]
        queries = [dsl.match_clause("caption", "red"), dsl.knn_clause("image_vector", vector, 4), dsl.knn_clause("caption_vector", vector, 4)]
        body = dsl.hybrid_body(queries, size=4, pagination_depth=4)
        for name, pipeline in dsl.PIPELINES.items():
            dsl.validate_request("search", body, pipeline=pipeline)
            hits = client.search(index="cir-e", body=body, params={"search_pipeline": name})["hits"]["hits"]
            assert hits[0]["_source"]["metadata"]["colour"] == "red", name
            assert "image_vector" not in hits[0]["_source"]
        with pytest.raises(IndexMismatchError):
            admin.setup_index(client, "cir-e", SimpleNamespace(model_id="other", embedding_dim=encoder.dim))
    finally:
        client.close()


def test_setup_cli_then_ingest_cli(tmp_path, monkeypatch):
    """`cir setup` and `cir ingest` end to end on the in-memory client and the tiny model."""
    import io

    from PIL import Image
    from typer.testing import CliRunner

    from opensearch_cir.cli import app
    from opensearch_cir.cli import ingest as ingest_cli
    from opensearch_cir.cli import setup as setup_cli
    from opensearch_cir.encoders.tiny import build_tiny_model

    client = InMemoryClient()
    monkeypatch.setattr(setup_cli, "connect_from_options", lambda *a, **k: client)
    monkeypatch.setattr(ingest_cli, "connect_from_options", lambda *a, **k: client)
    model = str(build_tiny_model(tmp_path / "tiny"))
    runner = CliRunner()
    result = runner.invoke(app, ["setup", "--index", "cir-cli", "--model", model])
    assert result.exit_code == 0, result.output
    assert "index cir-cli: created" in result.output and "search pipeline cir-rrf: created" in result.output

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, colour in enumerate(("red", "green", "blue")):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
        (folder / f"{i}.png").write_bytes(buffer.getvalue())
    (folder / "bad.png").write_bytes(b"nope")
    errors = tmp_path / "errors.jsonl"
    args = ["ingest", str(folder), "--index", "cir-cli", "--model", model, "--errors", str(errors), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # one input failed
    assert "input 4: indexed 3, skipped 0, failed 1" in result.output
    assert errors.read_text().count("\n") == 1 and "bad.png" in errors.read_text()
    result = runner.invoke(app, [*args, "--resume"])
    assert "indexed 0, skipped 3, failed 1" in result.output
    assert len(client.indices_store["cir-cli"]) == 3
    other = str(build_tiny_model(tmp_path / "tiny64", dim=64))
    result = runner.invoke(app, ["ingest", str(folder), "--index", "cir-cli", "--model", other, "--no-setup"])
    assert result.exit_code == 2 and "64-dimensional" in result.output
