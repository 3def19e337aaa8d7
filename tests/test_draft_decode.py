"""JPEGs decoded at a reduced DCT scale (`load_image(draft=ImagePreprocessor.draft_scale)`): the scale
chosen keeps the resize's margin, the result stays close to a full decode, other formats and the
exact path are untouched, and the table-based normalisation equals the plain formula."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from opensearch_cir.encoders.manifest import ImageSpec
from opensearch_cir.encoders.preprocess import DCT_SCALES, DRAFT_MARGIN, ImagePreprocessor, drafted_source, load_image
from opensearch_cir.errors import ImageDecodeError

SIDES = [1, 31, 64, 95, 96, 97, 143, 144, 191, 192, 224, 256, 375, 500, 768, 769, 1000, 4000, 6000]
STORED = [(224, 224), (500, 375), (375, 500), (97, 61), (1000, 225), (1600, 1200), (161, 600)]


def _spec(resize: str, **overrides) -> ImageSpec:
    options = dict(size=64, resize=resize, resize_to=64, interpolation="bilinear", mean=[0.5] * 3,
                   std=[0.25] * 3, rescale=1 / 255, crop="center" if resize == "shortest_edge" else "none",
                   pad_color=[255, 255, 255])
    return ImageSpec(**{**options, **overrides})


SPECS = {
    "pad_square": _spec("pad_square"),
    "squash": _spec("squash", size=48),
    "shortest_edge": _spec("shortest_edge", size=32, resize_to=40, interpolation="bicubic"),
}


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth structure plus mild noise (a photo's spectrum, roughly)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-8, 9, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("rule", SPECS)
def test_draft_scale_is_the_largest_that_keeps_the_margin(rule):
    preprocess = ImagePreprocessor(SPECS[rule])
    for width in SIDES:
        for height in SIDES:
            scale = preprocess.draft_scale(width, height)
            assert scale in (1, *DCT_SCALES)
            assert scale == preprocess.draft_scale(height, width)  # an EXIF turn changes nothing
            decoded = (math.ceil(width / scale), math.ceil(height / scale))  # what libjpeg returns
            if scale > 1:
                assert preprocess.reduction(*decoded) >= preprocess.reduction(width, height) / scale >= DRAFT_MARGIN
            if scale < max(DCT_SCALES):  # the next scale would break the margin
                assert preprocess.reduction(width, height) / (2 * scale) < DRAFT_MARGIN, (width, height, scale)


def test_reduction_follows_each_resize_rule():
    assert ImagePreprocessor(SPECS["pad_square"]).reduction(500, 375) == 500 / 64  # the longer side becomes 64
    assert ImagePreprocessor(SPECS["squash"]).reduction(500, 375) == 375 / 48  # both sides become 48
    assert ImagePreprocessor(SPECS["shortest_edge"]).reduction(500, 375) == 375 / 40  # the shorter becomes 40
    assert ImagePreprocessor(SPECS["pad_square"]).draft_scale(224, 224) == 2  # Flickr8k's 224 px: 112 px, 1.75 per pixel
    assert ImagePreprocessor(SPECS["pad_square"]).draft_scale(500, 375) == 4  # Flickr8k originals: 125 px, 1.95


@pytest.mark.parametrize("rule", SPECS)
def test_jpegs_decode_at_the_chosen_scale(rule):
    preprocess = ImagePreprocessor(SPECS[rule])
    for seed, (width, height) in enumerate(STORED):
        data = _jpeg(_photo(width, height, seed))
        scale = preprocess.draft_scale(width, height)
        decoded = load_image(data, draft=preprocess.draft_scale)
        assert decoded.mode == "RGB" and decoded.size == (math.ceil(width / scale), math.ceil(height / scale))
        assert preprocess.reduction(*decoded.size) >= DRAFT_MARGIN or scale == 1
        assert load_image(data).size == (width, height)  # without `draft`: full size
        assert np.array_equal(preprocess.load(data), preprocess(decoded))  # what the encoder and ingestion call


@pytest.mark.parametrize("rule", SPECS)
def test_reduced_decode_stays_close_to_a_full_decode(rule):
    preprocess = ImagePreprocessor(SPECS[rule])
    level = 1 / 255 / 0.25  # one 8-bit level after normalisation
    for seed, (width, height) in enumerate(STORED):
        data = _jpeg(_photo(width, height, seed))
        full, reduced = preprocess(load_image(data)), preprocess(load_image(data, draft=preprocess.draft_scale))
        assert full.shape == reduced.shape
        difference = np.abs(full - reduced) / level
        # a pasted image one pixel off, or a partial last pixel taken for whole, gives 3 / 12 / 20 here
        assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 6 and difference.max() <= 10, (width, height)


@pytest.mark.parametrize("mode, options", [("L", {}), ("CMYK", {}), ("RGB", {"progressive": True}), ("RGB", {"subsampling": 0})],
                         ids=["grayscale", "cmyk", "progressive", "4:4:4"])
def test_jpeg_variants_decode_reduced_with_their_geometry(mode, options):
    preprocess = ImagePreprocessor(SPECS["pad_square"])
    data = _jpeg(_photo(500, 375).convert(mode), **options)
    reduced = load_image(data, draft=preprocess.draft_scale)
    assert reduced.mode == "RGB" and reduced.size == (125, 94) and drafted_source(reduced) == (500, 375, 4)
    assert np.abs(preprocess(reduced) - preprocess(load_image(data))).mean() < 1 / 255 / 0.25
    with pytest.raises(ImageDecodeError):  # a truncated file still fails at the reduced scale
        load_image(data[: len(data) // 2], draft=preprocess.draft_scale)


def test_flickr8k_image_vectors_match_a_full_decode(shared_data):
    from opensearch_cir.datasets.flickr8k import Flickr8k
    from opensearch_cir.encoders import load_encoder

    encoder = load_encoder(None, threads=1)
    blobs = [blob for _, (_, blob) in zip(range(64), Flickr8k(shared_data / "flickr8k", "train").iter_images())]
    exact = ImagePreprocessor(encoder.manifest.image, draft_margin=math.inf)
    full = encoder.encode_pixels(np.stack([exact(load_image(blob, draft=exact.draft_scale)) for blob in blobs]))
    reduced = encoder.encode_images(blobs)  # the default: decoded at 1/2 (112 px for a 64 px input)
    assert {load_image(blob, draft=encoder.preprocess.draft_scale).size for blob in blobs} == {(112, 112)}
    cosines = np.sum(full * reduced, axis=1)
    assert cosines.min() > 0.99 and cosines.mean() > 0.999, (cosines.min(), cosines.mean())


def test_other_formats_and_the_exact_path_decode_at_full_size():
    fast, exact = ImagePreprocessor(SPECS["pad_square"]), ImagePreprocessor(SPECS["pad_square"], draft_margin=math.inf)
    photo = _photo(1200, 900)
    for fmt in ("PNG", "WEBP", "GIF"):
        buffer = io.BytesIO()
        photo.save(buffer, fmt)
        assert load_image(buffer.getvalue(), draft=fast.draft_scale).size == (1200, 900), fmt
    assert exact.draft_scale(6000, 4000) == 1
    assert load_image(_jpeg(photo), draft=exact.draft_scale).size == (1200, 900)
    assert load_image(_jpeg(photo), draft=fast.draft_scale).size == (150, 113)
    with pytest.raises(ValueError, match="draft_margin"):
        ImagePreprocessor(SPECS["pad_square"], draft_margin=0.5)


def test_exif_turn_applies_to_reduced_decodes_and_spares_the_callers_image():
    preprocess = ImagePreprocessor(SPECS["pad_square"])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = _jpeg(_photo(448, 224), exif=exif)
    turned = load_image(data, draft=preprocess.draft_scale)
    assert turned.size == (56, 112) and drafted_source(turned) == (224, 448, 4)  # 1/4 of 448 x 224, upright
    level = 1 / 255 / 0.25
    assert np.abs(preprocess(turned) - preprocess(load_image(data))).mean() < level
    opened = Image.open(io.BytesIO(data))
    assert load_image(opened).size == (224, 448) and opened.size == (448, 224)  # a copy is turned
    # a turned image whose sides 1/4 does not divide would move its partial pixels to the top or
    # left: it is decoded at the largest scale that divides both (here none)
    odd = load_image(_jpeg(_photo(450, 225), exif=exif), draft=preprocess.draft_scale)
    assert odd.size == (225, 450) and drafted_source(odd) is None
    assert drafted_source(turned.crop((0, 0, 50, 100))) is None  # cropped since: its own geometry


def _plain(spec: ImageSpec, image: Image.Image) -> np.ndarray:
    """The preprocessing written out plainly: pad on a canvas (even when square), then the formula."""
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[spec.interpolation]
    if spec.resize == "pad_square":
        side = max(image.size)
        canvas = Image.new("RGB", (side, side), tuple(spec.pad_color))
        canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = canvas.resize((spec.size, spec.size), resample)
    else:
        image = ImagePreprocessor(spec).resize(image)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    return (np.asarray(image, dtype=np.float32).transpose(2, 0, 1) * np.float32(spec.rescale) - mean) / std


@pytest.mark.parametrize("rule", SPECS)
def test_normalisation_table_equals_the_formula_exactly(rule):
    spec = _spec(rule, mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
    preprocess = ImagePreprocessor(spec)
    rng = np.random.default_rng(7)
    for width, height in [(64, 64), (224, 224), (300, 200), (90, 301), (17, 5)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ours, plain = preprocess(image), _plain(spec, image)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == plain.shape
        assert np.array_equal(ours, plain), (rule, width, height)
