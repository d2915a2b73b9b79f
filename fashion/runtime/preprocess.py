"""Image preprocessing, defined once and driven by the bundle's ``preprocessing`` spec.

Training, export parity checks, benchmarks, the demo and the runtime all call these functions,
so a photo becomes exactly the same tensor everywhere. With the shipped spec:

1. decode (path, bytes, PIL image or HxWx3 uint8 array), apply the EXIF orientation;
2. convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB, compositing transparency on white;
3. pad with white to the model's aspect ratio (product photos sit on white), centred;
4. resize to the model's input size with bilinear filtering;
5. hand the model raw 0-255 RGB as float32 NHWC (the model normalises internally).

``build_preprocessor(spec, height, width)`` turns a spec into the callable that does this, so a
bundle whose spec says e.g. ``"resample": "bicubic"`` or ``"range": [0, 1]`` is fed what it was
trained on; a spec value this code cannot honour is a BundleError, never silently ignored.

Large photos take a fast path: a JPEG is decoded at 1/2, 1/4 or 1/8 size straight from its DCT
coefficients (``Image.draft``) and other formats are box-reduced by an integer factor
(``Image.reduce``) before the final resize, always leaving at least ``FAST_DECODE_GAP`` times the
model's input size for that resize (PNG decoded by libvips: ``LOSSLESS_GAP``, closer to the exact path).
A 12-megapixel JPEG then costs a few milliseconds instead of ~180 ms; the accuracy effect is measured on
the test split (results/fast-decode.md).

Where ``pyvips`` is installed (``pip install fashion-edge[fast]``), large PNG and WebP photos are decoded by
libvips instead (:mod:`fashion.runtime.vips_decode`): WebP at reduced size by libwebp's scaled decoder, PNG by
libspng with a streaming box reduction; a HEIF file Pillow cannot open goes through libheif (AV1-coded ones:
the libvips wheel has no HEVC decoder, so phone HEIC photos still need pillow-heif). JPEG and AVIF stay
with Pillow, as fast there (``decoder="libvips"`` sends them to libvips too). Everything around the decode stays
here and is the same for both decoders: the header checks, the EXIF orientation, alpha laid on the pad colour
after the reduction, and the padding geometry. A file libvips cannot decode cleanly goes to Pillow, which
decides, so the same files are accepted with or without libvips. ``FASHION_DECODER=pillow`` (or
``decoder="pillow"``) forces Pillow; the accuracy check of the libvips decoder is results/vips-decode.md.

Reading the input and its header checks (bytes of a path, the bomb limit, the JPEG scan structure, the EXIF
orientation) live in :mod:`fashion.runtime.image_header`; the names are imported here as before.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import vips_decode
from .errors import BackendUnavailableError, BundleError, InvalidImageError
from .image_header import MAX_IMAGE_PIXELS, ImageSource, _check_size, _describe, _open, _orientation, _read
from .image_header import _jpeg_for_pillow as _jpeg_for_pillow  # re-exported: the photo bench times it
from .manifest import PreprocessSpec

PAD_VALUE = 255
RESAMPLE = Image.Resampling.BILINEAR
#: The fast path leaves at least this factor between the reduced image and the model input, so
#: the final (antialiased) resize still averages several source pixels per output pixel.
FAST_DECODE_GAP = 3.0
#: libvips leaves a lossless photo (PNG) at least this many times the model's input per axis (a smaller box):
#: the box is all that separates it from the exact path, and a smaller one comes closer to the exact path's
#: bilinear filter. On the validation split (scripts/lossless_reduction_check.py) 6 makes 1080x1440 exact (no
#: box) and halves the pixel deviation at 2400x3200 (box 4, not 8), for about 5% more time at 4000x3000 (box 6,
#: not 13); 8 cuts a little more at twice that cost on predict_batch's 2400x3200 decodes.
LOSSLESS_GAP = 6.0
#: Reduced decoding is on unless a caller asks for the exact path (see results/fast-decode.md).
FAST_DECODE_DEFAULT = True

PREPROCESSING_SPEC = {
    "color": "RGB",
    "exif_transpose": True,
    "fit": "pad_to_aspect_then_resize",
    "pad_value": PAD_VALUE,
    "resample": "bilinear",
    "dtype": "float32",
    "range": [0, 255],
    "layout": "NHWC",
}

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
FITS = ("pad_to_aspect_then_resize", "resize", "center_crop_then_resize")
LAYOUTS = ("NHWC", "NCHW")
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the stored image by 90 degrees


def _to_rgb(image: Image.Image, pad: tuple[int, int, int] = (PAD_VALUE,) * 3) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_GREY_MODES:
        image = _grey8(image, _grey_peak(image))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (*pad, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


#: 16/32-bit greyscale modes: their full range is scaled down to 8 bits instead of clipped.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")


def _grey_peak(image: Image.Image) -> float:
    """The value that becomes 255: the 16-bit maximum, or a 32-bit image's own maximum."""
    if image.mode.startswith("I;16"):
        return 65535.0
    low, high = image.getextrema()  # a single-band image: (min, max)
    return max(float(high), 1.0)  # type: ignore[arg-type]


