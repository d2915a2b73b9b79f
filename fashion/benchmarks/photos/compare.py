"""What the two decode checks share: their worker pool, the accuracy gate, pixel differences and McNemar flips
against the exact path."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from math import comb
from typing import Any

import numpy as np

#: A reduced decode passes if no head loses more than this many percentage points against the exact path.
MAX_DROP_PP = 0.1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The decoding processes, started fresh (spawn): a forked one inherits the locks that this process's libvips
    or ONNX Runtime threads held at the fork, and can hang on one forever."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def add_pixel_diff(pixel: dict[str, dict[str, float]], key: str, tensors: np.ndarray, exact: np.ndarray) -> None:
    """Accumulate the max and summed absolute difference (0-255) of ``tensors`` from ``exact`` under ``key``."""
    diff = np.abs(tensors.astype(np.int16) - exact.astype(np.int16))
    stats = pixel.setdefault(key, {"max_abs_diff": 0.0, "sum_abs_diff": 0.0, "values": 0})
    stats["max_abs_diff"] = max(stats["max_abs_diff"], float(diff.max()))
    stats["sum_abs_diff"] += float(diff.sum())
    stats["values"] += int(diff.size)


def mean_abs_diff(stats: dict[str, float]) -> float:
    """The mean absolute pixel difference of ``add_pixel_diff``'s totals, to 5 decimals."""
    return round(stats["sum_abs_diff"] / max(1, stats["values"]), 5)


def flips(truth: np.ndarray, exact: np.ndarray, fast: np.ndarray) -> dict[str, float]:
    """Images the fast path gets wrong that the exact path got right (lost) and the reverse (gained), with the
    two-sided exact McNemar p-value: whether the accuracy difference is more than the chance of flipping."""
    valid = truth >= 0
    lost = int(np.sum(valid & (exact == truth) & (fast != truth)))
    gained = int(np.sum(valid & (exact != truth) & (fast == truth)))
    n, k = lost + gained, min(lost, gained)
    p_value = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"lost": lost, "gained": gained, "mcnemar_p": round(p_value, 4)}


def verdict_by_format(comparisons: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Worst per-head drop over the sizes, per format, and whether it is within ``MAX_DROP_PP`` (libvips rows)."""
    worst: dict[str, float] = {}
    for row in comparisons:
        if row.get("variant", "libvips") != "libvips":
            continue
        fmt = row["cell"].split("/")[1]
        worst[fmt] = max(worst.get(fmt, -1e9), max(row["drop_pp"].values()))
    return {fmt: {"worst_drop_pp": round(w, 4), "passes": w <= MAX_DROP_PP} for fmt, w in worst.items()}
