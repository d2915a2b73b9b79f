"""The libvips decoder of large photos against the Pillow exact path, on real upscaled sample photos.

Every format and mode goes through libvips (checked with a spy on ``vips_decode.decode``, the real function
still running) and must match the exact path as closely as the Pillow fast path does. Without pyvips these
tests skip, except the fallback ones, which run in a process where pyvips cannot be imported.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion.runtime import Classifier, InvalidImageError, vips_decode
from fashion.runtime.preprocess import FAST_DECODE_GAP, LOSSLESS_GAP, PREPROCESSING_SPEC, build_preprocessor

HEIGHT, WIDTH = 128, 96
ROOT = Path(__file__).resolve().parents[2]

needs_vips = pytest.mark.skipif(not vips_decode.available(), reason="pyvips not installed (pip install '.[fast]')")


@pytest.fixture(scope="module")
def photo(sample_dir) -> Image.Image:
    return Image.open(sorted((sample_dir / "images").glob("*.jpg"))[0]).convert("RGB")


@pytest.fixture
def vips_calls(monkeypatch) -> list[str]:
    """The formats ``vips_decode.decode`` was called with (the real decoder still runs)."""
    calls: list[str] = []
    real = vips_decode.decode

    def spy(data, fmt, *args, **kwargs):
        calls.append(fmt)
        return real(data, fmt, *args, **kwargs)

    monkeypatch.setattr(vips_decode, "decode", spy)
    return calls


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def cut_out(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A product on a transparent background with a half-transparent band; green under full transparency."""
    rgba = np.asarray(photo.resize(size, Image.Resampling.BICUBIC).convert("RGBA")).copy()
    w, h = size
    alpha = np.zeros((h, w), dtype=np.uint8)
    alpha[h // 8 : h - h // 8, w // 6 : w - w // 6] = 255
    alpha[h // 8 - 40 : h // 8, w // 6 : w - w // 6] = 128
    rgba[..., 3] = alpha
    rgba[alpha == 0, :3] = (0, 255, 0)  # must not leak into the average
    return Image.fromarray(rgba, "RGBA")


def variant(photo: Image.Image, mode: str, size: tuple[int, int] = (1200, 1600)) -> bytes:
    """``photo`` at ``size`` as a file of ``mode`` (format-mode)."""
    big = photo.resize(size, Image.Resampling.BICUBIC)
    cut = cut_out(photo, size)
    if mode == "PNG-RGB":
        return encode(big, "PNG", compress_level=1)
    if mode == "PNG-L":
        return encode(big.convert("L"), "PNG", compress_level=1)
    if mode == "PNG-P":
        return encode(big.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    if mode == "PNG-P+transparency":
        image = cut.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = image.getpixel((0, 0))
        return encode(image, "PNG")
    if mode == "PNG-RGBA":
        return encode(cut, "PNG", compress_level=1)
    if mode == "PNG-LA":
        return encode(cut.convert("LA"), "PNG", compress_level=1)
    if mode == "PNG-I;16":
        return encode(Image.fromarray(np.asarray(big.convert("L"), dtype=np.uint16) * 257), "PNG")
    if mode == "PNG-RGB16":  # 16 bits per channel: Pillow keeps the high byte, libvips scales by 1/257
        return _png_rgb16(np.asarray(big, dtype=np.uint16) * 257)
    if mode == "WEBP-RGB":
        return encode(big, "WEBP", quality=90, method=0)
    if mode == "WEBP-RGBA":
        return encode(cut, "WEBP", lossless=True, method=0)
    if mode == "JPEG-RGB":
        return encode(big, "JPEG", quality=90)
    if mode == "JPEG-L":
        return encode(big.convert("L"), "JPEG", quality=90)
    raise ValueError(mode)


def _png_rgb16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of HxWx3 (RGB) or HxWx4 (RGBA) pixels (Pillow cannot write 16 bits per channel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, bands = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if bands == 3 else 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


def exact(data) -> np.ndarray:
    return build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False, decoder="pillow")(data).astype(int)


# -- parity with the Pillow exact path ----------------------------------------------------------------------------


MODES = [
    "PNG-RGB",
    "PNG-L",
    "PNG-P",
    "PNG-P+transparency",
    "PNG-RGBA",
    "PNG-LA",
    "PNG-I;16",
    "PNG-RGB16",
    "WEBP-RGB",
    "WEBP-RGBA",
    "JPEG-RGB",
    "JPEG-L",
]


@needs_vips
@pytest.mark.parametrize("mode", MODES)
def test_libvips_matches_the_exact_path_per_mode(photo, mode, vips_calls):
    data = variant(photo, mode)
    # PNG box-reduced by 4 as WebP and JPEG are (the default leaves PNG at full size here: see the next test)
    vips = replace(
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="libvips"), lossless_gap=FAST_DECODE_GAP
    )
    pillow_fast = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="pillow")
    reference = exact(data)
    got = vips(data).astype(int)
    assert vips_calls == [mode.split("-")[0]]  # libvips decoded it (no silent fallback to Pillow)
    diff = np.abs(got - reference)
    fast_diff = np.abs(pillow_fast(data).astype(int) - reference)
    # as close to the exact path as Pillow's own fast path (dithered palettes jump a palette step between pixels)
    worst = 6 if mode == "PNG-P" else 4
    assert diff.max() <= worst and diff.mean() < 0.25, (diff.max(), diff.mean())
    assert diff.mean() <= fast_diff.mean() + 0.15, (diff.mean(), fast_diff.mean())
    if "RGBA" in mode or "transparency" in mode or mode == "PNG-LA":
        assert got[0, 0].tolist() == [255, 255, 255]  # transparent corner: white, no green from under it


@needs_vips
def test_png_leaves_lossless_gap_times_the_input_and_comes_closer_to_the_exact_path(photo, vips_calls):
    vips = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="libvips")
    boxed_by_8 = replace(vips, lossless_gap=FAST_DECODE_GAP)  # the rule before: as WebP and JPEG
    data = encode(cut_out(photo, (2400, 3200)), "PNG", compress_level=1)
    reduced = vips.load(data)
    assert reduced.size == (600, 800)  # 25x the input: a box of 4 (the JPEG/WebP gap would take 8)
    assert reduced.width / WIDTH >= LOSSLESS_GAP and boxed_by_8.load(data).size == (300, 400)
    reference = exact(data)
    closer = np.abs(vips(data).astype(int) - reference)
    before = np.abs(boxed_by_8(data).astype(int) - reference)
    assert closer.max() <= 1 and closer.mean() < 0.6 * before.mean(), (closer.mean(), before.mean())
    # under 2 x LOSSLESS_GAP x the input: decoded at full size, then the exact path's own resize: the same pixels
    for mode in ("PNG-RGB", "PNG-RGBA", "PNG-LA"):
        data = variant(photo, mode, (1080, 1440))  # 11.25x the input
        assert vips.load(data).size == (1080, 1440)
        np.testing.assert_array_equal(vips(data), exact(data))
    assert vips.load(variant(photo, "WEBP-RGB")).size == (300, 400)  # WebP keeps the JPEG/WebP gap
    assert vips_calls == ["PNG"] * 10 + ["WEBP"]  # libvips decoded every one (no fallback to Pillow)


