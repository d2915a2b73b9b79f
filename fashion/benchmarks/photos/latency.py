"""``predict(path)`` latency per (size, format), each decode mode taking turns call by call on one loaded model.

p50/p90 of ``Classifier.predict(path)`` per cell and mode (``runtime/timing.py``'s turns: one warm call per
photo and mode, then ``repeats`` timed rounds), the decoder of every cell, the model call alone (the floor
under predict(path)) and the JPEG structure check every JPEG gets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.timing import median_ms, times_ms

from .modes import LATENCY_MODES, decoder_of, with_preprocessor

#: predict(path) of a 4000x3000 photo, per format: at most this many times the same photo as JPEG (issue 24).
LATENCY_TARGETS = {"WEBP": 3.0, "PNG": 5.0, "PNG-RGBA": 7.0}


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 2)


def latencies(clfs: dict[str, Any], paths: list[Path], repeats: int) -> dict[str, dict[str, float]]:
    """predict(path) times per mode, the modes interleaved call by call so drifting load hits them alike; one
    warm call per photo and mode first (file cache, allocator)."""
    times: dict[str, list[float]] = {name: [] for name in clfs}
    predicts = {name: clf.predict for name, clf in clfs.items()}
    for path in paths:
        for name, values in times_ms(predicts, [path], rounds=repeats, warmup=1).items():
            times[name] += values
    return {
        name: {"p50_ms": _percentile(values, 50), "p90_ms": _percentile(values, 90), "calls": len(values)}
        for name, values in times.items()
    }


def model_only_ms(clf: Any, path: Path, calls: int = 100) -> float:
    """p50 of the model call alone on one preprocessed photo (the floor under predict(path))."""
    batch = clf.preprocessor.to_batch([clf.preprocess(path)])
    return round(median_ms({"model": clf.infer}, [batch], rounds=calls, warmup=1)["model"], 2)


def jpeg_check_ms(paths: list[Path], calls: int = 200) -> float:
    """p50 of the JPEG structure check (``preprocess._jpeg_for_pillow``) on these files: what every JPEG now
    costs more than before it existed (the photo bench's modes all include it)."""
    from fashion.runtime.preprocess import _jpeg_for_pillow

    files = [path.read_bytes() for path in paths]
    return round(median_ms({"check": _jpeg_for_pillow}, files, rounds=calls // len(files) + 1)["check"], 4)


def measure_latency(
    clf: Any, cells: dict[str, list[Path]], repeats: int, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """For every "WxH/FORMAT" cell: ``latency`` (p50/p90 per mode), ``decoders`` (per mode) and, for JPEG cells,
    ``jpeg_check_ms`` (the truncation check every JPEG now gets, on both decoders: part of every mode)."""
    views = {
        name: with_preprocessor(clf, fast=mode["fast_decode"], decoder=mode["decoder"])
        for name, mode in LATENCY_MODES.items()
    }
    out: dict[str, dict[str, Any]] = {"latency": {}, "decoders": {}, "jpeg_check_ms": {}}
    for cell, paths in cells.items():
        fmt = cell.split("/")[1]
        out["decoders"][cell] = {name: decoder_of(view, fmt) for name, view in views.items()}
        if fmt == "JPEG":
            out["jpeg_check_ms"][cell] = jpeg_check_ms(paths)
        out["latency"][cell] = latencies(views, paths, repeats)
        log(f"  {cell:18s} " + ", ".join(f"{n} p50 {r['p50_ms']:.1f} ms" for n, r in out["latency"][cell].items()))
    return out


def latency_targets(latency: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per size with a JPEG cell: format/JPEG p50 ratios now and with the Pillow fast path, JPEG now vs the Pillow
    fast path, and whether each ratio meets ``LATENCY_TARGETS``."""
    out: dict[str, Any] = {}
    for size in dict.fromkeys(cell.split("/")[0] for cell in latency):
        jpeg = latency.get(f"{size}/JPEG")
        if not jpeg:
            continue
        ratios = {
            fmt: round(latency[f"{size}/{fmt}"]["now"]["p50_ms"] / jpeg["now"]["p50_ms"], 2)
            for fmt in LATENCY_TARGETS
            if f"{size}/{fmt}" in latency
        }
        out[size] = {
            "vs_jpeg": ratios,
            "vs_jpeg_pillow_fast": {
                fmt: round(latency[f"{size}/{fmt}"]["Pillow fast"]["p50_ms"] / jpeg["Pillow fast"]["p50_ms"], 2)
                for fmt in ratios
            },
            "jpeg_now_vs_pillow_fast": round(jpeg["now"]["p50_ms"] / jpeg["Pillow fast"]["p50_ms"], 2),
            "met": {fmt: ratio <= LATENCY_TARGETS[fmt] for fmt, ratio in ratios.items()},
        }
    return out
