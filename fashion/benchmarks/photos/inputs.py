"""The real-size test photos every check and bench of this package runs on.

The dataset's photos are 60x80 thumbnails; shop photos are 1-12 megapixels. These helpers pick test photos
of a split (all, or a seeded subset) and make real-size versions of them (bicubic upscale, saved as JPEG q90 /
PNG / RGBA PNG cut-out / WebP q90), so content and labels stay those of the test split.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageChops

from fashion.data.errors import DataError

DECODE_SIZES = ((1080, 1440), (2400, 3200))  # (width, height), the dataset's 3:4 portrait aspect
BENCH_SIZES = ((1080, 1440), (2400, 3200), (4000, 3000))
FORMATS = ("JPEG", "PNG", "PNG-RGBA", "WEBP")
SUFFIXES = {"JPEG": "jpg", "PNG": "png", "PNG-RGBA": "png", "WEBP": "webp"}
SEED = 0

#: Formats whose files decode to exactly the pixels written (the exact path of the checks reads those pixels).
LOSSLESS = ("PNG", "PNG-RGBA")


def parse_formats(text: str) -> list[str]:
    """``"JPEG,webp"`` -> ``["JPEG", "WEBP"]``: known formats (any case), in the order given, each once.

    ValueError naming the unknown ones and the choices otherwise (or when none is given)."""
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        what = f"unknown format(s) {', '.join(unknown)}" if unknown else "no format given"
        raise ValueError(f"{text!r}: {what} (choose from {','.join(FORMATS)})")
    return list(dict.fromkeys(names))


def upscale(image: Image.Image, size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    """``image`` resized (bicubic) to ``size`` and encoded as ``fmt`` (JPEG q90, fast PNG, RGBA PNG cut-out, WebP q90)."""
    return encode(as_written(image.resize(size, Image.Resampling.BICUBIC), fmt), fmt)


def as_written(big: Image.Image, fmt: str) -> Image.Image:
    """The pixels ``upscale`` writes as ``fmt``: the photo itself, or for PNG-RGBA a catalogue cut-out (the white
    studio background made transparent)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt != "PNG-RGBA":
        return big
    near_white = [0] * 246 + [255] * 10  # > 245
    red, green, blue = (band.point(near_white) for band in big.convert("RGB").split())
    cut = big.convert("RGBA")
    cut.putalpha(ImageChops.invert(ImageChops.darker(ImageChops.darker(red, green), blue)))  # 0 where all three are
    return cut


def encode(image: Image.Image, fmt: str, png_level: int = 1) -> bytes:
    """``image`` as ``fmt`` file bytes: JPEG q90, PNG at ``png_level`` (both PNG formats), else WebP q90 method 0."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=90)
    elif fmt in ("PNG", "PNG-RGBA"):
        image.save(buffer, "PNG", compress_level=png_level)
    else:
        image.save(buffer, "WEBP", quality=90, method=0)
    return buffer.getvalue()


def split_photos(data_dir: Path, split_file: Path, split: str, subset: int | None, seed: int) -> list[tuple[int, Path]]:
    """(id, path) of the photos of ``split`` found in ``data_dir``, sorted; a seeded ``subset`` of them if given."""
    with open(split_file, newline="", encoding="utf-8") as handle:
        wanted = {int(row["id"]) for row in csv.DictReader(handle) if row["split"] == split}
    from fashion.data.paths import find_layout

    images_dir = find_layout(data_dir)[1]
    photos = sorted((image_id, images_dir / f"{image_id}.jpg") for image_id in wanted)
    photos = [(image_id, path) for image_id, path in photos if path.is_file()]
    if subset and subset < len(photos):
        photos = sorted(random.Random(seed).sample(photos, subset))
    return photos


def sample_photos(
    data_dir: str | os.PathLike, split_file: str | os.PathLike, split: str, count: int, seed: int
) -> list[Path]:
    """Paths of a seeded sample of ``count`` photos of ``split``; DataError (exit 2) when the split has none."""
    photos = [path for _, path in split_photos(Path(data_dir), Path(split_file), split, count, seed)]
    if not photos:
        raise DataError(f"{data_dir}: no photos of split '{split}' found")
    return photos


def make_photo_folder(
    folder: Path, photos: list[Path], sizes: Iterable[tuple[int, int]], formats: Iterable[str], per_cell: int
) -> dict[str, list[Path]]:
    """Write ``per_cell`` upscaled photos per (size, format) into ``folder``; {"WxH/FORMAT": [paths]}."""
    from fashion.runtime.preprocess import load_image

    cells: dict[str, list[Path]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    bases = [load_image(path) for path in photos[:per_cell]]
    for width, height in sizes:
        for fmt in formats:
            cell = f"{width}x{height}/{fmt}"
            cells[cell] = []
            for number, base in enumerate(bases):
                path = folder / f"{width}x{height}_{fmt.lower()}_{number}.{SUFFIXES[fmt]}"
                path.write_bytes(upscale(base, (width, height), fmt))
                cells[cell].append(path)
    return cells


def write_batch_photos(
    folder: Path, photos: list[Path], count: int, size: tuple[int, int], formats: Iterable[str] = ("JPEG",)
) -> list[Path]:
    """``count`` photos upscaled to ``size`` in ``folder``, cycling through ``photos`` and through ``formats``
    (one format: that folder; several: a mixed folder, as a catalogue holds)."""
    from fashion.runtime.preprocess import load_image

    formats = list(formats)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        fmt = formats[number % len(formats)]
        path = folder / f"{number:04d}_{fmt.lower()}.{SUFFIXES[fmt]}"
        path.write_bytes(upscale(load_image(photos[number % len(photos)]), size, fmt))
        paths.append(path)
    return paths
