"""Fixtures shared by the service, browser and fuzz tests: the tiny model and a tiny scene catalog.

The catalog is built by the demo's own code path (`cir demo`'s `build_scene_catalog`): D's scene
generator, C's setup and Ingestor, B's embedded engine and A's tiny model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from opensearch_cir.service import Settings

CATALOG_SCENES = 24
CATALOG_QUERIES = 3
INDEX = "cir-test"


@dataclass
class Catalog:
    settings: Settings
    encoder: Any
    client: Any
    scenes: Any  # cli.demo.SceneCatalog

    @property
    def records(self) -> list:
        return self.scenes.records

    def reference_png(self, query_number: int = 0) -> bytes:
        return self.scenes.image_path(self.scenes.queries[query_number].reference).read_bytes()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny-model"), phi=True), threads=1)


@pytest.fixture(scope="session")
def catalog(tmp_path_factory, tiny_encoder) -> Catalog:
    from opensearch_cir.cli.demo import build_scene_catalog
    from opensearch_cir.engines import EMBEDDED_SCHEME, connect

    data_dir = tmp_path_factory.mktemp("scene-catalog")
    engine_url = f"{EMBEDDED_SCHEME}{data_dir / 'engine'}"
    client = connect(engine_url)
    scenes = build_scene_catalog(client, INDEX, tiny_encoder, data_dir, n=CATALOG_SCENES, queries=CATALOG_QUERIES)
    assert scenes.report.failed == 0, scenes.report.failures
    settings = Settings(engine_url=engine_url, index=INDEX, media_roots=(str(scenes.image_dir),),
                        upload_dir=str(data_dir / "uploads"), request_timeout_s=60)
    return Catalog(settings=settings, encoder=tiny_encoder, client=client, scenes=scenes)
