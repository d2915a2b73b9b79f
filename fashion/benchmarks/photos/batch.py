"""``predict_batch`` images/s and cores busy: rounds of each decode mode per folder, and scaling with cores.

* ``measure_batch``: per folder (one format each, and mixed), the modes of ``BATCH_MODES`` round robin on one
  loaded model, so load drift is shared; the median round of each mode, with every round's images/s.
* ``scaling_bench``: one fresh process per core count, pinned to that many CPUs, the runtime's defaults.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fashion.runtime.host import cpu_facts, usable_cores

from .inputs import write_batch_photos
from .modes import BATCH_FOLDERS, BATCH_MODES, SCALING_MODES, decoder_of, with_preprocessor

#: predict_batch on the mixed folder: at least this many times today's images/s (issue 24).
BATCH_TARGET = 1.5


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median images/s, plus every round's images/s."""
    ordered = sorted(runs, key=lambda run: run["images_per_s"])
    return {**ordered[len(ordered) // 2], "rounds_images_per_s": [run["images_per_s"] for run in runs]}


def throughput(
    clf: Any, paths: list[Path], batch_size: int, decode_threads: int | None, one_call: bool = True
) -> dict[str, Any]:
    """predict_batch images/s and cores busy (process CPU time / wall time). ``one_call=False``: one
    predict_batch call per batch, so nothing is decoded ahead (the runtime before decode-ahead)."""
    wall, cpu = time.perf_counter(), time.process_time()
    if one_call:
        items = clf.predict_batch(paths, batch_size=batch_size, decode_threads=decode_threads)
    else:
        items = [
            item
            for first in range(0, len(paths), batch_size)
            for item in clf.predict_batch(
                paths[first : first + batch_size], batch_size=batch_size, decode_threads=decode_threads
            )
        ]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    failed = sum(1 for item in items if item.error)
    threads, overlap = clf.decode_plan(decode_threads)
    return {
        "images": len(paths),
        "failed": failed,
        "seconds": round(wall, 2),
        "images_per_s": round(len(paths) / wall, 2),
        "cores_busy": round(cpu / wall, 2),
        "batch_size": batch_size,
        "decode_threads": threads,
        "decode_ahead": one_call and threads > 1,
        "overlap_with_model": overlap,
    }


def measure_batch(
    clf: Any, batches: dict[str, list[Path]], batch_size: int, rounds: int, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """{folder: {mode: median run + its decoders}} for the folders of ``BATCH_FOLDERS`` in ``batches``."""
    views = {name: with_preprocessor(clf, decoder=mode["decoder"]) for name, mode in BATCH_MODES.items()}
    out: dict[str, dict[str, Any]] = {}
    for folder_name, paths in batches.items():
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in views}
        views[next(iter(views))].predict_batch(paths[:batch_size])  # warm: file cache, allocator
        for number in range(rounds):  # round robin over the modes, so load drift is shared
            for name, view in views.items():
                runs[name].append(throughput(view, paths, batch_size, None, BATCH_MODES[name]["one_call"]))
                log(f"  {folder_name} round {number + 1} {name}: {runs[name][-1]['images_per_s']} img/s")
        out[folder_name] = {
            name: {
                **median_run(runs[name]),
                "decoders": sorted({decoder_of(view, fmt) for fmt in BATCH_FOLDERS[folder_name]}),
            }
            for name, view in views.items()
        }
    return out


def batch_target(batch: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The mixed folder's predict_batch speed-up, now vs before, against ``BATCH_TARGET`` (None without it)."""
    mixed = batch.get("mixed")
    if not mixed:
        return None
    before = mixed["before (Pillow, no decode-ahead)"]["images_per_s"]
    speedup = round(mixed["now (default)"]["images_per_s"] / before, 2)
    return {"value": speedup, "target": BATCH_TARGET, "met": speedup >= BATCH_TARGET}


# -- scaling with cores ----------------------------------------------------------------------------------------------


def _pinned_throughput(args: tuple) -> dict[str, Any]:
    """In a fresh process: pin to ``cores`` CPUs, load the bundle with the runtime's defaults, time predict_batch."""
    bundle_dir, paths, cores, batch_size, rounds, precision = args
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, cpus)
    from fashion.runtime import Classifier

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SCALING_MODES}
    with Classifier.load(bundle_dir, precision=precision) as clf:
        clf.predict_batch(paths[:batch_size], batch_size=batch_size)  # warm: sessions, allocator, file cache
        for _ in range(rounds):
            for name, decode_threads in SCALING_MODES.items():
                runs[name].append(throughput(clf, paths, batch_size, decode_threads))
        info = {"artifact": clf.info["artifact_choice"].get("artifact"), "model_threads": clf.info.get("threads")}
    out: dict[str, Any] = {"cores": len(cpus), "usable_cores": usable_cores(), **info, "modes": {}}
    out["modes"] = {name: median_run(values) for name, values in runs.items()}
    return out


def scaling_bench(
    bundle_dir: str | os.PathLike,
    photos: list[Path],
    cores: Iterable[int],
    batch_photos: int = 200,
    batch_size: int = 32,
    size_wh: tuple[int, int] = (2400, 3200),
    rounds: int = 3,
    precision: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """predict_batch images/s with 1..N cores: one fresh process per core count, pinned to that many CPUs.

    Core counts beyond this process's CPUs are dropped (and listed). Each process uses the runtime's
    defaults, so its model and decode threads follow the pinned CPUs through ``usable_cores``.
    """
    import multiprocessing

    available = len(os.sched_getaffinity(0))
    wanted = sorted({int(c) for c in cores if int(c) >= 1})
    counts = [c for c in wanted if c <= available]
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "cpu": cpu_facts().to_dict(),
        "usable_cores": usable_cores(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "batch_images": f"{batch_photos} x {size_wh[0]}x{size_wh[1]} JPEG q90",
        "batch_size": batch_size,
        "rounds": rounds,
        "skipped_cores": [c for c in wanted if c > available],
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="fashion-scaling-") as tmp:
        log(f"writing {batch_photos} photos of {size_wh[0]}x{size_wh[1]} JPEG")
        paths = write_batch_photos(Path(tmp), photos, batch_photos, size_wh)
        context = multiprocessing.get_context("spawn")
        for count in counts:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                row = pool.submit(
                    _pinned_throughput, (bundle_dir, paths, count, batch_size, rounds, precision)
                ).result()
            result["rows"].append(row)
            log(f"  {count} core(s): " + ", ".join(f"{n} {m['images_per_s']} img/s" for n, m in row["modes"].items()))
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result
