"""Real, labelled images for the export gates, read through the shared preprocessing.

Parity checks use any split (val first), INT8 calibration uses train only, accuracy gates and
reports use val or test. Subsets are drawn with a fixed seed so reruns see the same images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashion.runtime.errors import InvalidImageError
from fashion.runtime.preprocess import preprocess, to_batch

from .errors import ExportError

DATA_ENV = "FASHION_SHARED_DATA"
SHARED_DATA = Path("shared") / "datasets" / "fashion-product-images"
DEFAULT_SPLIT = Path("data") / "splits" / "fashion-product-images.csv"
SAMPLE_SEED = 20261127


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data DIR, then $FASHION_SHARED_DATA, then ../shared or ./shared beside the working directory."""
    if explicit:
        return Path(explicit)
    candidates = [os.environ.get(DATA_ENV)] + [str(base / SHARED_DATA) for base in (Path.cwd().parent, Path.cwd())]
    for candidate in candidates:
        if candidate and (Path(candidate) / "styles.csv").is_file():
            return Path(candidate)
    raise ExportError(
        "no labelled images for the export gates: pass --data DIR (Kaggle layout: styles.csv + images/) "
        f"or set ${DATA_ENV}; looked in {[c for c in candidates if c]}"
    )


def resolve_split_file(explicit: str | os.PathLike | None, manifest: dict) -> Path:
    """--split FILE, then the split recorded in the bundle, then data/splits/ in the working directory."""
    recorded = (manifest.get("split") or {}).get("file")
    for candidate in (explicit, recorded, DEFAULT_SPLIT):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ExportError(f"no split file: pass --split FILE (tried {explicit!r}, {recorded!r}, {str(DEFAULT_SPLIT)!r})")


@dataclass
class ImageSet:
    """Preprocessed images (uint8 NHWC) with their integer labels per head (-1 where missing)."""

    split: str
    ids: np.ndarray
    images: np.ndarray
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self) -> np.ndarray:
        """The model input: float32 NHWC, raw 0..255."""
        return to_batch(list(self.images)) if len(self.images) else np.zeros((0,) + self.images.shape[1:], np.float32)


class ExportData:
    """The labelled dataset joined with the split, loaded once, preprocessed on demand."""

    def __init__(self, data_dir: Path, split_file: Path, vocabularies: dict[str, list[str]],
                 height: int, width: int, progress: bool = True):
        from fashion.data.dataset import load_dataset
        from fashion.data.labels import encode
        from fashion.data.split import attach_split, read_split

        frame, _ = load_dataset(data_dir)
        self.frame = attach_split(frame, read_split(split_file)).sort_values("id").reset_index(drop=True)
        if self.frame.empty:
            raise ExportError(f"{data_dir}: none of its images are listed in {split_file}")
        self.labels = encode(self.frame, vocabularies)
        self.height, self.width = height, width
        self.progress = progress
        self.data_dir, self.split_file = data_dir, split_file
        self._cache: dict[int, np.ndarray] = {}

    def count(self, split: str) -> int:
        return int((self.frame["split"] == split).sum())

    def images(self, split: str, limit: int | None = None, fill_from: tuple[str, ...] = (),
               desc: str | None = None) -> ImageSet:
        """Up to ``limit`` images of ``split`` (all when None or 0), a seeded sample when there are more.

        ``fill_from`` tops the set up from other splits when ``split`` alone has too few (parity checks
        only care that the images are real).
        """
        positions = self._sample(np.flatnonzero(self.frame["split"].to_numpy() == split), limit)
        for other in fill_from:
            if limit and len(positions) < limit:
                extra = np.flatnonzero(self.frame["split"].to_numpy() == other)
                positions = np.concatenate([positions, self._sample(extra, limit - len(positions))])
        ids, arrays, keep = [], [], []
        rows = self.frame.iloc[positions]
        for position, image_id, path in tqdm(zip(positions, rows["id"], rows["path"]), total=len(positions),
                                             desc=desc or f"loading {split} images", unit="img",
                                             disable=not self.progress, leave=False):
            array = self._load(int(image_id), path)
            if array is None:
                continue
            ids.append(int(image_id))
            arrays.append(array)
            keep.append(position)
        images = np.stack(arrays) if arrays else np.zeros((0, self.height, self.width, 3), np.uint8)
        return ImageSet(split=split, ids=np.array(ids, dtype=np.int64), images=images,
                        labels={head: values[keep] for head, values in self.labels.items()})

    @staticmethod
    def _sample(positions: np.ndarray, limit: int | None) -> np.ndarray:
        if not limit or len(positions) <= limit:
            return positions
        rng = np.random.default_rng(SAMPLE_SEED)
        return np.sort(rng.choice(positions, size=limit, replace=False))

    def _load(self, image_id: int, path: str) -> np.ndarray | None:
        if image_id not in self._cache:
            try:
                self._cache[image_id] = preprocess(path, self.height, self.width)
            except InvalidImageError:
                return None  # the dataset reader counts unreadable images; a gate just skips them
        return self._cache[image_id]