def _grey8(image: Image.Image, peak: float) -> Image.Image:
    values = np.asarray(image if image.mode == "I" else image.convert("I"), dtype=np.float64)
    return Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _reduced_rgb(image: Image.Image, factor: int, pad: tuple[int, int, int]) -> Image.Image:
    """``_to_rgb(image).reduce(factor)``, with the full-size work done on the reduced pixels where that is exact.

    Greyscale and opaque palette images are box-averaged before the colour conversion (both are per-pixel
    maps that commute with the average, up to rounding), and so are 16/32-bit greyscale images, whose scale to
    8 bits is linear. Transparent images are averaged with premultiplied
    alpha and then laid on the pad colour: compositing is linear in (premultiplied colour, alpha), so this
    equals compositing first and averaging after, without compositing every full-size pixel. Other modes
    (CMYK, ...) are converted first.
    """
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGB", "L"):
        return image.reduce(factor).convert("RGB")
    if image.mode in WIDE_GREY_MODES:  # the scale to 8 bits is linear: average first (as 32-bit), scale after
        return _grey8(image.convert("I").reduce(factor), _grey_peak(image)).convert("RGB")
    if image.mode in ("RGBA", "RGBa"):
        reduced = np.asarray(image.convert("RGBa").reduce(factor), dtype=np.float32)
        alpha = reduced[..., 3:] / 255.0
        rgb = reduced[..., :3] + np.asarray(pad, dtype=np.float32) * (1.0 - alpha)
        return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    return _to_rgb(image, pad).reduce(factor)


def _reduction(size: tuple[int, int], height: int, width: int, fit: str) -> float:
    """How many source pixels per model pixel the final resize averages (the larger, the more to gain)."""
    scale_x, scale_y = size[0] / width, size[1] / height
    # Padding resizes the whole canvas by the larger factor; stretch and crop keep the smaller one.
    return max(scale_x, scale_y) if fit == "pad_to_aspect_then_resize" else min(scale_x, scale_y)


#: EXIF orientation -> the transpose that turns the stored image upright (as ``ImageOps.exif_transpose``).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: The formats whose large photos libvips decodes with ``decoder="auto"``: where it is faster than Pillow. JPEG
#: stays with Pillow's DCT-domain draft (as fast; libvips does the same through libjpeg-turbo), AVIF with Pillow's
#: libavif (about twice as fast as pyvips-binary's libheif here). A HEIF file Pillow cannot open always goes to
#: libvips (which decodes it when AV1-coded). Timings: results/fashion-effnetb0-photos.md.
VIPS_AUTO_FORMATS = ("PNG", "WEBP")
#: The formats ``decoder="libvips"`` sends to libvips (for comparisons and tests).
VIPS_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "AVIF")


