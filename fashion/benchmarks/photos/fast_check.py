"""``check``: does the Pillow fast decode path (JPEG draft / ``Image.reduce``) change answers?

Every test photo, upscaled to 1080x1440 and 2400x3200 as JPEG q90, through the exact path and the fast path
at each gap -> pixel max/mean difference, per-head accuracy, top-1 agreement. The fast path stays the default
only if no head loses more than ``MAX_DROP_PP``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.bundle import load_manifest
from fashion.runtime.host import cpu_facts, usable_cores
from fashion.runtime.preprocess import FAST_DECODE_GAP, Preprocessor, build_preprocessor

from .compare import MAX_DROP_PP, flips, mean_abs_diff, score_chunks
from .inputs import DECODE_SIZES, SEED, split_photos, upscale


def _variants(spec: Any, height: int, width: int, gaps: Iterable[float]) -> dict[str, Preprocessor]:
    exact = build_preprocessor(spec, height, width, fast=False)
    variants = {"exact": exact}
    for gap in gaps:
        variants[f"fast_gap{gap:g}"] = replace(exact, fast=True, gap=float(gap))
    return variants


def _decode_chunk(args: tuple) -> dict[str, Any]:
    """Worker: upscale each photo to every size, run every variant; uint8 tensors per (size, variant)."""
    paths, spec, height, width, gaps, sizes = args
    variants = _variants(spec, height, width, gaps)
    out: dict[str, Any] = {"original": [], "ok": []}
    for path in paths:
        try:
            base = variants["exact"].load(path)
        except Exception:
            out["ok"].append(False)
            continue
        out["ok"].append(True)
        out["original"].append(variants["exact"].fit_image(base))
        for size in sizes:
            data = upscale(base, size)
            for name, variant in variants.items():
                out.setdefault(f"{size[0]}x{size[1]}/{name}", []).append(variant(data))
    return {key: (np.stack(value) if key != "ok" and value else value) for key, value in out.items()}


def fast_decode_check(
    bundle_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split_file: str | os.PathLike,
    split: str = "test",
    subset: int | None = None,
    seed: int = SEED,
    gaps: Iterable[float] = (FAST_DECODE_GAP,),
    sizes: Iterable[tuple[int, int]] = DECODE_SIZES,
    workers: int = 1,
    chunk: int = 32,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Exact vs fast decoding of real-size versions of the test photos: pixels, accuracy, agreement. The
    ``workers`` are spawned processes: a script calling this needs a main-module guard (spawn re-imports it)."""
    from fashion.metrics.accuracy import head_scores

    gaps, sizes = [float(g) for g in gaps], [(w, h) for w, h in sizes]
    bundle = load_manifest(bundle_dir, verify_hashes=False)
    height, width = bundle.input_size
    spec = bundle.manifest.preprocessing.to_dict()
    photos = split_photos(Path(data_dir), Path(split_file), split, subset, seed)
    log(f"{len(photos)} {split} photos, sizes {sizes}, gaps {gaps}, {workers} worker(s)")

    start = time.time()
    scored = score_chunks(
        bundle_dir,
        photos,
        data_dir,
        _decode_chunk,
        lambda paths: (paths, spec, height, width, gaps, sizes),
        workers,
        chunk,
        3,
        start,
        log,
    )
    kept_ids, pixel, truth = scored.kept_ids, scored.pixel, scored.truth
    rows: dict[str, Any] = {}
    for key, tops in scored.tops.items():
        rows[key] = {"heads": {head: head_scores(truth[head], tops[head]) for head in bundle.heads}, "_tops": tops}
    result = _summarise(rows, pixel, sizes, gaps, bundle.heads, truth)
    result.update(
        bundle=str(bundle_dir),
        split=split,
        photos=len(kept_ids),
        unreadable=len(photos) - len(kept_ids),
        subset=({"size": subset, "seed": seed, "of": "the whole split"} if subset else None),
        upscale={"resample": "bicubic", "format": "JPEG", "quality": 90, "sizes": [f"{w}x{h}" for w, h in sizes]},
        input_size=[height, width],
        cpu=cpu_facts().to_dict(),
        cores=usable_cores(),
        seconds=round(time.time() - start, 1),
    )
    return result


def _summarise(
    rows: dict[str, Any],
    pixel: dict[str, dict[str, float]],
    sizes: list[tuple[int, int]],
    gaps: list[float],
    heads: list[str],
    truth: dict[str, np.ndarray],
) -> dict[str, Any]:
    comparisons: list[dict[str, Any]] = []
    worst_by_gap: dict[str, float] = {}
    for width, height in sizes:
        size = f"{width}x{height}"
        exact = rows[f"{size}/exact"]
        for gap in gaps:
            name = f"fast_gap{gap:g}"
            fast = rows[f"{size}/{name}"]
            stats = pixel[f"{size}/{name}"]
            drops = {
                head: round(100 * (exact["heads"][head]["accuracy"] - fast["heads"][head]["accuracy"]), 4)
                for head in heads
            }
            agreement = {
                head: float(np.mean(exact["_tops"][head][:, 0] == fast["_tops"][head][:, 0])) for head in heads
            }
            worst_by_gap[name] = max(worst_by_gap.get(name, -1e9), max(drops.values()))
            lost_gained = {
                head: flips(truth[head], exact["_tops"][head][:, 0], fast["_tops"][head][:, 0]) for head in heads
            }
            comparisons.append(
                {
                    "size": size,
                    "variant": name,
                    "gap": gap,
                    "pixel_max_abs_diff": stats["max_abs_diff"],
                    "pixel_mean_abs_diff": mean_abs_diff(stats),
                    "accuracy_exact": {h: exact["heads"][h]["accuracy"] for h in heads},
                    "accuracy_fast": {h: fast["heads"][h]["accuracy"] for h in heads},
                    "drop_pp": drops,
                    "top1_agreement": agreement,
                    "flips": lost_gained,
                }
            )
    accuracy = {key: {h: row["heads"][h] for h in heads} for key, row in rows.items()}
    verdict = {
        name: {"worst_drop_pp": round(worst, 4), "passes": worst <= MAX_DROP_PP} for name, worst in worst_by_gap.items()
    }
    return {"max_drop_pp": MAX_DROP_PP, "comparisons": comparisons, "verdict": verdict, "accuracy": accuracy}
