"""Image preprocessing, defined once.

Training, export parity checks, benchmarks, the demo and the runtime all call these functions,
so a photo becomes exactly the same tensor everywhere:

1. decode (path, bytes, PIL image or HxWx3 uint8 array), apply the EXIF orientation;
2. convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB, compositing transparency on white;
3. pad with white to the model's aspect ratio (product photos sit on white), centred;
4. resize to the model's input size with bilinear filtering;
5. hand the model raw 0-255 RGB as float32 NHWC (the model normalises internally).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImageError

# A decompression bomb (e.g. 20000x20000) is refused before its pixels are decoded.
MAX_IMAGE_PIXELS = 50_000_000
PAD_VALUE = 255
RESAMPLE = Image.Resampling.BILINEAR

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

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


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImageError("no such file")
        data = path.read_bytes()
    else:
        raise InvalidImageError(f"unsupported image input type {type(source).__name__}")
    if not data:
        raise InvalidImageError("empty file (0 bytes)")
    return Image.open(io.BytesIO(data))


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise InvalidImageError(f"array images must be uint8, got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return Image.fromarray(np.ascontiguousarray(array))
    raise InvalidImageError(f"array images must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale the full range down to 8 bits instead of clipping.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (PAD_VALUE, PAD_VALUE, PAD_VALUE, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def load_image(source: ImageSource) -> Image.Image:
    """Decode ``source`` into an upright RGB PIL image, or raise InvalidImageError."""
    name = _describe(source)
    # Image.open reads only the header, so the size is checked before any pixel is decoded. PIL's own
    # (global) bomb limit is left alone: changing it per call would race between threads.
    try:
        image = _open(source)
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InvalidImageError(
                f"{image.width}x{image.height} pixels exceeds the {MAX_IMAGE_PIXELS:,}-pixel limit"
            )
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF/WebP/TIFF: the first frame is the photo
        image.load()
        image = ImageOps.exif_transpose(image) or image
        if image.width == 0 or image.height == 0:
            raise InvalidImageError("image has no pixels")
        return _to_rgb(image)
    except InvalidImageError as exc:
        raise InvalidImageError(f"{name}: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{name}: image too large, over the {MAX_IMAGE_PIXELS:,}-pixel limit ({exc})") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImageError(f"{name}: corrupt or truncated image ({exc})") from None


def fit_to_input(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Pad ``image`` with white to the target aspect ratio, then resize to height x width (uint8 HxWx3)."""
    w, h = image.size
    # Smallest canvas with the target aspect that contains the image.
    if w * height > h * width:
        canvas_w, canvas_h = w, max(h, round(w * height / width))
    else:
        canvas_w, canvas_h = max(w, round(h * width / height)), h
    if (canvas_w, canvas_h) != (w, h):
        canvas = Image.new("RGB", (canvas_w, canvas_h), (PAD_VALUE,) * 3)
        canvas.paste(image, ((canvas_w - w) // 2, (canvas_h - h) // 2))
        image = canvas
    if image.size != (width, height):
        image = image.resize((width, height), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)


def preprocess(source: ImageSource, height: int, width: int) -> np.ndarray:
    """Any supported image input -> uint8 array of shape (height, width, 3)."""
    return fit_to_input(load_image(source), height, width)


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """Stack preprocessed uint8 images into the model's float32 NHWC input."""
    return np.stack(images).astype(np.float32)
