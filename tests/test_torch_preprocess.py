"""The PyTorch preprocessing path (encoders.torch_preprocess) against the PIL one, on the CPU.

nvJPEG decoding needs a GPU and torchvision (benchmarks/gpu_check.py compares it there); here the
decode goes through PIL and the resize / crop / pad / normalise arithmetic is compared exactly.
"""

import io

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from opensearch_cir.encoders.manifest import ImageSpec  # noqa: E402
from opensearch_cir.encoders.preprocess import ImagePreprocessor, load_image  # noqa: E402
from opensearch_cir.encoders.tiny import CLIP_MEAN, CLIP_STD  # noqa: E402
from opensearch_cir.encoders.torch_preprocess import TorchImagePreprocessor  # noqa: E402
from opensearch_cir.errors import ImageDecodeError  # noqa: E402


def photo(width, height, seed=0, fmt="JPEG", mode="RGB"):
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(coarse, np.int16) + rng.integers(-20, 21, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def spec(**changes):
    base = dict(size=224, resize="shortest_edge", resize_to=224, interpolation="bicubic", mean=CLIP_MEAN, std=CLIP_STD)
    return ImageSpec(**(base | changes))


def grey_levels(a, b, image_spec):
    """|a - b| in 8-bit grey levels (undoing mean/std and the rescale)."""
    std = np.asarray(image_spec.std, np.float32).reshape(1, 3, 1, 1)
    return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)) * std / image_spec.rescale


@pytest.mark.parametrize("image_spec", [
    spec(),
    spec(interpolation="bilinear"),
    spec(resize="squash"),
    spec(resize="pad_square", pad_color=[255, 0, 128]),
    spec(size=64, resize_to=72),
], ids=["clip-bicubic", "bilinear", "squash", "pad-square", "resize-then-crop"])
def test_matches_the_pil_path_within_one_grey_level(image_spec):
    items = [photo(640, 480, 1), photo(375, 500, 2), photo(500, 375, 3), photo(640, 480, 4), photo(120, 90, 5, "PNG")]
    reference = np.stack([ImagePreprocessor(image_spec)(load_image(item)) for item in items])
    pixels = TorchImagePreprocessor(image_spec, device="cpu")(items)
    assert pixels.shape == reference.shape and pixels.dtype == torch.float32
    diff = grey_levels(pixels.numpy(), reference, image_spec)
    # PIL rounds to 8 bits between its two passes: upscaling overshoots differ by up to 3 levels, rarely
    assert diff.mean() < 0.25 and np.quantile(diff, 0.999) <= 1.01 and diff.max() <= 3.01, (diff.mean(), diff.max())


def test_nearest_picks_the_same_source_pixels_almost_everywhere():
    image_spec = spec(interpolation="nearest")
    items = [photo(640, 480, 1), photo(375, 500, 2)]
    reference = np.stack([ImagePreprocessor(image_spec)(load_image(item)) for item in items])
    diff = grey_levels(TorchImagePreprocessor(image_spec, device="cpu")(items).numpy(), reference, image_spec)
    assert (diff > 1.01).mean() < 0.01


def test_smaller_than_the_crop_is_zero_padded_like_pil():
    image_spec = spec(size=64, resize_to=48, crop="center")  # 100x60 -> 80x48 -> 64x64 with 8-row bands
    item = photo(100, 60, 7)
    reference = ImagePreprocessor(image_spec)(load_image(item))[None]
    pixels = TorchImagePreprocessor(image_spec, device="cpu")([item]).numpy()
    assert np.array_equal(pixels[..., :8, :], reference[..., :8, :])  # the black bands, exactly
    assert np.array_equal(pixels[..., -8:, :], reference[..., -8:, :])
    assert grey_levels(pixels, reference, image_spec).max() <= 2.01


def test_half_precision_output_and_order_kept_across_size_groups():
    image_spec = spec()
    items = [photo(640, 480, 1), photo(300, 400, 2), photo(640, 480, 3)]
    full = TorchImagePreprocessor(image_spec, device="cpu")(items)
    half = TorchImagePreprocessor(image_spec, device="cpu", dtype=torch.float16)(items)
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), full, atol=1e-2)
    for index, item in enumerate(items):  # batching by size does not reorder rows
        single = TorchImagePreprocessor(image_spec, device="cpu")([item])[0]
        assert torch.equal(single, full[index])


def test_grayscale_and_exif_rotated_images_are_upright_rgb():
    image_spec = spec(size=32, resize_to=32)
    gray = photo(64, 48, 3, mode="L")
    rotated = Image.open(io.BytesIO(photo(64, 48, 4)))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    rotated.save(buffer, "JPEG", exif=exif.tobytes())
    items = [gray, buffer.getvalue()]
    reference = np.stack([ImagePreprocessor(image_spec)(load_image(item)) for item in items])
    pixels = TorchImagePreprocessor(image_spec, device="cpu")(items).numpy()
    assert grey_levels(pixels, reference, image_spec).max() <= 2.01


def test_bad_input_raises_the_typed_errors_of_the_pil_path():
    preprocess = TorchImagePreprocessor(spec(), device="cpu")
    with pytest.raises(ImageDecodeError):
        preprocess([b"not an image"])
    with pytest.raises(ImageDecodeError):
        preprocess([photo(64, 48)[:100]])
    assert preprocess.decoder == "pil"
