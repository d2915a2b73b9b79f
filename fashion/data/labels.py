"""Label vocabularies (JSON, sorted) and integer encoding with -1 for a missing label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fashion import HEADS

from .paths import MISSING

__all__ = ["MISSING", "build_vocabularies", "encode", "encode_values", "hierarchy", "save_json"]


def build_vocabularies(frame: pd.DataFrame, heads=HEADS) -> dict[str, list[str]]:
    """Every class seen for each head, in sorted order (stable across runs and machines)."""
    return {head: sorted(str(v) for v in frame[head].dropna().unique()) for head in heads}


def encode(frame: pd.DataFrame, vocabularies: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Integer labels per head; MISSING (-1) where the label is empty or not in the vocabulary."""
    encoded = {}
    for head, classes in vocabularies.items():
        index = {name: i for i, name in enumerate(classes)}
        encoded[head] = np.array(
            [index.get(v, MISSING) if isinstance(v, str) else MISSING for v in frame[head]], dtype=np.int32
        )
    return encoded


def encode_values(values: list[str | None], vocabulary: list[str]) -> tuple[np.ndarray, int, int]:
    """(int32 labels with MISSING where excluded, how many were missing, how many were not in ``vocabulary``)."""
    index = {name: i for i, name in enumerate(vocabulary)}
    encoded = np.full(len(values), MISSING, dtype=np.int32)
    missing = unknown = 0
    for position, value in enumerate(values):
        if not isinstance(value, str):
            missing += 1
        elif value in index:
            encoded[position] = index[value]
        else:
            unknown += 1
    return encoded, missing, unknown


def hierarchy(frame: pd.DataFrame) -> list[list[str]]:
    """Sorted (masterCategory, subCategory, articleType) combinations present in ``frame``."""
    cols = ["masterCategory", "subCategory", "articleType"]
    combos = frame[cols].dropna().drop_duplicates()
    return sorted([list(map(str, row)) for row in combos.itertuples(index=False)])


def save_json(path: str | Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