def _box_reference(pixels: np.ndarray, factor: int, peak: float, pad: tuple[int, int, int]) -> np.ndarray:
    """The exact (float64) value of each reduced pixel: the box mean of the premultiplied colour and the alpha
    (a box cut by the right or bottom edge repeats the last column or row, as libvips' ``ceil`` shrink does),
    alpha laid on ``pad`` after it, grey spread to RGB, on the 0-255 scale; unrounded."""
    x = pixels.astype(np.float64)
    alpha = x.shape[-1] in (2, 4)
    if alpha:
        x = np.concatenate([x[..., :-1] * x[..., -1:] / peak, x[..., -1:]], axis=-1)
    h, w, bands = x.shape
    rows, cols = -(-h // factor), -(-w // factor)
    x = np.pad(x, ((0, rows * factor - h), (0, cols * factor - w), (0, 0)), mode="edge")
    mean = x.reshape(rows, factor, cols, factor, bands).mean(axis=(1, 3))
    colour = mean[..., :-1] if alpha else mean
    if alpha:
        colour = colour + np.asarray(pad, dtype=np.float64) * peak / 255.0 * (1.0 - mean[..., -1:] / peak)
    return np.broadcast_to(colour, (rows, cols, 3)) * 255.0 / peak


@needs_vips
@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "RGB16", "RGBA16"])
def test_reduction_is_the_premultiplied_box_mean_rounded_half_to_even(mode, factor):
    rng = np.random.default_rng(factor)
    h, w = 1021, 37  # boxes cut by both edges at factors 2, 3 and 4; several strips in the calling thread
    bands = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2, "RGB16": 3, "RGBA16": 4}[mode]
    wide = mode.endswith("16")
    pixels = rng.integers(0, 65536 if wide else 256, (h, w, bands), dtype=np.uint16 if wide else np.uint8)
    if bands in (2, 4):
        pixels[: h // 3, ..., -1] = 0  # fully transparent rows: their colour must not count
        pixels[h // 3 : h // 2, ..., -1] = 65535 if wide else 255
    if wide:
        data = _png_rgb16(pixels)
    else:
        data = encode(
            Image.fromarray(pixels[..., 0] if bands == 1 else pixels, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[bands]),
            "PNG",
        )
    pad = (30, 144, 255)  # not grey: a grey image with alpha comes out RGB
    got, scale = vips_decode.decode(data, "PNG", (w, h), factor, 1, pad)
    expected = _box_reference(pixels, factor, 65535.0 if wide else 255.0, pad)
    assert scale == (factor, factor) and got.dtype == np.uint8 and got.shape == expected.shape
    off = got.astype(np.float64) - np.rint(expected)  # rint: half to even
    # libvips works in float32: a value within ~1e-5 of a half may round the other way, nothing else may differ
    assert np.abs(off).max() <= 1 and (off == 0).mean() > 0.999, (np.abs(off).max(), (off != 0).mean())
    # unbiased: rounding every exact half up (a quarter of all 2x2 means) would add 1/8 on average
    assert abs((got - expected).mean()) < 0.03
    if bands in (2, 4):
        np.testing.assert_array_equal(got[: h // (3 * factor)], np.broadcast_to(pad, got[: h // (3 * factor)].shape))


@needs_vips
@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_libvips_honours_exif_orientation(photo, fmt, orientation, vips_calls):
    upright = photo.resize((1200, 1600), Image.Resampling.BICUBIC)
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(turn[orientation])  # what a camera writes with this orientation
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"JPEG": {"quality": 90}, "PNG": {"compress_level": 1}, "WEBP": {"quality": 90, "method": 0}}[fmt]
    data = encode(stored, fmt, exif=exif.tobytes(), **options)
    vips = replace(
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="libvips"), lossless_gap=FAST_DECODE_GAP
    )
    assert vips.load(data).size == (300, 400)  # portrait, upright, reduced by 4
    assert vips_calls == [fmt]
    diff = np.abs(vips(data).astype(int) - exact(data))
    assert diff.max() <= 4 and diff.mean() < 0.25, (diff.max(), diff.mean())


@needs_vips
def test_landscape_padding_lands_where_the_exact_path_puts_it(photo, vips_calls):
    # 4000x3000 on a 96x128 (portrait) input: white bands above and below, their edges on the same rows
    data = encode(photo.resize((4000, 3000), Image.Resampling.BICUBIC), "WEBP", quality=90, method=0)
    got = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)(data).astype(int)
    assert vips_calls == ["WEBP"]
    reference = exact(data)
    assert np.abs(got - reference).max() <= 4
    band = (reference == 255).all(axis=(1, 2))
    np.testing.assert_array_equal((got == 255).all(axis=(1, 2))[:20], band[:20])


@needs_vips
def test_small_photos_and_the_exact_path_stay_with_pillow(photo, vips_calls):
    small = encode(photo.resize((300, 400)), "PNG")  # under 2 x gap x the input: no reduction, Pillow
    auto = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    np.testing.assert_array_equal(auto(small), exact(small))
    big = variant(photo, "PNG-RGB")
    build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False)(big)
    assert vips_calls == []
    # auto: PNG and WebP through libvips, JPEG and AVIF with Pillow (as fast or faster there)
    assert auto.decoder_for("PNG").startswith("libvips") and auto.decoder_for("WEBP").startswith("libvips")
    assert auto.decoder_for("JPEG").startswith("Pillow") and auto.decoder_for("AVIF").startswith("Pillow")


