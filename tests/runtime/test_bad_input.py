"""Bad and unusual photos, written as real files: each is handled correctly or refused with InvalidImageError."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion.runtime import Classifier, InvalidImageError
from fashion.runtime.preprocess import MAX_IMAGE_PIXELS, load_image


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    with Classifier.load(tiny_bundle) as classifier:
        yield classifier


@pytest.fixture(scope="module")
def photo(sample_dir) -> Path:
    return sorted((sample_dir / "images").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def rgb(photo) -> Image.Image:
    return Image.open(photo).convert("RGB")


def refused(clf, source, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        clf.predict(source)


# -- refused --------------------------------------------------------------------------------------


def test_empty_file(clf, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    refused(clf, tmp_path / "empty.jpg", r"empty\.jpg: empty file")


def test_truncated_jpeg(clf, photo, tmp_path):
    data = photo.read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    refused(clf, tmp_path / "half.jpg", r"half\.jpg: corrupt or truncated image")


def test_random_bytes(clf, tmp_path):
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(4096))
    refused(clf, tmp_path / "noise.jpg", r"noise\.jpg: not a recognised image format")


def test_pdf(clf, tmp_path):
    pdf = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 60 80]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )
    (tmp_path / "catalogue.pdf").write_bytes(pdf)
    refused(clf, tmp_path / "catalogue.pdf", r"catalogue\.pdf: not a recognised image format")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_huge_png(path: Path, side: int = 20000) -> None:
    """A complete, valid 1-bit side x side PNG (all black); it compresses to a few tens of kB."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [8000, 20000])
def test_decompression_bomb_is_refused_before_decoding(clf, tmp_path, side):
    bomb = tmp_path / "bomb.png"
    write_huge_png(bomb, side)
    assert bomb.stat().st_size < 1_000_000 and side * side > MAX_IMAGE_PIXELS
    start = time.perf_counter()
    refused(clf, bomb, r"bomb\.png: .*(over|exceeds) the 50,000,000-pixel limit")
    # decoding 400 million pixels would take seconds and gigabytes; refusing takes milliseconds
    assert time.perf_counter() - start < 1.0


def test_wrong_dtype_array(clf, rgb):
    refused(clf, np.asarray(rgb).astype(np.float32), "must be uint8, got float32")


def test_wrong_shape_array(clf):
    refused(clf, np.zeros((10, 10, 5), dtype=np.uint8), r"got shape \(10, 10, 5\)")


def test_unsupported_input_type(clf):
    refused(clf, 12345, "unsupported image input type int")


def test_missing_file(clf, tmp_path):
    refused(clf, tmp_path / "nowhere.jpg", r"nowhere\.jpg: no such file")


def test_directory_says_it_is_a_directory(clf, tmp_path):
    (tmp_path / "photos.jpg").mkdir()
    refused(clf, tmp_path / "photos.jpg", r"photos\.jpg: is a directory, not an image file")


def test_unreadable_file_says_permission_denied(clf, photo, tmp_path):
    import os

    locked = tmp_path / "locked.jpg"
    locked.write_bytes(photo.read_bytes())
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: a mode-000 file is still readable")
        refused(clf, locked, r"locked\.jpg: permission denied")
    finally:
        locked.chmod(0o644)


@pytest.mark.parametrize("top_k", [0, -1])
def test_top_k_below_one_is_an_error_with_a_message(clf, photo, top_k):
    with pytest.raises(ValueError, match=f"top_k must be a positive integer, got {top_k}"):
        clf.predict(photo, top_k=top_k)
    with pytest.raises(ValueError, match="top_k"):
        clf.predict_batch([photo], top_k=top_k)


# -- handled ---------------------------------------------------------------------------------------


def tensor(source, size=(80, 60)) -> np.ndarray:
    """The runtime's uint8 tensor at the sample photos' own size (80x60), to compare pixels."""
    from fashion.runtime.preprocess import preprocess

    return preprocess(source, *size).astype(np.int16)


def test_grayscale_jpeg(clf, rgb, tmp_path):
    rgb.convert("L").save(tmp_path / "grey.jpg", quality=95)
    result = tensor(tmp_path / "grey.jpg")
    assert (result[..., 0] == result[..., 1]).all() and (result[..., 1] == result[..., 2]).all()
    assert clf.predict(tmp_path / "grey.jpg").heads["gender"].label


