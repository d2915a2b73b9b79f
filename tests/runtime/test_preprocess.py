"""Preprocessing built from the bundle's spec, and the fast decode path for large photos, on real sample photos."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion.runtime import BundleError, InvalidImageError
from fashion.runtime.bundle import load_manifest
from fashion.runtime.preprocess import (
    FAST_DECODE_GAP,
    PREPROCESSING_SPEC,
    Preprocessor,
    build_preprocessor,
    preprocess,
    to_batch,
)

HEIGHT, WIDTH = 128, 96  # the shipped model's input: the fast path's reductions are realistic at this size


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:6]


@pytest.fixture(scope="module")
def photo(photos) -> Image.Image:
    return Image.open(photos[0]).convert("RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


FAST_ENCODE = {"JPEG": {"quality": 90}, "PNG": {"compress_level": 1}, "WEBP": {"quality": 90, "method": 0}}


def upscaled(image: Image.Image, size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    return encode(image.resize(size, Image.Resampling.BICUBIC), fmt, **FAST_ENCODE[fmt])


@pytest.fixture(scope="module")
def big_jpeg(photo) -> bytes:
    return upscaled(photo, (2400, 3200))


# -- the spec drives the pipeline ---------------------------------------------------------------------------------


def test_default_spec_is_the_documented_contract(photos):
    spec = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    assert (spec.fit, spec.resample, spec.pad_value, spec.layout) == (
        "pad_to_aspect_then_resize",
        "bilinear",
        (255, 255, 255),
        "NHWC",
    )
    for path in photos:
        out = spec(path)
        assert out.shape == (HEIGHT, WIDTH, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, preprocess(path, HEIGHT, WIDTH))
    batch = spec.to_batch([spec(p) for p in photos[:2]])
    np.testing.assert_array_equal(batch, to_batch([spec(p) for p in photos[:2]]))
    assert batch.dtype == np.float32 and batch.max() <= 255


def test_typed_manifest_spec_is_accepted(tiny_bundle, photos):
    bundle = load_manifest(tiny_bundle, verify_hashes=False)
    spec = bundle.manifest.preprocessing
    built = build_preprocessor(spec, *bundle.input_size)
    np.testing.assert_array_equal(built(photos[0]), preprocess(photos[0], *bundle.input_size))


def test_spec_values_change_the_output(photos):
    wide = Image.open(photos[1]).convert("RGB").resize((200, 80))  # far from the model's aspect
    base = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    padded = base(wide)
    assert (padded[0] == 255).all()  # white bands above the photo
    cropped = build_preprocessor({**PREPROCESSING_SPEC, "fit": "center_crop_then_resize"}, HEIGHT, WIDTH)(wide)
    squashed = build_preprocessor({**PREPROCESSING_SPEC, "fit": "resize"}, HEIGHT, WIDTH)(wide)
    bicubic = build_preprocessor({**PREPROCESSING_SPEC, "resample": "bicubic"}, HEIGHT, WIDTH)(wide)
    black = build_preprocessor({**PREPROCESSING_SPEC, "pad_value": 0}, HEIGHT, WIDTH)(wide)
    for other in (cropped, squashed, bicubic, black):
        assert other.shape == padded.shape and not np.array_equal(other, padded)
    assert (black[0] == 0).all()


def test_range_mean_std_and_layout_shape_the_batch(photos):
    unit = build_preprocessor({**PREPROCESSING_SPEC, "range": [0, 1]}, HEIGHT, WIDTH)
    image = unit(photos[0])
    np.testing.assert_allclose(unit.to_batch([image]), image[None] / 255.0, rtol=1e-6)
    spec = {
        **PREPROCESSING_SPEC,
        "range": [0, 1],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "layout": "NCHW",
    }
    timm_like = build_preprocessor(spec, HEIGHT, WIDTH)
    batch = timm_like.to_batch([image, image])
    assert batch.shape == (2, 3, HEIGHT, WIDTH)
    expected = (image[..., 0] / 255.0 - 0.485) / 0.229
    np.testing.assert_allclose(batch[1, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("color", "BGR"),
        ("fit", "zoom"),
        ("resample", "magic"),
        ("dtype", "uint8"),
        ("layout", "CHW"),
        ("range", [1, 0]),
        ("range", "0-255"),
        ("pad_value", 300),
        ("pad_value", [1, 2]),
        ("exif_transpose", "yes"),
        ("std", [0, 1, 1]),
        ("crop_pct", 0.875),
    ],
)
def test_unsupported_spec_values_are_bundle_errors(key, value):
    with pytest.raises(BundleError, match=key):
        build_preprocessor({**PREPROCESSING_SPEC, key: value}, HEIGHT, WIDTH)


# -- the fast path -------------------------------------------------------------------------------------------------


# PNG and WebP at 1200x1600: reduced by Image.reduce(4); JPEGs by the DCT draft (1/8, 1/4 with 1/2 reduce)
@pytest.mark.parametrize(
    ("size", "fmt"),
    [
        ((2400, 3200), "JPEG"),
        ((1080, 1440), "JPEG"),
        ((1200, 1600), "PNG"),
        ((1200, 1600), "WEBP"),
        ((3000, 2250), "JPEG"),
    ],
)
def test_fast_path_matches_the_exact_path_on_real_upscaled_photos(photo, size, fmt):
    data = upscaled(photo, size, fmt)
    exact = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False)(data).astype(int)
    fast = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)(data).astype(int)
    diff = np.abs(exact - fast)
    # a few grey levels at worst, a fraction of one on average; padding edges (landscape) land where they should
    assert diff.max() <= 4 and diff.mean() < 0.25, (diff.max(), diff.mean())


def _cut_out(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A product photo on a transparent background with a soft edge, as catalogue PNGs come."""
    big = photo.resize(size, Image.Resampling.BICUBIC).convert("RGBA")
    alpha = np.zeros(size[::-1], dtype=np.uint8)
    w, h = size
    alpha[h // 8 : h - h // 8, w // 6 : w - w // 6] = 255
    alpha[h // 8 - 40 : h // 8, w // 6 : w - w // 6] = 128  # a half-transparent band
    rgba = np.asarray(big).copy()
    rgba[..., 3] = alpha
    rgba[alpha == 0, :3] = (0, 255, 0)  # colour under full transparency must not leak into the average
    return Image.fromarray(rgba, "RGBA")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "P+transparency", "L", "I;16"])
