"""Shrink-on-load decoding through libvips, the optional fast decoder of large photos.

Installed with ``pip install fashion-edge[fast]`` (``pyvips`` + the ``pyvips-binary`` wheel, which bundles
libvips with libjpeg-turbo, libwebp, libspng and libheif: no system package needed; its libheif decodes AV1,
i.e. AVIF and AV1-coded HEIF, but has no HEVC decoder, so HEIC photos from phones still need pillow-heif). Without it, or with
``FASHION_DECODER=pillow`` in the environment, :mod:`fashion.runtime.preprocess` decodes with Pillow, which
stays the reference every result here is checked against (results/vips-decode.md).

Only the pixel decode, an integer box reduction and the 8-bit RGB conversion run here, each at the cheapest
size the codec allows: JPEG from its DCT coefficients at 1/2, 1/4 or 1/8 (as Pillow's ``draft``), WebP through
libwebp's scaled decoder, PNG through libspng with a streaming box reduction (in float: exact), AVIF/HEIF
through libheif. The preprocessing module keeps everything else: the header checks (decompression-bomb limit,
JPEG structure) before any pixel is decoded, the EXIF orientation, the padding geometry and the box factor
(a smaller one for PNG, whose box is the only thing that separates it from the exact path). Transparency is
averaged premultiplied (or by libwebp's own premultiplied scaler) and laid on the pad colour only after the
reduction, as on the Pillow path, in the same libvips pipeline as the reduction; only 8-bit pixels, rounded
half to even, come back to Python.

Threads: libvips' operation cache is switched off (an image decoded in one thread is never handed to another
through it). Inside :func:`one_thread` (``Classifier.predict_batch``'s decode threads run there) a pipeline is
evaluated in the calling thread (``Region.fetch``), never on libvips' own thread pool: one decode is one thread,
so the batch's decode threads are the whole parallelism and never oversubscribe the cores. A single large PNG
or HEIF decode outside it (``predict(path)``) runs on libvips' pool, sized to the usable cores (unless
``VIPS_CONCURRENCY`` is set), as the model then uses them too: the loader decodes in one thread while the others
premultiply and reduce. Everything else (WebP and JPEG are one codec call; small images are not worth waking
threads for) runs in the calling thread. Any libvips failure (a warning included: libjpeg's "premature end of data segment" is one) raises
:class:`VipsDecodeError`, and the caller lets Pillow decide, so the same files are accepted or refused with or
without libvips.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

#: Environment variable choosing the decoder of large photos: ``pillow`` forces Pillow; unset or ``auto``:
#: libvips where it is installed.
DECODER_ENV = "FASHION_DECODER"
DECODERS = ("auto", "pillow", "libvips")
#: Pillow's format names that libvips decodes here (HEIF: a HEIC/HEIF file Pillow itself cannot open).
FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "HEIF")
#: Formats libheif decodes already turned upright (its irot/imir transforms; Pillow's AVIF plugin turns those
#: into the EXIF orientation instead, which the caller must then not apply a second time).
UPRIGHT_FORMATS = ("AVIF", "HEIF")
#: The Pillow modes each format may have to be decoded here (others, e.g. CMYK JPEG, stay with Pillow).
MODES = {
    "JPEG": ("RGB", "L"),
    "PNG": ("RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I;16B", "I;16L", "I"),
    "WEBP": ("RGB", "RGBA"),
    "AVIF": ("RGB", "RGBA"),
    "HEIF": ("RGB", "RGBA"),
}
#: ISO-BMFF brands of HEIF files (HEIC, AVIF) sniffed when Pillow cannot open a file.
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
# Any libvips warning fails the load: a truncated stream is reported as a warning by libjpeg.
_LOAD_OPTIONS = {"access": "sequential", "fail_on": "warning"}
#: Outside :func:`one_thread`, a PNG/HEIF of at least this many pixels is reduced on libvips' thread pool.
POOL_MIN_PIXELS = 2_000_000
#: In the calling thread, a reduction is evaluated in strips of about this many source rows (a third less CPU
#: than one whole-image region for a 2400x3200 RGBA PNG reduced by 3: its buffers stay small).
STRIP_ROWS = 256

_lock = threading.Lock()
_module: Any = None
_import_error: str | None = None
_counts = {"decoded": 0, "refused": 0}
_local = threading.local()


class VipsDecodeError(Exception):
    """libvips could not decode this input (or is not installed); Pillow decides instead."""


def _pyvips() -> Any:
    """The pyvips module, imported once (thread-safe) with its operation cache off; None if not installed."""
    global _module, _import_error
    if _module is not None or _import_error is not None:
        return _module
    with _lock:
        if _module is None and _import_error is None:
            try:
                import pyvips
            except Exception as exc:  # not installed, or its libvips could not be loaded (OSError, cffi errors)
                _import_error = f"{type(exc).__name__}: {exc}"
                return None
            pyvips.cache_set_max(0)
            pyvips.cache_set_max_mem(0)
            pyvips.cache_set_max_files(0)
            if not os.environ.get("VIPS_CONCURRENCY"):  # libvips counts the host's CPUs, not a container's quota
                from .host import usable_cores

                pyvips.concurrency_set(usable_cores())
            # libvips' warnings (e.g. about a corrupt file Pillow then refuses with its own message) are not
            # printed on stderr by Python's last-resort handler; an application's own logging still sees them.
            logging.getLogger("pyvips").addHandler(logging.NullHandler())
            _module = pyvips
    return _module


@contextmanager
def one_thread() -> Iterator[None]:
    """Decodes in this block (in this thread) run entirely in the calling thread, not on libvips' pool."""
    previous = getattr(_local, "one_thread", False)
    _local.one_thread = True
    try:
        yield
    finally:
        _local.one_thread = previous