def test_rgba_png_transparency_becomes_white(clf, rgb, tmp_path):
    rgba = rgb.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, : alpha.shape[1] // 2] = 0  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "cutout.png")
    result = tensor(tmp_path / "cutout.png")
    assert (result[:, :20] == 255).all()
    np.testing.assert_array_equal(result[:, 40:], tensor(rgb)[:, 40:])
    clf.predict(tmp_path / "cutout.png")


def test_hxwx4_array_is_composited(clf, rgb):
    array = np.dstack([np.asarray(rgb), np.full(rgb.size[::-1], 255, np.uint8)])
    assert array.shape[2] == 4
    np.testing.assert_array_equal(tensor(array), tensor(rgb))
    assert clf.predict(array).labels() == clf.predict(rgb).labels()


def test_cmyk_jpeg(clf, rgb, tmp_path):
    rgb.convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    assert np.abs(tensor(tmp_path / "print.jpg") - tensor(rgb)).mean() < 6
    clf.predict(tmp_path / "print.jpg")


def test_16_bit_png(clf, rgb, tmp_path):
    grey8 = np.asarray(rgb.convert("L"), dtype=np.uint16)
    Image.fromarray(grey8 * 257).save(tmp_path / "deep.png")  # 0..255 -> 0..65535
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    result = tensor(tmp_path / "deep.png")
    assert np.abs(result - tensor(rgb.convert("L"))).max() <= 1
    clf.predict(tmp_path / "deep.png")


def test_palette_gif(clf, rgb, tmp_path):
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(tmp_path / "flat.gif")
    assert Image.open(tmp_path / "flat.gif").mode == "P"
    assert np.abs(tensor(tmp_path / "flat.gif") - tensor(rgb)).mean() < 8
    clf.predict(tmp_path / "flat.gif")


def test_animated_gif_uses_the_first_frame(clf, tmp_path):
    red, blue = Image.new("RGB", (60, 80), (255, 0, 0)), Image.new("RGB", (60, 80), (0, 0, 255))
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    result = tensor(tmp_path / "anim.gif")
    assert (result[..., 0] > 200).all() and (result[..., 2] < 50).all()
    clf.predict(tmp_path / "anim.gif")


def test_exif_rotated_jpeg_is_turned_upright(clf, tmp_path):
    # A landscape 120x60 frame stored with orientation 6 ("rotate 90 degrees clockwise to view").
    stored = np.zeros((60, 120, 3), dtype=np.uint8)
    stored[:, :60] = (255, 255, 255)  # left half white, right half black
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)

    upright = load_image(tmp_path / "rotated.jpg")
    assert upright.size == (60, 120)  # portrait once rotated
    pixels = np.asarray(upright, dtype=np.int16)
    # turning clockwise brings the stored left (white) half to the top
    assert pixels[:50].mean() > 230 and pixels[70:].mean() < 25
    ignoring_exif = np.asarray(Image.open(tmp_path / "rotated.jpg").convert("RGB"), dtype=np.int16)
    np.testing.assert_allclose(pixels, np.rot90(ignoring_exif, k=-1), atol=40)
    clf.predict(tmp_path / "rotated.jpg")


def test_bytes_and_pil_inputs_are_handled(clf, photo, rgb):
    assert clf.predict(photo.read_bytes()).labels() == clf.predict(rgb).labels()


# -- batches ---------------------------------------------------------------------------------------


def test_in_a_batch_bad_inputs_are_reported_and_the_others_predicted(clf, sample_dir, tmp_path):
    good = sorted((sample_dir / "images").glob("*.jpg"))[:3]
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "half.jpg").write_bytes(good[0].read_bytes()[:300])
    write_huge_png(tmp_path / "bomb.png")
    inputs = [
        good[0],
        tmp_path / "empty.jpg",
        good[1],
        b"%PDF-1.4 nope",
        tmp_path / "half.jpg",
        np.zeros((4, 4), dtype=np.float64),
        tmp_path / "bomb.png",
        good[2],
    ]
    items = clf.predict_batch(inputs, batch_size=3)
    assert [item.ok for item in items] == [True, False, True, False, False, False, False, True]
    for item, source in zip(items, inputs):
        if item.ok:
            assert item.prediction.labels() == clf.predict(source).labels()
        else:
            assert item.prediction is None and item.error
    assert "empty.jpg" in items[1].error and "empty file" in items[1].error
    assert "pixel limit" in items[6].error or "too large" in items[6].error
    assert "uint8" in items[5].error
