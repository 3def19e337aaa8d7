"""The ONNX Runtime encoder on the tiny model: contract, batching, truncation, typed errors."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.encoders import Manifest, load_encoder
from opensearch_cir.encoders.tiny import TINY_CONTEXT_LENGTH, build_tiny_model
from opensearch_cir.errors import CIRError, ImageDecodeError, ImageTooLargeError, InputError, ManifestError, ModelNotFoundError


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), dim=24)


@pytest.fixture(scope="module")
def encoder(tiny_dir):
    return load_encoder(tiny_dir, threads=1, batch_size=2)


def _image(colour, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(sum(colour))
    pixels = np.clip(np.array(colour)[None, None, :] + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def test_tiny_model_folder_is_a_valid_model(tiny_dir, encoder):
    manifest = Manifest.load(tiny_dir, verify=True)
    assert manifest.embedding_dim == encoder.dim == 24
    assert encoder.model_id == manifest.model_id == "tiny-random-24"
    assert (encoder.device, encoder.precision) == ("cpu", "fp32")


def test_outputs_are_float32_unit_vectors(encoder):
    images = encoder.encode_images([_image((250, 0, 0)), _image((0, 0, 250))])
    texts = encoder.encode_texts(["a red shirt", "a blue jacket", ""])
    for vectors, count in ((images, 2), (texts, 3)):
        assert vectors.shape == (count, 24) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert images[0] @ images[1] < 0.99  # different inputs, different vectors
    assert texts[0] @ texts[1] < 0.99
    assert encoder.encode_images([]).shape == encoder.encode_texts([]).shape == (0, 24)


def test_batch_equals_one_by_one(encoder):
    images = [_image((c, 255 - c, 60)) for c in (0, 60, 120, 180, 240)]
    texts = ["red", "a much longer description of a green coat with a hood", "blue jeans", "x", "shoes"]
    one_by_one = np.concatenate([encoder.encode_images([image]) for image in images])
    np.testing.assert_allclose(encoder.encode_images(images), one_by_one, atol=1e-6)
    one_by_one = np.concatenate([encoder.encode_texts([text]) for text in texts])
    np.testing.assert_allclose(encoder.encode_texts(texts), one_by_one, atol=1e-6)


def test_paths_bytes_and_pil_images_agree(encoder, tmp_path):
    image = _image((30, 200, 90))
    path = tmp_path / "picture.png"
    image.save(path)
    data = path.read_bytes()
    vectors = encoder.encode_images([image, path, str(path), data, bytearray(data)])
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], 5, axis=0), atol=1e-6)
    pixels = np.stack([encoder.preprocess(image)])
    np.testing.assert_allclose(encoder.encode_pixels(pixels), vectors[:1], atol=1e-6)


def test_bad_images_raise_errors_naming_the_item(encoder, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        encoder.encode_images([_image((1, 2, 3)), broken])
    small_cap = load_encoder(encoder.model_dir, threads=1)
    small_cap.max_pixels = 100
    with pytest.raises(ImageTooLargeError):
        small_cap.encode_images([_image((1, 2, 3))])


def test_long_text_is_truncated_keeping_end_token_and_logged(encoder, caplog):
    long_text = " ".join(["striped"] * 50)
    with caplog.at_level(logging.DEBUG, logger="opensearch_cir.encoders.runtime"):
        tokens = encoder.tokenize([long_text, "red"])
        vector = encoder.encode_texts([long_text])
    ids = tokens["input_ids"]
    assert ids.shape == (2, TINY_CONTEXT_LENGTH)
    sep = encoder.tokenizer.token_to_id("[SEP]")
    assert ids[0, -1] == sep and ids[1, 2] == sep and ids[1, 3] == encoder.manifest.text.pad_id
    assert tokens["attention_mask"][1].tolist() == [1, 1, 1] + [0] * (TINY_CONTEXT_LENGTH - 3)
    assert "truncated" in caplog.text
    assert np.isfinite(vector).all()


def test_bad_text_and_pixel_inputs(encoder):
    with pytest.raises(InputError, match="strings"):
        encoder.encode_texts(["ok", None])
    with pytest.raises(InputError, match=r"\[N, 3, 32, 32\]"):
        encoder.encode_pixels(np.zeros((2, 3, 16, 16), np.float32))


def test_missing_model_says_how_to_export(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="cir models export"):
        load_encoder(tmp_path / "nowhere")
    monkeypatch.setenv("CIR_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="opensearch-cir\\[export\\]"):
        load_encoder("not-installed")


def test_missing_precision_and_cuda_are_reported(tiny_dir):
    with pytest.raises(ManifestError, match="no int8 image graph"):
        load_encoder(tiny_dir, precision="int8")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(CIRError, match="onnxruntime-gpu"):
            load_encoder(tiny_dir, device="cuda")


def test_encoder_is_found_by_name_under_models_dir(tmp_path, monkeypatch):
    build_tiny_model(tmp_path / "small", dim=8)
    monkeypatch.setenv("CIR_MODELS_DIR", str(tmp_path))
    assert load_encoder("small", threads=1).dim == 8
    image = io.BytesIO()
    _image((5, 5, 5)).save(image, "JPEG")
    assert load_encoder("small", threads=1).encode_images([image.getvalue()]).shape == (1, 8)