def counts() -> dict[str, int]:
    """How many images libvips decoded in this process, and how many it refused (each then went to Pillow)."""
    with _lock:
        return dict(_counts)


def _count(key: str) -> None:
    with _lock:
        _counts[key] += 1


def available() -> bool:
    """Whether pyvips and its libvips can be used in this process."""
    return _pyvips() is not None


def unavailable_reason() -> str | None:
    """Why libvips cannot be used (None when it can)."""
    return None if available() else (_import_error or "pyvips is not installed")


def version() -> str | None:
    """``libvips X.Y.Z`` when available, else None."""
    vips = _pyvips()
    return f"libvips {vips.version(0)}.{vips.version(1)}.{vips.version(2)}" if vips is not None else None


def wanted(decoder: str) -> bool:
    """Whether large photos go through libvips for a preprocessor built with ``decoder`` (auto/pillow/libvips)."""
    if decoder == "pillow" or (decoder == "auto" and os.environ.get(DECODER_ENV, "auto").lower() == "pillow"):
        return False
    return available()


def is_heif(data: bytes) -> bool:
    """A HEIF-family file (HEIC, AVIF), from its ``ftyp`` box."""
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def heif_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a HEIF/AVIF file as libheif will decode it (upright), read from its header only."""
    vips = _pyvips()
    if vips is None:
        raise VipsDecodeError(unavailable_reason())
    try:
        image = vips.Image.heifload_buffer(data, **_LOAD_OPTIONS)
        return int(image.width), int(image.height)
    except vips.Error as exc:
        raise VipsDecodeError(_message(exc)) from None


def decode(
    data: bytes,
    fmt: str,
    size: tuple[int, int],
    factor: int,
    jpeg_shrink: int = 1,
    pad: tuple[int, int, int] = (255, 255, 255),
) -> tuple[np.ndarray, tuple[float, float]]:
    """Decode ``data`` (a ``fmt`` file of ``size`` = (width, height) as stored) about ``jpeg_shrink * factor``
    times smaller, alpha laid on ``pad`` -> (RGB uint8 array, (x, y) scale).

    The scale is how many source pixels one output pixel spans along each axis: output pixel ``i`` covers
    source ``[i * scale, (i + 1) * scale)`` (JPEG: the DCT scale ``jpeg_shrink`` times the box ``factor``;
    WebP: libwebp's scaled size). AVIF/HEIF come out upright (libheif applies their rotation); other formats
    keep their stored orientation. Raises VipsDecodeError on any failure or warning.
    """
    vips = _pyvips()
    if vips is None:
        raise VipsDecodeError(unavailable_reason())
    width, height = size
    try:
        if fmt == "JPEG":
            image = vips.Image.jpegload_buffer(data, shrink=jpeg_shrink, **_LOAD_OPTIONS)
        elif fmt == "WEBP":  # libwebp's scaler reduces (premultiplied) while decoding: nothing left to box
            image = vips.Image.webpload_buffer(data, **({"scale": 1.0 / factor} if factor > 1 else {}), **_LOAD_OPTIONS)
            factor = 1
        elif fmt == "PNG":
            image = vips.Image.pngload_buffer(data, **_LOAD_OPTIONS)
        elif fmt in UPRIGHT_FORMATS:
            image = vips.Image.heifload_buffer(data, **_LOAD_OPTIONS)
            width, height = image.width, image.height
        else:
            raise VipsDecodeError(f"format {fmt} is not decoded by libvips here")
        pool = fmt not in ("JPEG", "WEBP") and width * height >= POOL_MIN_PIXELS
        pixels = _reduce(vips, image, factor, pad, pool=pool and not getattr(_local, "one_thread", False))
    except (vips.Error, VipsDecodeError) as exc:
        _count("refused")
        raise VipsDecodeError(_message(exc)) from None
    _count("decoded")
    if fmt == "WEBP":  # libwebp maps the whole width onto the scaled width
        return pixels, (width / pixels.shape[1], height / pixels.shape[0])
    step = float(jpeg_shrink * factor) if fmt == "JPEG" else float(factor)
    return pixels, (step, step)


def _message(exc: Exception) -> str:
    """libvips' error text, whose last line names the cause (the lines above repeat the operations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _reduce(vips: Any, image: Any, factor: int, pad: tuple[int, int, int], pool: bool = False) -> np.ndarray:
    """Box-reduce ``image`` by ``factor`` (premultiplied when it has alpha), lay the alpha on ``pad``, round to
    8 bits, and evaluate it all (in this thread, or on libvips' pool with ``pool``): an RGB uint8 array.

    Everything after the box reduction runs on the reduced pixels, inside the same libvips pipeline: laying the
    alpha on the pad (linear in the premultiplied colour and the alpha, so it equals compositing every full-size
    pixel first), the scale of 16-bit pixels to 8 bits, and the rounding, half to even (``rint``): a 2x2 box
    averages to exactly x.5 a quarter of the time, and rounding those up would brighten the image by 1/8 grey
    level on average. Only 8-bit pixels come back to Python.
    """
    if image.format not in ("uchar", "ushort") or not 1 <= image.bands <= 4 or image.interpretation == "cmyk":
        raise VipsDecodeError(f"{image.bands}-band {image.format} {image.interpretation} image")
    peak = 65535.0 if image.format == "ushort" else 255.0
    alpha = image.bands in (2, 4)
    if alpha and factor == 1 and peak == 255.0:  # nothing to average: laid on the pad as the exact path does it
        # (Pillow's 8-bit alpha_composite: the same pixels, and a third of the time compositing in float takes)
        cut = Image.fromarray(_evaluate(vips, image, 1, pool), "RGBA" if image.bands == 4 else "LA").convert("RGBA")
        return np.asarray(Image.alpha_composite(Image.new("RGBA", cut.size, (*pad, 255)), cut).convert("RGB"))
    if alpha:  # averaging must weigh each colour by its alpha: premultiply first, lay on pad after
        image = image.premultiply(max_alpha=peak)  # float
    elif factor > 1 or peak != 255.0:  # averaged in float and rounded once at the end: libvips' integer shrink is
        image = image.cast("float")  # off by up to a grey level (biased: +0.5 on average at factor 2), float is exact
    if factor > 1:  # rows first: the same boxes as ``shrink`` (columns first), the column pass then runs on an image
        image = image.shrinkh(factor, ceil=True).shrinkv(factor, ceil=True)  # factor times narrower: cheaper
    if alpha:  # 8-bit colour + pad * (1 - alpha / peak) in one band-mixing op (a grey band meets an RGB pad: RGB)
        colours, scale = image.bands - 1, 255.0 / peak
        matrix = [[scale if j == (band if colours == 3 else 0) else 0.0 for j in range(colours)] for band in range(3)]
        image = image.recomb([row + [-value / peak] for row, value in zip(matrix, pad)]).linear(1.0, list(pad))
    elif peak != 255.0:
        image = image.linear(255.0 / peak, 0.0)
    if image.format != "uchar":
        image = image.rint().cast("uchar")  # cast clips to 0-255
    array = _evaluate(vips, image, factor, pool)
    return np.repeat(array, 3, axis=-1) if image.bands == 1 else array


def _evaluate(vips: Any, image: Any, factor: int, pool: bool) -> np.ndarray:
    """The uchar pixels of ``image`` (``factor``: its box reduction), HxWxbands, computed on libvips' pool or here."""
    if pool:
        buffer = image.write_to_memory()  # libvips' pool: the loader in one thread, the reduction in the others
    else:  # here, not on libvips' threads, in strips of about STRIP_ROWS source rows: one region of the whole image
        region = vips.Region.new(image)  # would hold every source row at once (400 MB in float at 2400x3200 RGBA)
        step = max(1, STRIP_ROWS // factor)
        buffer = b"".join(
            region.fetch(0, top, image.width, min(step, image.height - top)) for top in range(0, image.height, step)
        )
    return np.frombuffer(buffer, dtype=np.uint8).reshape(image.height, image.width, image.bands)
