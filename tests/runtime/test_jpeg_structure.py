"""JPEGs that lie about their data: cut short but closed with an EOI marker, or a header far larger than the
data. libjpeg decodes both "successfully" (it fills the missing part with zeros and only warns); the runtime
must refuse them with its corrupt-image error, on the Pillow and the libvips decoder alike (issue 21, item 15).
Complete JPEGs of every structure must still decode exactly as Pillow decodes them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion.runtime import Classifier, InvalidImageError, vips_decode
from fashion.runtime.preprocess import PREPROCESSING_SPEC, build_preprocessor, load_image

DECODERS = ["pillow", "libvips"] if vips_decode.available() else ["pillow"]
CORRUPT = r"corrupt or truncated image"


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def cut_with_eoi(data: bytes, fraction: float = 1 / 3) -> bytes:
    """The first ``fraction`` of the file, then an EOI marker (FF D9): what the issue's bad uploads look like."""
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


def lying_header(side: int = 7000) -> bytes:
    """A real 16x16 JPEG whose frame header says ``side`` x ``side`` (49 MP: under the pixel limit)."""
    data = bytearray(jpeg(Image.new("RGB", (16, 16), (200, 10, 10))))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") + side.to_bytes(2, "big")
    return bytes(data)


def preprocessors(decoder: str):
    for fast in (True, False):
        yield build_preprocessor(PREPROCESSING_SPEC, 128, 96, fast=fast, decoder=decoder)


@pytest.mark.parametrize("decoder", DECODERS)
def test_truncated_jpeg_ending_with_eoi_is_refused(photos, decoder, tmp_path):
    for photo in photos[:5]:
        path = tmp_path / f"cut-{photo.name}"
        path.write_bytes(cut_with_eoi(photo.read_bytes()))
        for preprocessor in preprocessors(decoder):
            with pytest.raises(InvalidImageError, match=rf"cut-{photo.stem}\.jpg: {CORRUPT}"):
                preprocessor(path)


@pytest.mark.parametrize("decoder", DECODERS)
def test_large_truncated_jpeg_is_refused(photos, decoder):
    # large enough for the fast path (DCT-scaled decode, and libvips when forced)
    big = jpeg(Image.open(photos[0]).convert("RGB").resize((2400, 3200)), quality=90)
    for fraction in (0.1, 1 / 3, 0.9):
        for preprocessor in preprocessors(decoder):
            with pytest.raises(InvalidImageError, match=CORRUPT):
                preprocessor(cut_with_eoi(big, fraction))


@pytest.mark.parametrize("decoder", DECODERS)
def test_header_larger_than_the_data_is_refused(decoder):
    data = lying_header()
    assert Image.open(io.BytesIO(data)).size == (7000, 7000)
    for preprocessor in preprocessors(decoder):
        with pytest.raises(InvalidImageError, match=CORRUPT):
            preprocessor(data)


@pytest.mark.parametrize("decoder", DECODERS)
def test_progressive_jpeg_missing_its_later_scans_is_refused(photos, decoder):
    data = jpeg(Image.open(photos[1]).convert("RGB").resize((600, 800)), quality=90, progressive=True)
    load_image(data)  # complete: fine
    for preprocessor in preprocessors(decoder):
        with pytest.raises(InvalidImageError, match=r"progressive JPEG ends before its scans refine"):
            preprocessor(cut_with_eoi(data))


def test_classifier_and_batch_report_them(tiny_bundle, photos, tmp_path):
    (tmp_path / "cut.jpg").write_bytes(cut_with_eoi(photos[0].read_bytes()))
    (tmp_path / "liar.jpg").write_bytes(lying_header())
    with Classifier.load(tiny_bundle) as clf:
        for name in ("cut.jpg", "liar.jpg"):
            with pytest.raises(InvalidImageError, match=CORRUPT):
                clf.predict(tmp_path / name)
        items = clf.predict_batch([tmp_path / "cut.jpg", photos[0], tmp_path / "liar.jpg"], decode_threads=2)
    assert [bool(item.error) for item in items] == [True, False, True]
    assert CORRUPT in items[0].error and CORRUPT in items[2].error


@pytest.mark.skipif(not vips_decode.available(), reason="pyvips not installed")
def test_libvips_itself_refuses_the_cut_scan(photos):
    data = cut_with_eoi(photos[0].read_bytes())
    with pytest.raises(vips_decode.VipsDecodeError, match="premature end"):
        vips_decode.decode(data, "JPEG", Image.open(io.BytesIO(data)).size, 1, 1)


# -- complete JPEGs of every structure decode exactly as before ------------------------------------------------------


def _variants(photo: Image.Image) -> dict[str, bytes]:
    thumb = jpeg(photo.resize((30, 40)))
    exif = Image.Exif()
    exif[0x010F] = "camera"
    mpo = io.BytesIO()
    photo.save(mpo, "MPO", save_all=True, append_images=[photo.rotate(90)])
    return {
        "baseline": jpeg(photo, quality=90),
        "progressive": jpeg(photo, quality=90, progressive=True),
        "optimised": jpeg(photo, quality=75, optimize=True),
        "4:4:4": jpeg(photo, quality=95, subsampling=0),
        "grey": jpeg(photo.convert("L"), quality=90),
        "cmyk": jpeg(photo.convert("CMYK"), quality=90),
        "restart markers": jpeg(photo, quality=90, restart_marker_blocks=4),
        # an APP segment holding another JPEG (as an EXIF thumbnail does), markers and all
        "embedded jpeg": jpeg(photo, quality=90, exif=exif.tobytes() + thumb),
        "trailing bytes": jpeg(photo, quality=90) + b"\x00trailer\xff\xd9junk",
        "mpo": mpo.getvalue(),
    }


def test_complete_jpegs_decode_exactly_as_pillow_decodes_them(photos):
    for photo_path in photos[:3]:
        photo = Image.open(photo_path).convert("RGB").resize((300, 400))
        for name, data in _variants(photo).items():
            expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            np.testing.assert_array_equal(np.asarray(load_image(data)), expected, err_msg=name)
            fast = build_preprocessor(PREPROCESSING_SPEC, 32, 24)
            assert fast(data).shape == (32, 24, 3), name  # the DCT-scaled decode accepts it too


def test_every_sample_photo_still_decodes_bit_for_bit(photos):
    for path in photos:
        np.testing.assert_array_equal(np.asarray(load_image(path)), np.asarray(Image.open(path).convert("RGB")))
