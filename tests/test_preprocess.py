"""Image decoding and preprocessing: parity with transformers' processors, modes, typed errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.encoders.manifest import ImageSpec
from opensearch_cir.encoders.preprocess import ImagePreprocessor, load_image
from opensearch_cir.errors import ImageDecodeError, ImageTooLargeError

SIZES = [(640, 480), (333, 500), (224, 224), (97, 61), (1000, 225)]


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth structure plus noise, so resampling differences would show."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-30, 31, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def transformers_module():
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("processor_kwargs", [{}, {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}}])
def test_clip_preprocessing_matches_transformers(processor_kwargs, transformers_module, tmp_path):
    from opensearch_cir.encoders.export import _image_spec_from_processor

    processor = transformers_module.CLIPImageProcessorPil(**processor_kwargs)
    processor.save_pretrained(tmp_path)
    spec = _image_spec_from_processor(str(tmp_path))
    assert spec.resize == "shortest_edge" and spec.crop == "center"
    preprocess = ImagePreprocessor(spec)
    for seed, (width, height) in enumerate(SIZES):
        image = _photo(width, height, seed)
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        ours = preprocess(image)
        assert ours.shape == expected.shape == (3, 224, 224) and ours.dtype == np.float32
        assert np.abs(ours - expected).max() <= 1e-5, (width, height)


def test_siglip_preprocessing_matches_transformers(transformers_module, tmp_path):
    from opensearch_cir.encoders.export import _image_spec_from_processor

    processor = transformers_module.SiglipImageProcessorPil()
    processor.save_pretrained(tmp_path)
    spec = _image_spec_from_processor(str(tmp_path))
    assert (spec.resize, spec.size, spec.mean) == ("squash", 224, [0.5, 0.5, 0.5])
    preprocess = ImagePreprocessor(spec)
    for seed, (width, height) in enumerate(SIZES):
        image = _photo(width, height, seed)
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        assert np.abs(preprocess(image) - expected).max() <= 1e-5, (width, height)


def test_pad_square_keeps_aspect_with_pad_colour():
    spec = ImageSpec(size=32, resize="pad_square", resize_to=32, interpolation="nearest", mean=[0, 0, 0],
                     std=[1, 1, 1], rescale=1.0, pad_color=[10, 20, 30])
    wide = Image.new("RGB", (64, 32), (200, 100, 0))
    pixels = ImagePreprocessor(spec)(wide)
    assert pixels.shape == (3, 32, 32)
    assert pixels[:, 0, 16].tolist() == [10, 20, 30]  # top band is padding
    assert pixels[:, 16, 16].tolist() == [200, 100, 0]  # centre is the image


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    loaded = load_image(_encoded(image, "JPEG", exif=exif))
    assert loaded.size == (20, 40)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("L", (8, 8), 77), (77, 77, 77)),
        (lambda: Image.new("1", (8, 8), 1), (255, 255, 255)),
        (lambda: Image.new("RGBA", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),  # transparent → white
        (lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 255)), (10, 20, 30)),
        (lambda: Image.new("LA", (8, 8), (40, 255)), (40, 40, 40)),
        (lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), (255, 0, 0)),
        (lambda: Image.fromarray(np.full((8, 8), 65535, np.uint16)), (255, 255, 255)),
        (lambda: Image.fromarray(np.full((8, 8), 32896, np.uint16)), (128, 128, 128)),
    ],
    ids=["L", "1", "RGBA-transparent", "RGBA-opaque", "LA", "CMYK", "16bit-white", "16bit-mid"],
)
def test_modes_become_rgb(make, expected):
    loaded = load_image(make())
    assert loaded.mode == "RGB"
    assert loaded.getpixel((4, 4)) == expected


def test_encoded_modes_decode_to_rgb():
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 1
    sixteen_bit = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 255, 0))
    cases = [
        (_encoded(palette, "PNG"), (250, 10, 10)),
        (_encoded(transparent_palette, "PNG", transparency=1), (255, 255, 255)),
        (_encoded(palette, "GIF"), (250, 10, 10)),
        (_encoded(sixteen_bit, "PNG"), (255, 255, 255)),
        (_encoded(cmyk, "JPEG", quality=100), None),
    ]
    for data, expected in cases:
        loaded = load_image(data)
        assert loaded.mode == "RGB"
        if expected is not None:
            assert loaded.getpixel((4, 4)) == expected
    green = load_image(cases[-1][0]).getpixel((4, 4))
    assert green[1] > 200 and green[0] < 60 and green[2] < 60


def test_bad_inputs_raise_typed_errors(tmp_path):
    jpeg = _encoded(_photo(64, 64), "JPEG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    cases = {
        "corrupt": jpeg[:200] + bytes(range(256)) * 4,
        "truncated": jpeg[: len(jpeg) // 2],
        "empty bytes": b"",
        "empty file": empty,
        "not an image": text,
        "missing file": tmp_path / "missing.png",
    }
    for name, source in cases.items():
        with pytest.raises(ImageDecodeError) as info:
            load_image(source)
        if not isinstance(source, bytes):
            assert str(source) in str(info.value), name


def test_pixel_cap_is_checked_before_decoding():
    bomb = _encoded(Image.new("1", (10_000, 10_000)), "PNG")  # 100 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="100000000 pixels"):
        load_image(bomb)
    with pytest.raises(ImageTooLargeError):
        load_image(_photo(100, 100), max_pixels=5_000)
    assert load_image(_photo(100, 100), max_pixels=10_000).size == (100, 100)