def _draft_factor(reduction: float, gap: float) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) that keeps at least ``gap`` x the model size."""
    for factor in (8, 4, 2):
        if reduction / factor >= gap:
            return factor
    return 1


@dataclass(frozen=True)
class Preprocessor:
    """Turns any supported image input into the model's input; built from a spec by :func:`build_preprocessor`."""

    height: int
    width: int
    fit: str = "pad_to_aspect_then_resize"
    resample: str = "bilinear"
    pad_value: tuple[int, int, int] = (PAD_VALUE,) * 3
    exif_transpose: bool = True
    value_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    layout: str = "NHWC"
    fast: bool = FAST_DECODE_DEFAULT
    gap: float = FAST_DECODE_GAP
    #: The gap of PNG photos decoded by libvips (the Pillow fast path keeps ``gap`` for every format).
    lossless_gap: float = LOSSLESS_GAP
    #: Decoder of large photos: ``auto`` (libvips where installed, unless FASHION_DECODER=pillow), ``pillow``
    #: or ``libvips`` (an error when pyvips is missing). Small photos and the exact path always use Pillow.
    decoder: str = "auto"

    def __post_init__(self) -> None:
        if self.decoder not in vips_decode.DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(vips_decode.DECODERS)}, got {self.decoder!r}")
        if self.decoder == "libvips" and not vips_decode.available():
            raise BackendUnavailableError(
                f"decoder='libvips' needs pyvips ({vips_decode.unavailable_reason()}); "
                "install it with: pip install 'fashion-edge[fast]'"
            )

    def __call__(self, source: ImageSource) -> np.ndarray:
        """Any supported image input -> uint8 array of shape (height, width, 3) (raises InvalidImageError)."""
        image, scale, full_size = self._decode(source)
        if scale == (1.0, 1.0):
            return self.fit_image(image)
        return self._fit_reduced(image, scale, full_size)

    def decoder_for(self, fmt: str) -> str:
        """The decoder a large photo in Pillow format ``fmt`` (e.g. ``WEBP``) goes through: ``libvips X.Y.Z`` or
        ``Pillow X.Y.Z`` (small photos and the exact path: always Pillow; HEIC: libvips unless a Pillow plugin
        reads it)."""
        fmt = fmt.upper()
        pillow = f"Pillow {Image.__version__}"
        if fmt in ("HEIC", "HEIF") and "HEIF" not in Image.OPEN:
            return (vips_decode.version() or "libvips") if vips_decode.wanted(self.decoder) else "none installed"
        if self.fast and fmt in self._vips_formats() and vips_decode.wanted(self.decoder):
            return vips_decode.version() or "libvips"
        return pillow

    def _vips_formats(self) -> tuple[str, ...]:
        return VIPS_FORMATS if self.decoder == "libvips" else VIPS_AUTO_FORMATS

    def load(self, source: ImageSource) -> Image.Image:
        """Decode ``source`` into an upright RGB PIL image, reduced when the fast path applies."""
        return self._decode(source)[0]

    def _decode(self, source: ImageSource) -> tuple[Image.Image, tuple[float, float], tuple[int, int]]:
        """(upright RGB image, how many full-size pixels one of its pixels spans along x and y, the full upright
        size)."""
        name = _describe(source)
        # Image.open reads only the header, so the size is checked before any pixel is decoded. PIL's own
        # (global) bomb limit is left alone: changing it per call would race between threads.
        try:
            data = _read(source)
            try:
                image = _open(source, data)
            except UnidentifiedImageError:
                if data is None or not vips_decode.is_heif(data) or not vips_decode.wanted(self.decoder):
                    raise
                return self._decode_heif(data)  # Pillow cannot read it; libheif can when it is AV1-coded
            _check_size(image.size)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animated GIF/WebP/TIFF: the first frame is the photo
            orientation = _orientation(image, data) if self.exif_transpose else 1
            full_size = image.size[::-1] if orientation in _SWAPPED_ORIENTATIONS else image.size
            reduction = self._reduction_before_decode(full_size)
            if (
                data is not None
                and reduction > 1
                and orientation is not None
                and image.format in self._vips_formats()
                and image.mode in vips_decode.MODES["JPEG" if image.format == "MPO" else image.format]
                and vips_decode.wanted(self.decoder)
            ):
                try:
                    return self._decode_vips(data, image, orientation, full_size, reduction)
                except vips_decode.VipsDecodeError:
                    pass  # Pillow decodes it below and has the last word, as without libvips
            scale = 1
            if reduction > 1 and image.format in ("JPEG", "MPO") and not isinstance(source, Image.Image):
                factor = _draft_factor(reduction, self.gap)
                width = image.width
                drafted = image.draft(None, (width // factor, image.height // factor)) if factor > 1 else None
                if drafted is not None:
                    scale = round(width / drafted[1][2])  # the DCT scale libjpeg really uses
            image.load()
            if orientation != 1:  # exif_transpose copies even an upright image: ~80 ms at 12 megapixels
                image = ImageOps.exif_transpose(image) or image
            if image.width == 0 or image.height == 0:
                raise InvalidImageError("image has no pixels")
            remaining = int(reduction / scale // self.gap)
            if remaining >= 2:
                image = _reduced_rgb(image, remaining, self.pad_value)
                scale *= remaining
            else:
                image = _to_rgb(image, self.pad_value)
            return image, (float(scale), float(scale)), (full_size if scale > 1 else image.size)
        except InvalidImageError as exc:
            raise InvalidImageError(f"{name}: {exc}") from None
        except Image.DecompressionBombError as exc:
            raise InvalidImageError(
                f"{name}: image too large, over the {MAX_IMAGE_PIXELS:,}-pixel limit ({exc})"
            ) from None
        except UnidentifiedImageError:
            raise InvalidImageError(f"{name}: not a recognised image format") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise InvalidImageError(f"{name}: corrupt or truncated image ({exc})") from None

    def _decode_vips(
        self, data: bytes, image: Image.Image, orientation: int, full_size: tuple[int, int], reduction: float
    ) -> tuple[Image.Image, tuple[float, float], tuple[int, int]]:
        """``_decode`` through libvips: the same reductions as the Pillow path (PNG: a smaller box, leaving
        ``lossless_gap`` x the input), then the same orientation."""
        fmt = "JPEG" if image.format == "MPO" else str(image.format)
        shrink = _draft_factor(reduction, self.gap) if fmt == "JPEG" else 1
        gap = self.lossless_gap if fmt == "PNG" else self.gap
        factor = max(1, int(reduction / shrink // gap))
        pixels, (scale_x, scale_y) = vips_decode.decode(data, fmt, image.size, factor, shrink, self.pad_value)
        reduced = Image.fromarray(pixels, "RGB")
        if fmt not in vips_decode.UPRIGHT_FORMATS and orientation != 1:
            reduced = reduced.transpose(_TRANSPOSE[orientation])
            if orientation in _SWAPPED_ORIENTATIONS:
                scale_x, scale_y = scale_y, scale_x
        return reduced, (scale_x, scale_y), full_size

    def _decode_heif(self, data: bytes) -> tuple[Image.Image, tuple[float, float], tuple[int, int]]:
        """A HEIC/HEIF file Pillow cannot open, through libheif: size checked from its header first."""
        try:
            full_size = vips_decode.heif_size(data)
            _check_size(full_size)
            reduction = self._reduction_before_decode(full_size)
            factor = max(1, int(reduction // self.gap)) if reduction > 1 else 1
            pixels, scale = vips_decode.decode(data, "HEIF", full_size, factor, 1, self.pad_value)
        except vips_decode.VipsDecodeError as exc:
            raise InvalidImageError(
                f"corrupt or undecodable HEIF image (libheif in libvips: {exc}); the libvips wheel decodes AV1 "
                "HEIF/AVIF only: HEVC-coded HEIC photos, as phones take them, need the optional pillow-heif package"
            ) from None
        image = Image.fromarray(pixels, "RGB")
        return image, scale, (full_size if scale != (1.0, 1.0) else image.size)

    def _reduction_before_decode(self, full_size: tuple[int, int]) -> float:
        """The fast path's reduction for an image of this upright size, 1.0 when it does not apply."""
        if not self.fast or self.resample == "nearest" or full_size[0] == 0 or full_size[1] == 0:
            return 1.0
        reduction = _reduction(full_size, self.height, self.width, self.fit)
        return reduction if reduction >= 2 * self.gap else 1.0

    def _fit_reduced(self, image: Image.Image, scale: tuple[float, float], full_size: tuple[int, int]) -> np.ndarray:
        """``fit_image`` for an image reduced ``scale`` = (x, y) times: the geometry (padding, crop) is computed
        at full size and mapped onto the reduced pixels with sub-pixel precision, so edges land where the exact
        path puts them instead of up to ``scale`` source pixels away."""
        w, h = full_size
        sx, sy = scale
        out = (self.width, self.height)
        resample = RESAMPLING[self.resample]
        if self.fit == "resize":
            return np.asarray(image.resize(out, resample, box=(0, 0, w / sx, h / sy)), dtype=np.uint8)
        if self.fit == "center_crop_then_resize":
            left, top, crop_w, crop_h = _crop_box(w, h, self.height, self.width)
            box = (left / sx, top / sy, (left + crop_w) / sx, (top + crop_h) / sy)
            return np.asarray(image.resize(out, resample, box=box), dtype=np.uint8)
        canvas_w, canvas_h = _canvas(w, h, self.height, self.width)
        if (canvas_w, canvas_h) == (w, h):  # already the model's aspect: no padding, no canvas copy
            return np.asarray(image.resize(out, resample, box=(0, 0, w / sx, h / sy)), dtype=np.uint8)
        left, top = (canvas_w - w) // 2, (canvas_h - h) // 2
        # Paste at whole reduced pixels (rounded up); the full canvas then starts a fraction (dx, dy) in.
        paste_x, paste_y = math.ceil(left / sx), math.ceil(top / sy)
        dx, dy = paste_x - left / sx, paste_y - top / sy
        size = (math.ceil(dx + canvas_w / sx - 1e-9), math.ceil(dy + canvas_h / sy - 1e-9))
        canvas = Image.new("RGB", size, self.pad_value)
        canvas.paste(image, (paste_x, paste_y))
        box = (dx, dy, min(size[0], dx + canvas_w / sx), min(size[1], dy + canvas_h / sy))
        return np.asarray(canvas.resize(out, resample, box=box), dtype=np.uint8)

    def fit_image(self, image: Image.Image) -> np.ndarray:
        """Bring an RGB image to height x width as the spec's ``fit`` says (uint8 HxWx3)."""
        if self.fit == "pad_to_aspect_then_resize":
            image = _pad_to_aspect(image, self.height, self.width, self.pad_value)
        elif self.fit == "center_crop_then_resize":
            left, top, crop_w, crop_h = _crop_box(image.width, image.height, self.height, self.width)
            if (crop_w, crop_h) != image.size:
                image = image.crop((left, top, left + crop_w, top + crop_h))
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), RESAMPLING[self.resample])
        return np.asarray(image, dtype=np.uint8)

    def to_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Stack preprocessed uint8 images into the model's float32 input (range, mean/std, layout)."""
        batch = np.stack(images).astype(np.float32)
        low, high = self.value_range
        if (low, high) != (0.0, 255.0):
            batch = batch * np.float32((high - low) / 255.0) + np.float32(low)
        if self.mean is not None:
            batch -= np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            batch /= np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if self.layout == "NCHW" else batch


def _canvas(w: int, h: int, height: int, width: int) -> tuple[int, int]:
    """Smallest canvas with the target aspect that contains a w x h image."""
    if w * height > h * width:
        return w, max(h, round(w * height / width))
    return max(w, round(h * width / height)), h


def _pad_to_aspect(image: Image.Image, height: int, width: int, pad: tuple[int, int, int]) -> Image.Image:
    w, h = image.size
    canvas_w, canvas_h = _canvas(w, h, height, width)
    if (canvas_w, canvas_h) == (w, h):
        return image
    canvas = Image.new("RGB", (canvas_w, canvas_h), pad)
    canvas.paste(image, ((canvas_w - w) // 2, (canvas_h - h) // 2))
    return canvas


def _crop_box(w: int, h: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the centred crop with the target aspect."""
    if w * height > h * width:
        crop_w, crop_h = max(1, round(h * width / height)), h
    else:
        crop_w, crop_h = w, max(1, round(w * height / width))
    return (w - crop_w) // 2, (h - crop_h) // 2, crop_w, crop_h


# -- building a preprocessor from a spec ---------------------------------------------------------------------------


def _unsupported(key: str, value: Any, allowed: str) -> BundleError:
    return BundleError(f"preprocessing {key}={value!r} is not supported (supported: {allowed})")


def build_preprocessor(
    spec: PreprocessSpec | Mapping[str, Any] | None,
    height: int,
    width: int,
    fast: bool | None = None,
    decoder: str = "auto",
) -> Preprocessor:
    """The preprocessing callable for a bundle's spec at the model's input size.

    ``spec`` is the manifest's typed :class:`~fashion.runtime.manifest.PreprocessSpec` (a JSON mapping or None,
    the shipped spec, is read into one first): its fields are already checked, so what is left here is
    whether this runtime implements each value. A spec it cannot honour (or a key it does not know) is a
    BundleError naming the key at load time, instead of feeding the model wrong pixels.
    ``fast`` switches the reduced-size decoding of large photos (default: on, see FAST_DECODE_DEFAULT);
    ``decoder`` picks their decoder (``auto``: libvips where installed; ``pillow``; ``libvips``).
    """
    if not isinstance(spec, PreprocessSpec):
        spec = PreprocessSpec.from_dict(dict(spec or {}))
    if spec.extra:
        known = ", ".join(f.name for f in dataclasses.fields(PreprocessSpec) if f.name != "extra")
        raise BundleError(f"preprocessing keys {sorted(spec.extra)} are not supported (known: {known})")
    if int(height) < 1 or int(width) < 1:
        raise BundleError(f"model input size {height}x{width} is not positive")
    supported = {
        "color": ("RGB",),
        "fit": FITS,
        "resample": tuple(RESAMPLING),
        "dtype": ("float32",),
        "layout": LAYOUTS,
    }
    for key, allowed in supported.items():
        if getattr(spec, key) not in allowed:
            raise _unsupported(key, getattr(spec, key), ", ".join(allowed))
    return Preprocessor(
        height=int(height),
        width=int(width),
        fit=spec.fit,
        resample=spec.resample,
        pad_value=spec.pad_rgb,
        exif_transpose=spec.exif_transpose,
        value_range=(float(spec.range[0]), float(spec.range[1])),
        mean=spec.mean,
        std=spec.std,
        layout=spec.layout,
        fast=FAST_DECODE_DEFAULT if fast is None else bool(fast),
        decoder=decoder,
    )


# -- the historical functions, now thin wrappers over the default spec ---------------------------------------------

_EXACT = Preprocessor(height=1, width=1, fast=False)


def load_image(source: ImageSource) -> Image.Image:
    """Decode ``source`` into an upright full-size RGB PIL image, or raise InvalidImageError."""
    return _EXACT.load(source)


def fit_to_input(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Pad ``image`` with white to the target aspect ratio, then resize to height x width (uint8 HxWx3)."""
    return Preprocessor(height=height, width=width).fit_image(image)


def preprocess(source: ImageSource, height: int, width: int, spec: Any = None, fast: bool | None = None) -> np.ndarray:
    """Any supported image input -> uint8 array of shape (height, width, 3), as ``spec`` (default: shipped spec) says."""
    if spec is None and fast is None:
        return Preprocessor(height=height, width=width)(source)
    return build_preprocessor(spec, height, width, fast=fast)(source)


def to_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack preprocessed uint8 images into the model's float32 NHWC input (shipped spec: 0-255, no scaling)."""
    return np.stack(images).astype(np.float32)
