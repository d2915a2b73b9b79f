"""Named evaluation sets beside the test split: sharp copies, shifted photos and other shops' photos.

Every set is a frame for the one labelled-image loader (:class:`~fashion.data.images.LabelledData`) plus the
preprocessor that reads it, so each model (ONNX through the runtime, Keras through its backend) scores the
same pixels:

* ``thumbnail``: the split's 60x80 photos as they are (the in-domain number);
* ``sharp``: the sharper copies (168x224 or 225x300) of the split's ids that have one, and
  ``thumbnail@sharp-ids``: the thumbnails of exactly those ids (a paired comparison);
* shifts applied to each thumbnail before the model's preprocessing (``SHIFTS``): plain grey, beige or
  dark background instead of the white studio one (flood fill from the corners), the product smaller and
  off centre, a closer crop, a stretched aspect, blur, heavy JPEG compression;
* ``other-shops`` / ``other-shops-product``: other shops' photos labelled by eye with this project's
  vocabulary (evaluation only; ``labels.csv`` with ``file``, ``setting`` and the heads it labels).

Shifts are deterministic: each photo's parameters come from a checksum of its path.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFilter

from fashion.runtime.preprocess import ImageSource, Preprocessor, load_image

from .errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: Backgrounds a shop photo may have instead of Myntra's white: light grey, beige, dark grey.
BACKGROUNDS = ((200, 200, 200), (226, 212, 188), (90, 90, 90))


def _seed(path: str) -> int:
    return zlib.crc32(path.encode("utf-8", "surrogateescape"))


def _background(image: Image.Image, seed: int) -> Image.Image:
    """The white studio background (connected to a corner) flood-filled with a plain colour."""
    out = image.copy()
    colour = BACKGROUNDS[seed % len(BACKGROUNDS)]
    w, h = out.size
    for corner in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        pixel = out.getpixel(corner)
        if isinstance(pixel, tuple) and min(pixel[:3]) >= 225:
            ImageDraw.floodfill(out, corner, colour, thresh=24)
    return out


def _smaller(image: Image.Image, seed: int) -> Image.Image:
    """The product at 2/3 of the frame, placed off centre on white (a looser shop framing)."""
    w, h = image.size
    canvas = Image.new("RGB", (w * 3 // 2, h * 3 // 2), (255, 255, 255))
    x, y = seed % (canvas.width - w + 1), (seed // 7) % (canvas.height - h + 1)
    canvas.paste(image, (x, y))
    return canvas


def _crop(image: Image.Image, seed: int) -> Image.Image:
    """A closer crop: 80% of each side, centred."""
    w, h = image.size
    left, top = w // 10, h // 10
    return image.crop((left, top, w - left, h - top))


def _aspect(image: Image.Image, seed: int) -> Image.Image:
    """Stretched 1.3x wider or taller (a photo resized to the wrong aspect)."""
    w, h = image.size
    size = (round(w * 1.3), h) if seed % 2 else (w, round(h * 1.3))
    return image.resize(size, Image.Resampling.BILINEAR)


def _blur(image: Image.Image, seed: int) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=1.0))


def _jpeg(image: Image.Image, seed: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=30)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


#: Named shifts of a photo (upright RGB PIL image, seed) -> shifted photo.
SHIFTS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "background": _background,
    "smaller": _smaller,
    "crop": _crop,
    "aspect": _aspect,
    "blur": _blur,
    "jpeg-q30": _jpeg,
}


@dataclass(frozen=True)
class ShiftedPreprocessor(Preprocessor):
    """The model's preprocessing of a photo after one named shift (``SHIFTS``)."""

    shift: str = "blur"

    def __call__(self, source: ImageSource) -> Any:
        if self.shift not in SHIFTS:
            raise DataError(f"unknown shift {self.shift!r}; known: {', '.join(SHIFTS)}")
        image = load_image(source)
        seed = _seed(str(source)) if isinstance(source, (str, os.PathLike)) else 0
        return self.fit_image(SHIFTS[self.shift](image, seed))

    @classmethod
    def of(cls, preprocessor: Preprocessor, shift: str) -> ShiftedPreprocessor:
        values = {f.name: getattr(preprocessor, f.name) for f in dataclasses.fields(Preprocessor)}
        return cls(**values, shift=shift)


