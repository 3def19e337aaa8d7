"""`cir setup --encoder-url ...` then composed searches with filters and each normalisation, against a
loopback stand-in of an OpenSearch 2.19, 3.0, 3.1 and 3.3 cluster (tests/standin_cluster.py: answers `GET /`
with its version and refuses what that version's plugins refuse), with the encoder service running
on loopback behind `CIR_API_KEY` and the cluster calling it the way ml-commons does.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image
from standin_cluster import StandinCluster
from test_service_support import png_bytes
from typer.testing import CliRunner

from opensearch_cir import dsl
from opensearch_cir.compose import CompositeQuery, Weights, search
from opensearch_cir.dialect import UnsupportedFeatureError, parse_version
from opensearch_cir.engines import connect
from opensearch_cir.ingest import Ingestor, Record

API_KEY = "s3cret-key"
INDEX = "cir-versions"
COLOURS = {"red": (220, 20, 20), "blue": (20, 40, 220), "green": (20, 180, 40), "black": (5, 5, 5)}


def png(rgb) -> bytes:
    return png_bytes(Image.new("RGB", (32, 32), rgb))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return folder, load_encoder(folder, threads=1)


@pytest.fixture(scope="module")
def encoder_service(model, tmp_path_factory):
    """`cir serve`'s app with an API key, on a loopback port (what the connector calls)."""
    import uvicorn

    from opensearch_cir.service import Settings, create_app

    folder = tmp_path_factory.mktemp("service")
    settings = Settings(engine_url=f"embedded://{folder / 'engine'}", index=INDEX, api_key=API_KEY,
                        upload_dir=str(folder / "uploads"))
    app = create_app(settings, client=connect(f"embedded://{folder / 'engine'}"), encoder=model[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def run_setup(cluster: StandinCluster, model_dir, encoder_url: str):
    from opensearch_cir.cli import app

    return CliRunner().invoke(app, ["setup", "--url", cluster.url, "--index", INDEX, "--model", str(model_dir),
                                    "--encoder-url", encoder_url])


@pytest.fixture()
def environment(monkeypatch):
    monkeypatch.setenv("CIR_API_KEY", API_KEY)
    for name in ("OPENSEARCH_URL", "CIR_OPENSEARCH_VERSION", "OPENSEARCH_USER", "OPENSEARCH_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("version", ["2.19.0", "3.0.0", "3.1.0", "3.3.0"])
def test_setup_then_composed_searches(version, model, encoder_service, environment, tmp_path):
    model_dir, encoder = model
    with StandinCluster(version, tmp_path / "cluster") as cluster:
        result = run_setup(cluster, model_dir, encoder_service)
        assert result.exit_code == 0, result.output
        assert f"cluster: OpenSearch {version}" in result.output and "ingest pipeline cir-embed put" in result.output
        old = parse_version(version) < (3, 0, 0)
        assert ("skipped search pipeline cir-z-score" in result.output) == old
        assert ("skip_existing" in result.output) == old
        assert set(cluster.search_pipelines) == set(dsl.PIPELINES) - ({"cir-z-score"} if old else set())

        client = connect(cluster.url)
        (model_id,) = cluster.models
        image = Image.open(io.BytesIO(png(COLOURS["red"])))
        b64 = base64.b64encode(png(COLOURS["red"])).decode()
        # ml-commons' parameters for an image-only input (neural query_image / text_image_embedding image)
        answer = client.ml.predict(algorithm_name="remote", model_id=model_id,
                                   body={"parameters": {"inputText": "null", "inputImage": b64}})
        vector = np.array(answer["inference_results"][0]["output"][0]["data"], np.float32)
        np.testing.assert_allclose(vector, encoder.encode_images([image])[0], atol=1e-5)

        blobs = {}
        with Ingestor(client, INDEX, encoder) as ingestor:
            for gender in ("Men", "Women"):
                for name, rgb in COLOURS.items():
                    blob = png(tuple(min(255, c + (9 if gender == "Women" else 0)) for c in rgb))
                    blobs[(gender, name)] = blob
                    ingestor.add(Record(image=blob, captions=[f"Brand {gender} {name} shirt"], uri=f"{gender}-{name}.png",
                                        metadata={"gender": gender}))
        client.indices.refresh(index=INDEX)

        equal = dict(bm25=1.0, image=1.0, caption=1.0)
        for normalization in ("min_max", "l2", "z_score", "rrf"):
            for weights in (Weights(normalization=normalization), Weights(normalization=normalization, **equal)):
                query = CompositeQuery(images=[blobs[("Men", "red")]], text="in blue instead", negative="green",
                                       filters={"metadata.gender": "Men"}, k=3, weights=weights)
                sent = len(cluster.requests)
                weighted_rrf = normalization == "rrf" and weights.bm25 != weights.image
                lacking = (old and normalization == "z_score") or (parse_version(version) < (3, 1, 0) and weighted_rrf)
                if lacking:
                    first = "3.0.0" if normalization == "z_score" else "3.1.0"
                    with pytest.raises(UnsupportedFeatureError, match=rf"needs OpenSearch {first}"):
                        search(client, INDEX, query, encoder, explain=True)
                    assert not any(path.endswith("/_search") for _, path in cluster.requests[sent:])
                    continue
                response = search(client, INDEX, query, encoder, explain=True)
                assert len(response) == 3 and all(hit.metadata["gender"] == "Men" for hit in response)
                assert response.rendered.excluded_ids[0] not in response.ids
                assert all(set(hit.sub_scores) == set(response.rendered.sub_queries) for hit in response)
                hybrid = response.rendered.body["query"]["hybrid"]
                assert ("filter" in hybrid) == (not old)
        assert cluster.refusals == []


def reason_of(call) -> str:
    from opensearchpy import RequestError

    with pytest.raises(RequestError) as info:
        call()
    return info.value.info["error"]["reason"]


def test_the_standin_refuses_what_the_old_version_refuses(tmp_path):
    """The stand-in is not lenient: the project's old, version-blind (3.x) bodies fail on 2.19."""
    from opensearch_cir.dsl.ml import ingest_pipeline_body

    with StandinCluster("2.19.0", tmp_path / "cluster") as cluster:
        client = connect(cluster.url)
        z_score = reason_of(lambda: client.search_pipeline.put(id="z", body=dsl.PIPELINES["cir-z-score"]))
        assert "normalization technique is not supported" in z_score
        weighted = reason_of(lambda: client.search_pipeline.put(id="w", body=dsl.rrf_pipeline(weights=[0.7, 0.3])))
        assert "supported parameters are [rank_constant]" in weighted
        skip = reason_of(lambda: client.ingest.put_pipeline(id="cir-embed", body=ingest_pipeline_body("m1")))
        assert "skip_existing" in skip
        body = dsl.hybrid_body([dsl.match_clause("caption", "red")], size=3, filter={"term": {"model_id": "x"}})
        assert "does not support [filter]" in reason_of(lambda: client.search(index="any", body=body))
        assert len(cluster.refusals) == 4


def test_the_service_answers_a_missing_feature_with_400(model, tmp_path, monkeypatch):
    """/search on a 2.19 cluster with z_score: a 400 naming 3.0.0, not a 500."""
    from fastapi.testclient import TestClient

    from opensearch_cir.admin import setup_index
    from opensearch_cir.service import Settings, create_app

    monkeypatch.delenv("CIR_OPENSEARCH_VERSION", raising=False)
    with StandinCluster("2.19.0", tmp_path / "cluster") as cluster:
        client = connect(cluster.url)
        setup_index(client, INDEX, model[1].manifest)
        with Ingestor(client, INDEX, model[1]) as ingestor:
            for name, rgb in COLOURS.items():
                ingestor.add(Record(image=png(rgb), captions=[f"a {name} shirt"], uri=f"{name}.png"))
        client.indices.refresh(index=INDEX)
        settings = Settings(engine_url=cluster.url, index=INDEX, upload_dir=str(tmp_path / "uploads"))
        service = TestClient(create_app(settings, client=client, encoder=model[1]), raise_server_exceptions=False)
        response = service.post("/search", data={"text": "a red shirt", "strategy": "hybrid",
                                                  "weights": '{"normalization": "z_score"}'})
        assert response.status_code == 400 and "needs OpenSearch 3.0.0" in response.json()["detail"], response.text
        ok = service.post("/search", data={"text": "a red shirt", "strategy": "hybrid", "weights": '{"normalization": "l2"}'})
        assert ok.status_code == 200 and ok.json()["results"], ok.text
