"""The Ray Data ingestion job with 2 local workers (skips when Ray is not installed: it is the
optional `distributed` extra; the in-process multi-worker path is tested in test_speed_paths)."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")


def test_ray_job_with_two_workers_indexes_everything_once(tmp_path):
    from PIL import Image

    from opensearch_cir.admin import setup_index
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model
    from opensearch_cir.engines.embedded import EmbeddedClient
    from opensearch_cir.ingest.distributed import ingest_with_ray

    model = build_tiny_model(tmp_path / "tiny")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (24, 24), (i * 40, 30, 30)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"square {i}")
    Image.new("RGB", (24, 24), (0, 30, 30)).save(folder / "copy-of-img0.png")  # same bytes as img0
    (folder / "broken.png").write_bytes(b"not a png")
    client = EmbeddedClient(tmp_path / "engine")
    setup_index(client, "cir-ray", load_encoder(model).manifest)
    try:
        report = ingest_with_ray(client, "cir-ray", folder, model=str(model), workers=2, block_rows=4)
        assert report.input == 8 and report.failed == 1 and report.failures[0].stage == "decode"
        assert client.count(index="cir-ray")["count"] == 6
        assert report.indexed + report.skipped == 7  # the copy: skipped in its block, or re-indexed under the same id
        again = ingest_with_ray(client, "cir-ray", folder, model=str(model), workers=2, block_rows=4)
        assert again.failed == 1 and client.count(index="cir-ray")["count"] == 6
    finally:
        ray.shutdown()
