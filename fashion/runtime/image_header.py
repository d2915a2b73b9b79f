"""Reading a photo and checking its header before any pixel is decoded (used by :mod:`fashion.runtime.preprocess`).

* the input: the bytes of a path or a buffer (a directory, a missing, unreadable or empty file is an
  InvalidImageError naming the cause), a PIL image or an HxW(x1/3/4) uint8 array as it is;
* the decompression-bomb limit (:data:`MAX_IMAGE_PIXELS`), checked from the header's size;
* the JPEG structure check: a JPEG whose scan data is cut short but closed with an EOI marker is refused as
  truncated on both decoders (libjpeg only warns about it and fills the rest of the image with zeros), see
  :func:`_jpeg_for_pillow`;
* the EXIF orientation, read without decoding a PNG's pixels (:func:`_orientation`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidImageError

# A decompression bomb (e.g. 20000x20000) is refused before its pixels are decoded.
MAX_IMAGE_PIXELS = 50_000_000


ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _read(source: ImageSource) -> bytes | None:
    """The encoded bytes of a path or bytes input (None for a PIL image or an array)."""
    if isinstance(source, (Image.Image, np.ndarray)):
        return None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise InvalidImageError("is a directory, not an image file")
        if not path.is_file():
            raise InvalidImageError("no such file")
        try:
            data = path.read_bytes()
        except PermissionError:
            raise InvalidImageError("permission denied (not readable by this user)") from None
    else:
        raise InvalidImageError(f"unsupported image input type {type(source).__name__}")
    if not data:
        raise InvalidImageError("empty file (0 bytes)")
    return data


def _open(source: ImageSource, data: bytes | None) -> Image.Image:
    """A PIL image of ``source`` whose header is read and whose pixels are not decoded yet (``data``: its bytes)."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    assert data is not None
    return Image.open(io.BytesIO(_jpeg_for_pillow(data)))


#: JPEG frame types: sequential Huffman (baseline, extended) and progressive (Huffman, arithmetic). A sequential
#: arithmetic-coded scan is left alone: libjpeg's arithmetic decoder cannot wait for data the way the check needs.
_SEQUENTIAL_SOF = (0xC0, 0xC1)
_PROGRESSIVE_SOF = (0xC2, 0xCA)
#: Zero bytes that stand in for the EOI marker of a one-scan JPEG: enough for libjpeg's look-ahead (25 bits) on
#: the last MCU of a complete scan, far too few to complete a scan that was cut short.
_JPEG_TAIL = b"\x00" * 16


def _jpeg_for_pillow(data: bytes) -> bytes:
    """The bytes Pillow decodes for ``data``; refuses a JPEG whose scan data was cut short.

    libjpeg decodes a scan that ends early at a marker (e.g. the first third of a file followed by an EOI
    marker, FF D9) without an error: it only warns, which Pillow does not report, and fills the rest of the
    image with zeros. So the structure is checked from the marker segments, without decoding:

    * a sequential JPEG whose first scan holds every component (so it has one scan, as nearly all do) is
      handed to Pillow without its EOI marker, followed by a few zero bytes.
      A complete scan still yields every row (the decode is the same, bit for bit); a cut one leaves libjpeg
      waiting for data, and Pillow reports the image as truncated;
    * a progressive JPEG must bring every coefficient of every component to full precision in its scans (the
      scan scripts of libjpeg, mozjpeg and common encoders all do); otherwise scans are missing.

    Other data, and JPEGs whose structure this does not follow (several sequential scans, no EOI marker at all),
    are returned unchanged: Pillow judges them as before. The cost is a walk over the header's segments (and,
    for progressive files, over their scan headers), not a decode.
    """
    if not data.startswith(b"\xff\xd8"):
        return data
    pos, end = 2, len(data)
    frame, components = None, []
    while True:  # the marker segments up to the first scan
        if pos + 4 > end or data[pos] != 0xFF:
            return data
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SEQUENTIAL_SOF + _PROGRESSIVE_SOF and pos + 10 <= end:
            frame = marker
            count = data[pos + 9]
            components = [data[pos + 10 + 3 * i] for i in range(count) if pos + 10 + 3 * i < end]
        pos += 2 + length
    eoi = data.rfind(b"\xff\xd9")
    if eoi < pos:
        return data  # no end marker: Pillow reports the truncation itself
    if frame in _SEQUENTIAL_SOF:
        if pos + 4 >= end or data[pos + 4] != len(components):
            return data  # several scans: libjpeg reads them all before the first row, so the EOI must stay
        return data[:eoi] + _JPEG_TAIL
    if frame in _PROGRESSIVE_SOF:
        missing = _missing_coefficients(data, pos, eoi, components)
        if missing:
            raise InvalidImageError(
                f"corrupt or truncated image (progressive JPEG ends before its scans refine {missing}; "
                "the file was cut short)"
            )
    return data


def _missing_coefficients(data: bytes, pos: int, eoi: int, components: list[int]) -> str | None:
    """Which (component, coefficient) the progressive scans between ``pos`` and ``eoi`` never bring to full
    precision (None: all of them do). ``pos`` is the first scan's SOS marker."""
    done = {component: bytearray(64) for component in components}
    while 0 <= pos < eoi and pos + 5 <= len(data):
        count = data[pos + 4]
        spectral = pos + 5 + 2 * count
        if spectral + 3 > len(data):
            break
        start, stop, approximation = data[spectral], data[spectral + 1], data[spectral + 2]
        if approximation & 0x0F == 0:  # the last successive-approximation bit of these coefficients
            for i in range(count):
                coefficients = done.get(data[pos + 5 + 2 * i])
                if coefficients is not None:
                    coefficients[start : min(stop, 63) + 1] = b"\x01" * (min(stop, 63) + 1 - start)
        pos = data.find(b"\xff\xda", spectral + 3, eoi)
    for component, coefficients in done.items():
        if not all(coefficients):
            return f"coefficient {coefficients.index(0)} of component {component}"
    return None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise InvalidImageError(f"array images must be uint8, got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return Image.fromarray(np.ascontiguousarray(array))
    raise InvalidImageError(f"array images must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")


def _orientation(image: Image.Image, data: bytes | None = None) -> int | None:
    """The EXIF orientation (1 = upright), None when the EXIF block cannot be read."""
    if image.format == "PNG" and "exif" not in image.info and data is not None and not _png_late_exif(data):
        return 1  # Pillow's getexif() would decode the whole PNG to look for an eXIf chunk after the pixels
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: let the transpose itself report it
        return None
    return value if isinstance(value, int) else None


def _png_late_exif(data: bytes) -> bool:
    """Whether a PNG has an eXIf chunk after its first IDAT chunk (where Pillow finds it only by decoding), from
    the chunk lengths alone. True when the chunk list cannot be walked: let Pillow look."""
    pos, end, seen_pixels = 8, len(data), False
    while pos + 8 <= end:
        kind = data[pos + 4 : pos + 8]
        if kind == b"eXIf":
            return seen_pixels
        if kind == b"IEND":
            return False
        seen_pixels = seen_pixels or kind == b"IDAT"
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return True


def _check_size(size: tuple[int, int]) -> None:
    """The decompression-bomb check, from the header's size, before any pixel is decoded."""
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise InvalidImageError(f"{size[0]}x{size[1]} pixels exceeds the {MAX_IMAGE_PIXELS:,}-pixel limit")
