"""The `/embed` contract for every request shape ml-commons really sends through our connector.

How a request body is made (upstream, read at tags 2.19.0.0 and 3.3.0.0):
- neural-search `ml/MLCommonsClientAccessor.java` (createMLMultimodalInput): docs = [text, image?],
  the text element null when only an image is given (text_image_embedding with only `image` in its
  field map, a `neural` query with only `query_image`);
- ml-commons `MultiModalConnectorPreProcessFunction.java`: parameters inputText = docs[0],
  inputImage = docs[1] when present; `StringUtils.convertScriptStringToJsonString` gson-serialises
  a non-String value, so a null text becomes the 4-character string "null";
- ml-commons `HttpConnector.java` (createPayload, fillNullParameters): a *missing* parameter written
  as `"${parameters.x:-null}"` becomes JSON null, a present one is substituted inside the quotes.

`connector_request` below follows those three steps with our connector's `request_body`, so these
tests send exactly what a cluster sends (test 1 of issue 11: image-only vectors were
norm(w·E_I + w'·E_T("null")) before).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_service_support import catalog, png_bytes, tiny_encoder  # noqa: F401  (fixtures)

from opensearch_cir.compose import Weights
from opensearch_cir.dsl.ml import connector_body
from opensearch_cir.service import create_app


def connector_request(text: str | None, image: str | None) -> dict:
    """The JSON body ml-commons posts to /embed for a text and/or image input (see module docstring)."""
    docs = [text] + ([image] if image is not None else [])  # MLCommonsClientAccessor
    parameters = {"inputText": docs[0] if isinstance(docs[0], str) else json.dumps(docs[0])}  # gson: null -> "null"
    if len(docs) > 1:
        parameters["inputImage"] = docs[1]
    template = connector_body("http://encoder:8000")["actions"][0]["request_body"]
    for name in ("inputText", "inputImage"):  # fillNullParameters, then the ${parameters.x} substitution
        placeholder = f'"${{parameters.{name}:-null}}"'
        template = template.replace(placeholder, "null" if name not in parameters else json.dumps(parameters[name]))
    return json.loads(template)


@pytest.fixture()
def client(catalog) -> TestClient:
    return TestClient(create_app(catalog.settings, client=catalog.client, encoder=catalog.encoder),
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def red_png() -> tuple[Image.Image, str]:
    image = Image.new("RGB", (40, 30), (200, 20, 20))
    return image, base64.b64encode(png_bytes(image)).decode()


def embedding(client, body) -> np.ndarray:
    response = client.post("/embed", json=body)
    assert response.status_code == 200, response.text
    return np.array(response.json()["embedding"], np.float32)


def test_the_shapes_ml_commons_sends(red_png):
    _, encoded = red_png
    assert connector_request("a red circle", None) == {"inputText": "a red circle", "inputImage": None}
    assert connector_request(None, encoded) == {"inputText": "null", "inputImage": encoded}
    assert connector_request("blue", encoded) == {"inputText": "blue", "inputImage": encoded}


def test_image_only_request_is_the_image_vector(client, catalog, red_png):
    """Row 1: an image-only request carries inputText "null"; the vector must be E_I(image) alone."""
    image, encoded = red_png
    expected = catalog.encoder.encode_images([image])[0]
    np.testing.assert_allclose(embedding(client, connector_request(None, encoded)), expected, atol=1e-5)


def test_text_only_request_is_the_text_vector(client, catalog):
    expected = catalog.encoder.encode_texts(["a red circle"])[0]
    np.testing.assert_allclose(embedding(client, connector_request("a red circle", None)), expected, atol=1e-6)


def test_both_is_the_fusion_vector(client, catalog, red_png):
    image, encoded = red_png
    alpha = Weights().alpha
    fused = (1 - alpha) * catalog.encoder.encode_images([image])[0] + alpha * catalog.encoder.encode_texts(["blue"])[0]
    np.testing.assert_allclose(embedding(client, connector_request("blue", encoded)), fused / np.linalg.norm(fused), atol=1e-5)


@pytest.mark.parametrize("absent", [{"inputText": "null"}, {"inputText": ""}, {"inputText": None}, {}])
def test_every_absent_text_form_gives_the_image_vector(client, catalog, red_png, absent):
    image, encoded = red_png
    expected = catalog.encoder.encode_images([image])[0]
    np.testing.assert_allclose(embedding(client, {**absent, "inputImage": encoded}), expected, atol=1e-5)


@pytest.mark.parametrize("absent", [{"inputImage": "null"}, {"inputImage": ""}, {"inputImage": None}, {}])
def test_every_absent_image_form_gives_the_text_vector(client, catalog, absent):
    expected = catalog.encoder.encode_texts(["green"])[0]
    np.testing.assert_allclose(embedding(client, {"inputText": "green", **absent}), expected, atol=1e-6)


@pytest.mark.parametrize("body", [{"inputText": "null", "inputImage": None}, {"inputText": "null"},
                                  {"inputText": "", "inputImage": "null"}])
def test_nothing_given_is_refused(client, body):
    response = client.post("/embed", json=body)
    assert response.status_code == 422 and "give inputText, inputImage" in response.text