# -- header checks before any pixel is decoded ---------------------------------------------------------------------


def _huge_png() -> bytes:
    """A 1x1 PNG whose IHDR says 9000 x 9000 (81 MP): only the header is huge."""
    small = encode(Image.new("RGB", (1, 1)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", 9000, 9000) + small[24:29]
    return small[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + small[33:]


@needs_vips
def test_bomb_check_comes_before_libvips_decodes(vips_calls):
    with pytest.raises(InvalidImageError, match="9000x9000 pixels exceeds the 50,000,000-pixel limit"):
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="libvips")(_huge_png())
    assert vips_calls == []


# -- HEIC / AVIF through libheif ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def avif(photo) -> bytes:
    if not vips_decode.available():
        pytest.skip("pyvips not installed")
    vips = vips_decode._pyvips()
    big = photo.resize((1200, 1600), Image.Resampling.BICUBIC)
    image = vips.Image.new_from_memory(np.asarray(big).tobytes(), 1200, 1600, 3, "uchar")
    try:
        return image.heifsave_buffer(compression="av1", Q=90, effort=0)
    except vips.Error as exc:
        pytest.skip(f"this libvips cannot write AVIF: {exc}")


def _heic_branded(avif: bytes) -> bytes:
    """The AVIF file with a HEIC ``ftyp`` box (brands heic, mif1): a HEIF file Pillow's plugins do not open,
    libheif does (its item is still AV1: pyvips-binary's libheif has no HEVC encoder to write a real HEIC)."""
    size = int.from_bytes(avif[:4], "big")
    ftyp = avif[4:size].replace(b"avif", b"mif1").replace(b"ftypmif1", b"ftypheic", 1)
    return avif[:4] + ftyp + avif[size:]


def test_avif_through_libvips_matches_pillow(avif, vips_calls):
    assert Image.open(io.BytesIO(avif)).format == "AVIF"  # Pillow reads it too: the reference
    got = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="libvips")(avif).astype(int)
    assert vips_calls == ["AVIF"]
    diff = np.abs(got - exact(avif))
    assert diff.max() <= 4 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_heif_pillow_cannot_open_goes_through_libheif(avif, vips_calls, tiny_bundle):
    heic = _heic_branded(avif)
    with pytest.raises(Exception, match="cannot identify"):
        Image.open(io.BytesIO(heic))
    auto = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    assert auto.decoder_for("HEIC").startswith("libvips")
    assert auto.load(heic).size == (300, 400)
    diff = np.abs(auto(heic).astype(int) - exact(avif))
    assert diff.max() <= 4 and diff.mean() < 0.3
    # the exact path decodes it at full size through libheif too (Pillow cannot)
    full = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, fast=False)
    assert full.load(heic).size == (1200, 1600)
    assert vips_calls == ["HEIF", "HEIF", "HEIF"]
    with Classifier.load(tiny_bundle) as clf:
        assert clf.predict(heic).heads["articleType"].label
    # forced to Pillow, it is what it was: not a recognised format
    with pytest.raises(InvalidImageError, match="not a recognised image format"):
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="pillow")(heic)