def test_fast_path_reduces_before_the_colour_work_and_still_matches_the_exact_path(photo, mode):
    cut = _cut_out(photo, (1200, 1600))
    if mode == "LA":
        image = cut.convert("LA")
    elif mode == "L":
        image = cut.convert("RGB").convert("L")
    elif mode == "I;16":  # a 16-bit scan: the full range maps onto 0..255
        image = Image.fromarray(np.asarray(cut.convert("RGB").convert("L"), dtype=np.uint16) * 257)
    elif mode == "P":
        image = cut.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode == "P+transparency":
        image = cut.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = image.getpixel((0, 0))  # the corner colour, outside the product
    else:
        image = cut
    data = encode(image, "PNG")
    exact = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False)(data).astype(int)
    # Pillow's fast path (libvips, where installed, decodes PNG with a smaller box: tests/runtime/test_vips_decode.py)
    fast_pre = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="pillow")
    assert fast_pre.load(data).size == (300, 400)  # Image.reduce(4) took place
    diff = np.abs(exact - fast_pre(data).astype(int))
    # dithered palette pixels jump by a palette step between neighbours: box vs bilinear averages differ more
    worst = 6 if mode.startswith("P") else 4
    assert diff.max() <= worst and diff.mean() < 0.25, (diff.max(), diff.mean())
    if mode in ("RGBA", "P+transparency"):
        assert exact[..., 1].max() <= 255 and fast_pre(data)[0, 0].tolist() == [255, 255, 255]  # white, not green


def test_reduced_decode_only_for_large_photos(photo, big_jpeg):
    fast = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    exact = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False)
    big = big_jpeg
    assert exact.load(big).size == (2400, 3200)
    reduced = fast.load(big)
    assert reduced.size == (300, 400)  # JPEG DCT decode at 1/8: 25x the input becomes 3.1x
    assert reduced.width / WIDTH >= FAST_DECODE_GAP
    png = replace(fast, decoder="pillow").load(upscaled(photo, (1200, 1600), "PNG"))
    assert png.size == (300, 400)  # full decode, then Image.reduce(4)
    # an image under 2 x gap x the input is left alone, bit for bit
    medium = upscaled(photo, (int(WIDTH * 2 * FAST_DECODE_GAP) - 8, int(HEIGHT * 2 * FAST_DECODE_GAP) - 8))
    assert fast.load(medium).size == exact.load(medium).size
    np.testing.assert_array_equal(fast(medium), exact(medium))
    # nearest-neighbour specs never take the fast path: reduction would change which pixel is picked
    nearest = build_preprocessor({**PREPROCESSING_SPEC, "resample": "nearest"}, HEIGHT, WIDTH)
    assert nearest.load(big).size == (2400, 3200)


def test_fast_path_honours_exif_rotation(photo):
    upright = photo.resize((1800, 2400), Image.Resampling.BICUBIC)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=90, exif=exif.tobytes())
    fast = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    assert fast.load(data).size == (450, 600)  # portrait after turning upright (DCT 1/4)
    expected = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False)(encode(upright, "JPEG", quality=90))
    assert np.abs(fast(data).astype(int) - expected.astype(int)).mean() < 1.0


def test_fast_path_keeps_the_bomb_check():
    header = Preprocessor(height=HEIGHT, width=WIDTH)
    huge = encode(Image.new("L", (1, 1)), "PNG")
    # patch the IHDR size to 9000 x 9000 (81 MP) and fix its CRC: only the header says it is huge
    import struct
    import zlib

    ihdr = b"IHDR" + struct.pack(">II", 9000, 9000) + huge[24:29]
    data = huge[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + huge[33:]
    with pytest.raises(InvalidImageError, match="pixel limit"):
        header(data)


def test_header_checks_keep_their_import_path():
    """Reading the input and the header checks moved to image_header; callers still import them from here."""
    import importlib

    from fashion.runtime import image_header

    preprocess = importlib.import_module("fashion.runtime.preprocess")  # the package exports a function of that name
    for name in ("ImageSource", "MAX_IMAGE_PIXELS", "_describe", "_read", "_check_size", "_jpeg_for_pillow"):
        assert getattr(preprocess, name) is getattr(image_header, name), name
