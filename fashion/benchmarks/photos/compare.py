"""What the two decode checks share: their worker pool, the chunked decode-and-score loop, the accuracy gate,
pixel differences and McNemar flips against the exact path."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

#: A reduced decode passes if no head loses more than this many percentage points against the exact path.
MAX_DROP_PP = 0.1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The decoding processes, started fresh (spawn): a forked one inherits the locks that this process's libvips
    or ONNX Runtime threads held at the fork, and can hang on one forever."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


@dataclass
class Scored:
    """What a decode check's chunks gave: the top-k class indices per variant key and head, pixel differences of
    every reduced variant from the exact one of its cell, the ids decoded, the workers' summed ``_counts`` and
    the encoded labels of those ids per head."""

    tops: dict[str, dict[str, np.ndarray]]
    pixel: dict[str, dict[str, float]]
    kept_ids: list[int]
    counts: dict[str, int]
    truth: dict[str, np.ndarray]


def score_chunks(
    bundle_dir: str | os.PathLike,
    photos: Sequence[tuple[int, Path]],
    data_dir: str | os.PathLike,
    worker: Callable[[Any], dict[str, Any]],
    job: Callable[[list[str]], Any],
    workers: int,
    chunk: int,
    top_k: int,
    start: float,
    log: Callable[[str], None],
) -> Scored:
    """Decode ``photos`` in chunks on ``workers`` spawned processes (``worker(job(paths))`` returns ``ok`` per
    photo, optional ``_counts`` and a tensor stack per variant key ``"cell/variant"``; keys without a cell, e.g.
    ``original``, are scored only), score every stack with the bundle's FP32 model, and compare each reduced
    variant's pixels with its cell's ``exact`` stack. Logs progress after every chunk."""
    from fashion.data.dataset import load_dataset
    from fashion.data.labels import encode_values
    from fashion.runtime import Classifier

    frame, _ = load_dataset(data_dir)  # read before the long decode, so a broken dataset fails first
    ranked: dict[str, dict[str, list[np.ndarray]]] = {}
    pixel: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    kept_ids: list[int] = []
    chunks = [photos[i : i + chunk] for i in range(0, len(photos), chunk)]
    jobs = [job([str(p) for _, p in part]) for part in chunks]
    with Classifier.load(bundle_dir, precision="fp32") as clf, worker_pool(workers) as pool:
        heads, labels = clf.heads, clf.bundle.labels
        for number, (part, result) in enumerate(zip(chunks, pool.map(worker, jobs))):
            kept_ids += [image_id for (image_id, _), ok in zip(part, result["ok"]) if ok]
            for key, value in result.get("_counts", {}).items():
                counts[key] = counts.get(key, 0) + value
            for key, tensors in result.items():
                if key == "ok" or key.startswith("_") or not len(tensors):
                    continue
                outputs = clf.infer(clf.preprocessor.to_batch(list(tensors)))
                for head in heads:
                    top = np.argsort(-outputs[head], axis=1, kind="stable")[:, :top_k]
                    ranked.setdefault(key, {}).setdefault(head, []).append(top)
                cell, _, variant = key.rpartition("/")
                if cell and variant != "exact":
                    add_pixel_diff(pixel, key, tensors, result[f"{cell}/exact"])
            done = min((number + 1) * chunk, len(photos))
            log(f"  {done}/{len(photos)} photos, {time.time() - start:.0f} s")
    rows = frame.set_index("id").loc[kept_ids]
    truth = {head: encode_values(list(rows[head]), labels[head])[0] for head in heads}
    tops = {key: {head: np.concatenate(parts) for head, parts in per.items()} for key, per in ranked.items()}
    return Scored(tops, pixel, kept_ids, counts, truth)


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