def test_a_heif_libheif_cannot_decode_names_the_way_out(avif):
    broken = _heic_branded(avif)[:300]  # the boxes cut short (a real HEVC HEIC fails the same way: no decoder)
    with pytest.raises(InvalidImageError, match=r"corrupt or undecodable HEIF image .*pillow-heif"):
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)(broken)


def test_heif_bomb_check_reads_the_header_only(avif, vips_calls):
    heic = bytearray(_heic_branded(avif))
    at = heic.find(b"ispe")  # the image's spatial extent: version/flags, then width and height
    heic[at + 8 : at + 16] = struct.pack(">II", 10000, 10000)
    with pytest.raises(InvalidImageError, match="10000x10000 pixels exceeds the 50,000,000-pixel limit"):
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)(bytes(heic))
    assert vips_calls == []


@needs_vips
def test_real_heic_when_the_bundled_libheif_can_write_one(photo):
    vips = vips_decode._pyvips()
    image = vips.Image.new_from_memory(np.asarray(photo).tobytes(), photo.width, photo.height, 3, "uchar")
    try:
        heic = image.heifsave_buffer(compression="hevc")
    except vips.Error as exc:
        pytest.skip(
            f"pyvips-binary's libheif cannot write HEVC (HEIC) here ({str(exc).strip().splitlines()[-1].strip()}); "
            "the HEIF path is "
            "tested with an AV1 item in a HEIC-branded file instead"
        )
    assert build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)(heic).shape == (HEIGHT, WIDTH, 3)


