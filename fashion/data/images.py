"""The one labelled-image loader: a split (or a whole folder), an optional seeded subset, decoded in parallel.

Training, the export gates and the benchmarks all read "the images of a split" through this module,
so they share one policy:

* rows are ordered by image id; ``limit`` draws a seeded sample (``SPLIT_SEED``), kept in id order,
  so reruns and different tools see the same images;
* every image goes through the runtime's preprocessing (the bundle's spec when one is given), so a
  model is scored on exactly the pixels it is served;
* an unreadable image is skipped *and* reported (``.skipped``: id and reason), never silently dropped
  and never fatal;
* labels are integers per head with ``MISSING`` (-1) for an empty label or one the vocabulary lacks;
  names come back only through the vocabularies.

Decoding runs on a thread pool: Pillow releases the GIL while decoding, and threads are safe to start
after JAX/TensorFlow have (a fork-based process pool deadlocks there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fashion.runtime.errors import InvalidImageError
from fashion.runtime.preprocess import Preprocessor

from .errors import DataError
from .paths import SPLIT_SEED

if TYPE_CHECKING:
    import pandas as pd

#: Default decoding threads: enough to keep a few cores busy without starving a shared machine.
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def make_preprocessor(size: tuple[int, int], preprocessor: Preprocessor | None = None) -> Preprocessor:
    """``preprocessor`` when given (it must match ``size``), else the shipped preprocessing at ``size``."""
    height, width = int(size[0]), int(size[1])
    if preprocessor is None:
        return Preprocessor(height=height, width=width)
    if (preprocessor.height, preprocessor.width) != (height, width):
        raise ValueError(f"preprocessor is {preprocessor.height}x{preprocessor.width}, size is {height}x{width}")
    return preprocessor


@dataclass(frozen=True)
class DecodedImages:
    """``images[i]`` is ``paths[i]`` preprocessed; a failed slot holds the pad colour and is listed in ``failed``."""

    images: np.ndarray
    failed: tuple[tuple[int, str], ...] = ()

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the slots that decoded."""
        mask = np.ones(len(self.images), dtype=bool)
        mask[[position for position, _ in self.failed]] = False
        return mask


