"""Train/val/test split that keeps pixel-identical images together.

Images are grouped by a hash of their decoded pixels; a group is assigned as a whole. Groups are
stratified on articleType (the group's most common label), with a fixed seed, so a class with
enough images appears in every split. The split is a CSV file (id,split) that training, export
calibration, benchmarks and the demo all read.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from fashion.runtime.preprocess import load_image

from .errors import DataError, DataFormatError
from .paths import SPLIT_SEED

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"val": 0.1, "test": 0.1}
DEFAULT_SEED = SPLIT_SEED


def pixel_hash(path: str | Path) -> str:
    """sha1 of the decoded RGB pixels and their shape (identical pictures in different files match)."""
    pixels = np.asarray(load_image(path))
    return hashlib.sha1(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def pixel_groups(frame: pd.DataFrame, progress: bool = False) -> pd.Series:
    """A group key per row: the pixel hash (rows sharing it are pixel-identical)."""
    from tqdm import tqdm

    paths = tqdm(frame["path"], disable=not progress, desc="hashing pixels", unit="img")
    return pd.Series([pixel_hash(p) for p in paths], index=frame.index, name="pixel_hash")


def make_split(
    frame: pd.DataFrame,
    groups: pd.Series,
    fractions=DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
    stratify: str = "articleType",
) -> pd.DataFrame:
    """Return a frame (id, split) with every group on one side, stratified on ``stratify``."""
    members: dict[str, list[int]] = defaultdict(list)
    labels: dict[str, Counter] = defaultdict(Counter)
    for image_id, group, label in zip(frame["id"], groups, frame[stratify]):
        members[group].append(int(image_id))
        labels[group][label if isinstance(label, str) else ""] += 1

    by_class: dict[str, list[str]] = defaultdict(list)
    for group, counts in labels.items():
        label = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        by_class[label].append(group)

    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for label in sorted(by_class):
        class_groups = sorted(by_class[label], key=lambda g: min(members[g]))
        order = rng.permutation(len(class_groups))
        total = sum(len(members[g]) for g in class_groups)
        quota = {name: int(np.floor(total * frac + 0.5)) for name, frac in fractions.items()}
        filled: Counter[str] = Counter()
        for position in order:
            group = class_groups[position]
            size = len(members[group])
            target = "train"
            for name in ("test", "val"):
                if filled[name] + size <= quota.get(name, 0):
                    target = name
                    break
            filled[target] += size
            for image_id in members[group]:
                assignment[image_id] = target
    return pd.DataFrame({"id": sorted(assignment), "split": [assignment[i] for i in sorted(assignment)]})


def write_split(split: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    split.sort_values("id").to_csv(path, index=False)


def read_split(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The split CSV (id,split); a missing file or wrong columns/names is a DataError naming the file."""
    try:
        split = pd.read_csv(path, dtype={"id": int, "split": str})
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file") from None
    except ValueError as exc:  # pandas' parser and dtype errors (EmptyDataError, ParserError) are ValueErrors
        raise DataFormatError(f"{path}: not a split file (a CSV of id,split): {exc}") from None
    if not {"id", "split"} <= set(split.columns):
        raise DataFormatError(f"{path}: expected columns id,split, found {list(split.columns)}")
    unknown = set(split["split"]) - set(SPLITS)
    if unknown:
        raise DataFormatError(f"{path}: unknown split names {sorted(unknown)}")
    return split


def attach_split(frame: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """Join the split onto the dataset frame; ids absent from the split file are dropped."""
    return frame.merge(split, on="id", how="inner")
