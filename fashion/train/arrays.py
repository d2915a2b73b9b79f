"""Decode a split into in-memory uint8 arrays with the shared preprocessing (parallel, with progress)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import pandas as pd

from fashion.runtime.preprocess import preprocess


def _decode(path: str, height: int, width: int) -> np.ndarray:
    return preprocess(path, height, width)


def decode_images(paths: list[str], height: int, width: int, workers: int | None = None,
                  progress: bool = True, desc: str = "decoding") -> np.ndarray:
    """uint8 array (N, height, width, 3) of the preprocessed images, in ``paths`` order."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    job = partial(_decode, height=height, width=width)
    if workers == 1:
        iterator = map(job, paths)
    else:
        pool = ProcessPoolExecutor(workers)
        iterator = pool.map(job, paths, chunksize=256)
    for i, image in enumerate(tqdm(iterator, total=len(paths), desc=desc, unit="img", disable=not progress)):
        out[i] = image
    if workers != 1:
        pool.shutdown()
    return out


def split_frame(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[frame["split"] == name].reset_index(drop=True)
