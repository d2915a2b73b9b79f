"""The training-recipe seam: ``Recipe.fit(train_data, run_dir) -> TrainResult``.

The CLI reads the dataset, the split and the vocabularies once into ``TrainData`` and hands it to
a recipe (``CpuRecipe``: cached activations, blocks 6-7 fine-tuned; ``GpuRecipe``: full fine-tune
on a Keras backend with an accelerator). A recipe returns the trained classifier (float32, ready
for ``write_bundle``), the record stored in the bundle's ``training`` section, and its predictions
on the validation images, so the CLI scores them without decoding or compiling anything again.

To add a recipe: subclass ``Recipe`` with a dataclass of options, implement ``fit``, and add it to
``fashion.train.cli.RECIPES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashion import HEADS

from .errors import TrainError


@dataclass(frozen=True)
class Part:
    """One side of the split: image ids, their files and integer labels per head (-1 = missing)."""

    ids: np.ndarray
    paths: list[str]
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> Part:
        return Part(self.ids[rows], [self.paths[i] for i in rows], {h: v[rows] for h, v in self.labels.items()})


def with_sharp_copies(part: Part, sharp_dir: str | Path) -> tuple[Part, int]:
    """``part`` plus one more row per id that has a sharper copy ``<sharp_dir>/<id>.jpg`` (same labels).

    The sharp copies are the same products at 168x224 or 225x300: training on both teaches the model the
    sharp look of a real shop photo as well as the blurry 60x80 thumbnails. Returns the part and how many
    rows were added.
    """
    folder = Path(sharp_dir)
    if not folder.is_dir():
        raise TrainError(f"{folder}: no such folder of sharp copies")
    images = folder / "images" if (folder / "images").is_dir() else folder
    present = {int(p.stem) for p in images.glob("*.jpg") if p.stem.isdigit()}
    rows = np.flatnonzero([int(i) in present for i in part.ids])
    if not len(rows):
        raise TrainError(f"{images}: none of the {len(part)} ids has a sharp copy")
    extra = part.take(rows)
    paths = [str(images / f"{int(i)}.jpg") for i in extra.ids]
    merged = Part(
        np.concatenate([part.ids, extra.ids]),
        part.paths + paths,
        {h: np.concatenate([v, extra.labels[h]]) for h, v in part.labels.items()},
    )
    return merged, len(rows)


def limited(part: Part, limit: int | None, seed: int = 0) -> Part:
    """A seeded random subset of ``limit`` rows (the whole part when ``limit`` is None or not smaller)."""
    if limit is None or limit >= len(part):
        return part
    rows = np.sort(np.random.default_rng(seed).choice(len(part), size=limit, replace=False))
    return part.take(rows)


@dataclass
class Decoded:
    """A part decoded at one size: uint8 NHWC images and the labels of the rows that decoded."""

    images: np.ndarray
    labels: dict[str, np.ndarray]
    ids: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class TrainData:
    """Everything a recipe trains from, built once by the CLI (or a test) and passed down."""

    vocabularies: dict[str, list[str]]
    hierarchy: list[list[str]]
    train: Part
    val: Part
    description: dict[str, Any] = field(default_factory=dict)  # for the bundle's training record; no machine paths
    workers: int | None = None
    _decoded: dict[tuple[str, int, int], Decoded] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> dict[str, int]:
        return {h: len(self.vocabularies[h]) for h in HEADS}

    def part(self, name: str) -> Part:
        if name not in ("train", "val"):
            raise ValueError(f"part must be 'train' or 'val', not {name!r}")
        return self.train if name == "train" else self.val

    def decoded(self, name: str, height: int, width: int) -> Decoded:
        """The part's images at ``height`` x ``width`` (decoded once per size, with threads: no fork after JAX)."""
        key = (name, height, width)
        if key not in self._decoded:
            self._decoded[key] = decode_part(self.part(name), height, width, self.workers)
        return self._decoded[key]


def decode_part(part: Part, height: int, width: int, workers: int | None = None, allow_empty: bool = False) -> Decoded:
    """Decode with the project's one image loader (thread pool: no fork after JAX); unreadable images are
    skipped and reported, and their rows dropped from the labels too."""
    from fashion.data.images import decode_images

    decoded = decode_images(part.paths, (height, width), workers=workers)
    rows = np.flatnonzero(decoded.ok)
    skipped = [(int(part.ids[position]), reason) for position, reason in decoded.failed]
    if not len(rows) and not allow_empty:
        raise TrainError(
            f"none of the {len(part)} images could be decoded (first: {skipped[0][1] if skipped else '?'})"
        )
    return Decoded(decoded.images[rows], {h: v[rows] for h, v in part.labels.items()}, part.ids[rows], skipped)


@dataclass
class TrainResult:
    """What a recipe hands back to the CLI."""

    model: Any  # float32 keras.Model with the bundle's contract (input "image", one softmax per head)
    training: dict[str, Any]  # the bundle's training record: recipe, options, timings, per-size results
    val_probs: dict[str, np.ndarray]  # softmax per head on ``val_labels``' rows, from the trained model
    val_labels: dict[str, np.ndarray]
    run_dir: Path


class Recipe(ABC):
    """A way to train the six-head classifier; options live in a dataclass passed to the constructor."""

    name: str = ""

    @abstractmethod
    def fit(self, train_data: TrainData, run_dir: Path) -> TrainResult:
        """Train on ``train_data.train``, select on ``train_data.val``; checkpoints and logs go to ``run_dir``."""


def train_data_from_frame(
    frame,
    vocabularies: dict[str, list[str]],
    hierarchy: list[list[str]],
    description: dict[str, Any] | None = None,
    workers: int | None = None,
) -> TrainData:
    """``TrainData`` from a dataset frame with a ``split`` column (train/val rows; others are ignored)."""
    from fashion.data.labels import encode

    parts = {}
    for name in ("train", "val"):
        rows = frame[frame["split"] == name].reset_index(drop=True)
        if rows.empty:
            raise TrainError(f"the split has no '{name}' rows")
        parts[name] = Part(rows["id"].to_numpy(np.int64), [str(p) for p in rows["path"]], encode(rows, vocabularies))
    return TrainData(vocabularies, hierarchy, parts["train"], parts["val"], dict(description or {}), workers)