def _decode_one(preprocessor: Preprocessor, path: str) -> tuple[np.ndarray | None, str]:
    try:
        return preprocessor(path), ""
    except (InvalidImageError, OSError) as exc:
        return None, str(exc)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def decode_images(
    paths: Sequence[str | os.PathLike[str]],
    size: tuple[int, int],
    workers: int | None = None,
    progress: bool = False,
    desc: str = "decoding",
    preprocessor: Preprocessor | None = None,
) -> DecodedImages:
    """Preprocess ``paths`` in order into one uint8 (N, height, width, 3) array, on ``workers`` threads.

    Nothing is dropped here (positions stay aligned with the caller's rows); ``failed`` says which
    slots could not be decoded and why.
    """
    from tqdm import tqdm

    prep = make_preprocessor(size, preprocessor)
    names = [str(p) for p in paths]
    out = np.full((len(names), prep.height, prep.width, 3), prep.pad_value, dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    workers = workers or default_workers()
    bar = tqdm(total=len(names), desc=desc, unit="img", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else _Inline() as pool:
        position = 0
        # Bounded chunks keep at most a chunk of decoded images in flight, whatever the dataset size.
        for chunk in _chunks(names, 256 * workers):
            for array, reason in pool.map(lambda path: _decode_one(prep, path), chunk):
                if array is None:
                    failed.append((position, reason))
                else:
                    out[position] = array
                position += 1
                bar.update(1)
    bar.close()
    return DecodedImages(images=out, failed=tuple(failed))


class _Inline:
    """A stand-in for the pool with one worker: same ``map``, no threads."""

    def map(self, fn: Any, items: Iterable[str]) -> Iterator[Any]:
        return map(fn, items)

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass
class LabelledImages:
    """Preprocessed images (uint8 NHWC) with integer labels per head (-1 where missing or unknown)."""

    subset: str | None
    ids: np.ndarray
    images: np.ndarray
    labels: dict[str, np.ndarray]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    preprocessor: Preprocessor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self) -> np.ndarray:
        """The model input: float32 in the layout and range the preprocessing spec says (shipped: NHWC, 0..255)."""
        prep = self.preprocessor or Preprocessor(height=self.images.shape[1], width=self.images.shape[2])
        if not len(self.images):
            shape = (0, 3) + self.images.shape[1:3] if prep.layout == "NCHW" else (0,) + self.images.shape[1:]
            return np.zeros(shape, np.float32)
        return prep.to_batch(list(self.images))

    def label_names(self, vocabularies: Mapping[str, Sequence[str]], head: str) -> list[str | None]:
        """The labels of ``head`` as class names (None where missing or unknown)."""
        classes = vocabularies[head]
        return [classes[i] if i >= 0 else None for i in self.labels[head]]


def _count_labels(frame: pd.DataFrame, vocabularies: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    """Per head, how many rows have no label and how many have one the vocabulary lacks."""
    missing, unknown = {}, {}
    for head, classes in vocabularies.items():
        known = set(classes)
        values = [v for v in frame[head]] if head in frame else [None] * len(frame)
        missing[head] = sum(1 for v in values if not isinstance(v, str))
        unknown[head] = sum(1 for v in values if isinstance(v, str) and v not in known)
    return {"missing_labels": missing, "unknown_labels": unknown}


def seeded_subset(positions: np.ndarray, limit: int | None, seed: int = SPLIT_SEED) -> np.ndarray:
    """All of ``positions`` when ``limit`` is None/0 or not smaller, else a seeded sample of ``limit``, sorted."""
    if not limit or len(positions) <= limit:
        return positions
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(positions, size=limit, replace=False))


class LabelledData:
    """A labelled dataset (optionally joined with a split), read once; images decoded on demand and cached.

    Build it with :meth:`open` (a folder and a split file) or directly from a frame that already has
    ``id``, ``path``, the heads and, for subsets, a ``split`` column (what ``load_dataset`` +
    ``attach_split`` return).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        vocabularies: Mapping[str, Sequence[str]],
        size: tuple[int, int],
        workers: int | None = None,
        progress: bool = False,
        preprocessor: Preprocessor | None = None,
        source: Mapping[str, Any] | None = None,
    ):
        from .labels import encode

        missing = [h for h in vocabularies if h not in frame.columns]
        if missing:
            raise DataError(f"the labelled data has no column for heads {missing}")
        self.frame = frame.sort_values("id").reset_index(drop=True)
        self.vocabularies = {head: list(classes) for head, classes in vocabularies.items()}
        self.labels = encode(self.frame, self.vocabularies)
        self.preprocessor = make_preprocessor(size, preprocessor)
        self.workers = workers
        self.progress = progress
        self.source: dict[str, Any] = dict(source or {})
        self._cache: dict[int, np.ndarray] = {}
        self._failed: dict[int, str] = {}

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        split_file: str | os.PathLike[str] | None,
        vocabularies: Mapping[str, Sequence[str]],
        size: tuple[int, int],
        workers: int | None = None,
        progress: bool = False,
        preprocessor: Preprocessor | None = None,
    ) -> LabelledData:
        """Read ``data_dir`` (Kaggle layout) and, when given, keep only the ids listed in ``split_file``."""
        from fashion.runtime.bundle import sha256_file

        from .dataset import load_dataset
        from .split import attach_split, read_split

        frame, report = load_dataset(data_dir)
        source: dict[str, Any] = {"data": str(data_dir), "styles_csv": report.styles_csv, "rows_with_image": len(frame)}
        if split_file is not None:
            frame = attach_split(frame, read_split(split_file))
            source.update(split_file=str(split_file), split_sha256=sha256_file(split_file))
            if frame.empty:
                raise DataError(f"{data_dir}: none of its images are listed in {split_file}")
        return cls(
            frame, vocabularies, size, workers=workers, progress=progress, preprocessor=preprocessor, source=source
        )

    def _positions(self, subset: str | None) -> np.ndarray:
        if subset is None:
            return np.arange(len(self.frame))
        if "split" not in self.frame.columns:
            raise DataError(f"subset {subset!r} asked for, but no split file was given (pass --split-file FILE)")
        return np.flatnonzero(self.frame["split"].to_numpy() == subset)

    def count(self, subset: str | None = None) -> int:
        """How many rows ``subset`` has (all rows when None), before any image is decoded."""
        return len(self._positions(subset))

    def select(
        self, subset: str | None = None, limit: int | None = None, fill_from: Sequence[str] = (), seed: int = SPLIT_SEED
    ) -> np.ndarray:
        """Row positions: ``subset`` (None: all), a seeded sample of ``limit``, topped up from ``fill_from`` splits."""
        positions = seeded_subset(self._positions(subset), limit, seed)
        for other in fill_from:
            if limit and len(positions) < limit:
                extra = seeded_subset(self._positions(other), limit - len(positions), seed)
                positions = np.concatenate([positions, extra])
        return positions

    def images(
        self,
        subset: str | None = None,
        limit: int | None = None,
        fill_from: Sequence[str] = (),
        seed: int = SPLIT_SEED,
        desc: str | None = None,
    ) -> LabelledImages:
        """Up to ``limit`` images of ``subset`` (all when None/0); unreadable ones skipped and listed.

        ``fill_from`` tops the set up from other splits when ``subset`` alone has too few (parity
        checks only need real images).
        """
        positions = self.select(subset, limit, fill_from, seed)
        ids = self.frame["id"].to_numpy(dtype=np.int64)[positions]
        self._decode_missing(ids, positions, desc or f"loading {subset or 'all'} images")
        keep = np.array([int(i) not in self._failed for i in ids], dtype=bool)
        kept_ids, kept_positions = ids[keep], positions[keep]
        prep = self.preprocessor
        images = (
            np.stack([self._cache[int(i)] for i in kept_ids])
            if len(kept_ids)
            else np.zeros((0, prep.height, prep.width, 3), np.uint8)
        )
        skipped = [(int(i), self._failed[int(i)]) for i in ids[~keep]]
        report = {
            **self.source,
            "subset": subset,
            "limit": limit or None,
            "seed": seed,
            "requested": len(ids),
            "images": len(kept_ids),
            "unreadable_images": [i for i, _ in skipped],
            **_count_labels(self.frame.iloc[kept_positions], self.vocabularies),
        }
        return LabelledImages(
            subset=subset,
            ids=kept_ids,
            images=images,
            labels={head: values[kept_positions] for head, values in self.labels.items()},
            skipped=skipped,
            report=report,
            preprocessor=prep,
        )

    def _decode_missing(self, ids: np.ndarray, positions: np.ndarray, desc: str) -> None:
        todo = [(int(i), p) for i, p in zip(ids, positions) if int(i) not in self._cache and int(i) not in self._failed]
        if not todo:
            return
        paths = [str(self.frame["path"].iat[p]) for _, p in todo]
        prep = self.preprocessor
        decoded = decode_images(paths, (prep.height, prep.width), self.workers, self.progress, desc, prep)
        failed = dict(decoded.failed)
        for slot, (image_id, _) in enumerate(todo):
            if slot in failed:
                self._failed[image_id] = failed[slot]
            else:
                self._cache[image_id] = decoded.images[slot]


def load_labelled(
    data_dir: str | os.PathLike[str],
    split_file: str | os.PathLike[str] | None,
    subset: str | None,
    vocabularies: Mapping[str, Sequence[str]],
    size: tuple[int, int],
    limit: int | None = None,
    seed: int = SPLIT_SEED,
    workers: int | None = None,
    fill_from: Sequence[str] = (),
    progress: bool = False,
    preprocessor: Preprocessor | None = None,
) -> LabelledImages:
    """The images of ``subset`` of ``split_file`` (or of the whole folder when ``subset`` is None), labelled.

    One call = :meth:`LabelledData.open` + :meth:`LabelledData.images`; use ``LabelledData`` directly to
    draw several subsets from one read of the labels.
    """
    data = LabelledData.open(data_dir, split_file, vocabularies, size, workers, progress, preprocessor)
    return data.images(subset, limit, fill_from, seed)


def from_frame(
    frame: pd.DataFrame,
    vocabularies: Mapping[str, Sequence[str]],
    size: tuple[int, int],
    workers: int | None = None,
    progress: bool = False,
    desc: str | None = None,
    preprocessor: Preprocessor | None = None,
) -> LabelledImages:
    """Every row of ``frame`` (e.g. one split of a training frame), decoded and labelled."""
    return LabelledData(frame, vocabularies, size, workers, progress, preprocessor).images(desc=desc)


__all__ = [
    "DecodedImages",
    "LabelledData",
    "LabelledImages",
    "decode_images",
    "default_workers",
    "from_frame",
    "load_labelled",
    "make_preprocessor",
    "seeded_subset",
]