# -- threads -------------------------------------------------------------------------------------------------------


@needs_vips
def test_thread_safety_under_predict_batch(photo, tiny_bundle, tmp_path):
    """Many decode threads at once (more than cores): every prediction equals the one-at-a-time result."""
    paths = []
    for number, mode in enumerate(["PNG-RGB", "PNG-RGBA", "WEBP-RGB", "WEBP-RGBA", "JPEG-RGB", "PNG-L"] * 2):
        turned = photo.rotate(7 * number, fillcolor=(255, 255, 255)).resize((45, 60))  # a different photo each time
        path = tmp_path / f"{number:02d}.{mode.split('-')[0].lower()}"
        path.write_bytes(variant(turned, mode, (600, 800)))
        paths.append(path)
    with Classifier.load(tiny_bundle) as clf:
        one_by_one = [clf.preprocess(path) for path in paths]  # alone: on libvips' thread pool
        with vips_decode.one_thread():  # as predict_batch's decode threads: all in the calling thread
            for path, tensor in zip(paths, one_by_one):
                np.testing.assert_array_equal(clf.preprocess(path), tensor)
        batch = clf.predict_batch(paths, batch_size=5, decode_threads=6)
        serial = clf.predict_batch(paths, batch_size=5, decode_threads=1)
    assert [item.prediction.to_dict()["heads"] for item in batch] == [
        item.prediction.to_dict()["heads"] for item in serial
    ]
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        results[index] = clf.preprocessor(paths[index % len(paths)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2 * len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, tensor in results.items():
        np.testing.assert_array_equal(tensor, one_by_one[index % len(paths)])
    assert vips_decode._pyvips().cache_get_max() == 0  # no operation cache shared between threads


# -- without libvips -----------------------------------------------------------------------------------------------


def test_env_var_forces_pillow(photo, monkeypatch, vips_calls):
    data = variant(photo, "WEBP-RGB")
    monkeypatch.setenv(vips_decode.DECODER_ENV, "pillow")
    auto = build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH)
    assert auto.decoder_for("WEBP").startswith("Pillow")
    np.testing.assert_array_equal(
        auto(data), build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="pillow")(data)
    )
    assert vips_calls == []
    with pytest.raises(ValueError, match="decoder must be one of"):
        build_preprocessor(PREPROCESSING_SPEC, HEIGHT, WIDTH, decoder="opencv")


FALLBACK = """
import sys
sys.modules["pyvips"] = None  # as if it were not installed: "import pyvips" raises ImportError
from fashion.runtime import BackendUnavailableError, Classifier, vips_decode
from fashion.runtime.preprocess import PREPROCESSING_SPEC, build_preprocessor
assert not vips_decode.available() and vips_decode.version() is None
auto = build_preprocessor(PREPROCESSING_SPEC, 128, 96)
assert auto.decoder_for("WEBP").startswith("Pillow") and auto.decoder_for("HEIC") == "none installed"
data = open(sys.argv[2], "rb").read()
print(auto(data).sum())
try:
    build_preprocessor(PREPROCESSING_SPEC, 128, 96, decoder="libvips")
except BackendUnavailableError as exc:
    assert "fashion-edge[fast]" in str(exc)
else:
    raise AssertionError("decoder='libvips' without pyvips must fail")
with Classifier.load(sys.argv[1]) as clf:
    print(clf.predict(data).heads["articleType"].label)
"""


def test_runtime_works_without_pyvips(photo, tiny_bundle, tmp_path):
    path = tmp_path / "big.webp"
    path.write_bytes(variant(photo, "WEBP-RGB"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(vips_decode.DECODER_ENV, None)
    run = subprocess.run(
        [sys.executable, "-c", FALLBACK, str(tiny_bundle), str(path)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    total, label = run.stdout.split("\n")[:2]
    expected = build_preprocessor(PREPROCESSING_SPEC, 128, 96, decoder="pillow")(path.read_bytes())
    assert int(total) == int(expected.sum()) and label