def sharp_copies_dir(folder: str | os.PathLike[str]) -> Path:
    """The folder of ``<id>.jpg`` sharp copies (``folder`` or its ``images/``)."""
    root = Path(folder)
    images = root / "images" if (root / "images").is_dir() else root
    if not images.is_dir():
        raise DataError(f"{root}: no such folder of sharp copies")
    return images


def sharp_frame(frame: pd.DataFrame, folder: str | os.PathLike[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose id has a sharper copy in ``folder``, with ``path`` pointing at it."""
    images = sharp_copies_dir(folder)
    present = {int(p.stem) for p in images.glob("*.jpg") if p.stem.isdigit()}
    rows = frame[frame["id"].astype(int).isin(present)].copy()
    rows["path"] = [str(images / f"{int(i)}.jpg") for i in rows["id"]]
    return rows.reset_index(drop=True)


def other_shops_frame(folder: str | os.PathLike[str], heads: Sequence[str]) -> pd.DataFrame:
    """``labels.csv`` of an other-shops folder as a labelled frame (blank labels stay missing)."""
    import pandas as pd

    root = Path(folder)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{root}: no labels.csv (expected id,file,setting and the heads)")
    frame = pd.read_csv(labels, dtype=str, keep_default_na=False)
    for column in ("id", "file"):
        if column not in frame.columns:
            raise DataError(f"{labels}: no {column!r} column")
    out = pd.DataFrame({"id": frame["id"].astype(int), "path": [str(root / f) for f in frame["file"]]})
    out["setting"] = frame["setting"] if "setting" in frame.columns else "product"
    for head in heads:
        out[head] = [v if v else None for v in frame[head]] if head in frame.columns else None
    return out


@dataclass(frozen=True)
class EvalSet:
    """One named set: its labelled frame and the preprocessor that reads its photos."""

    name: str
    frame: pd.DataFrame
    preprocessor: Preprocessor
    note: str = ""


def evaluation_sets(
    frame: pd.DataFrame,
    preprocessor: Preprocessor,
    heads: Sequence[str],
    sharp: str | os.PathLike[str] | None = None,
    other_shops: str | os.PathLike[str] | None = None,
    shifts: Sequence[str] = tuple(SHIFTS),
) -> list[EvalSet]:
    """The named sets for ``frame`` (one split's rows), in report order; sets whose folder is absent are left out."""
    sets = [EvalSet("thumbnail", frame, preprocessor, "the split's 60x80 photos")]
    if sharp is not None:
        sharp_rows = sharp_frame(frame, sharp)
        if len(sharp_rows):
            same = frame[frame["id"].isin(sharp_rows["id"])].reset_index(drop=True)
            sets.append(EvalSet("thumbnail@sharp-ids", same, preprocessor, "thumbnails of the ids with a sharp copy"))
            sets.append(EvalSet("sharp", sharp_rows, preprocessor, "their sharper copies"))
    for shift in shifts:
        if shift not in SHIFTS:
            raise DataError(f"unknown shift {shift!r}; known: {', '.join(SHIFTS)}")
        sets.append(EvalSet(shift, frame, ShiftedPreprocessor.of(preprocessor, shift), SHIFTS[shift].__doc__ or ""))
    if other_shops is not None:
        others = other_shops_frame(other_shops, heads)
        sets.append(EvalSet("other-shops", others, preprocessor, "other shops' photos (all settings)"))
        product = others[others["setting"] == "product"].reset_index(drop=True)
        sets.append(EvalSet("other-shops-product", product, preprocessor, "the product alone, plain background"))
    return sets


def load_set(
    evalset: EvalSet, vocabularies: Mapping[str, Sequence[str]], workers: int | None = None, progress: bool = False
):
    """The set's photos decoded and labelled through the one labelled-image loader."""
    from .images import LabelledData

    prep = evalset.preprocessor
    data = LabelledData(
        evalset.frame, vocabularies, (prep.height, prep.width), workers=workers, progress=progress, preprocessor=prep
    )
    return data.images(desc=f"loading {evalset.name}")


__all__ = [
    "BACKGROUNDS",
    "SHIFTS",
    "EvalSet",
    "ShiftedPreprocessor",
    "evaluation_sets",
    "load_set",
    "other_shops_frame",
    "sharp_copies_dir",
    "sharp_frame",
]
