"""``fashion-bench photos``: predict(path) latency and predict_batch throughput in one run, on one loaded model.

Writes the upscaled photos (``inputs``) into a temporary folder, times ``predict(path)`` per (size, format)
for each decode mode (``latency``), then ``predict_batch`` per folder (``batch``), and reads the issue's
targets off the result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from fashion.runtime.host import cpu_facts, usable_cores

from .batch import batch_target, measure_batch
from .inputs import BENCH_SIZES, FORMATS, SEED, make_photo_folder, sample_photos, write_batch_photos
from .latency import latency_targets, measure_latency, model_only_ms
from .modes import BATCH_FOLDERS, BATCH_MODES, LATENCY_MODES


def photo_bench(
    bundle_dir: str | os.PathLike,
    photos: list[Path],
    sizes: Iterable[tuple[int, int]] = BENCH_SIZES,
    formats: Iterable[str] = FORMATS,
    per_cell: int = 3,
    repeats: int = 5,
    batch_photos: int = 200,
    batch_size: int = 32,
    batch_size_wh: tuple[int, int] = (2400, 3200),
    batch_folders: Iterable[str] = tuple(BATCH_FOLDERS),
    rounds: int = 3,
    threads: int | None = None,
    precision: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """predict(path) p50/p90 per (size, format) for each decode mode, and predict_batch images/s and cores busy
    per folder (one format each, and mixed), before vs now, in one run, with the decoder of every row."""
    from fashion.runtime import Classifier, vips_decode

    sizes, formats, folders = [(w, h) for w, h in sizes], list(formats), list(batch_folders)
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "cpu": cpu_facts().to_dict(),
        "usable_cores": usable_cores(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "photos_from": sorted({f"{p.parent.parent.name}/{p.parent.name}" for p in photos}),  # no machine paths
        "libvips": vips_decode.version(),
        "pillow": Image.__version__,
        "per_cell": per_cell,
        "repeats": repeats,
        "latency_modes": LATENCY_MODES,
        "batch_modes": BATCH_MODES,
        "latency": {},
        "decoders": {},
        "batch": {},
        "batch_images": f"{batch_photos} photos of {batch_size_wh[0]}x{batch_size_wh[1]} per folder, batch size "
        f"{batch_size}",
    }
    with tempfile.TemporaryDirectory(prefix="fashion-photos-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        log(f"writing {per_cell} photo(s) per size x format into {folder}")
        cells = make_photo_folder(folder / "cells", photos, sizes, formats, per_cell)
        batches = {}
        for name in folders:
            log(f"writing {batch_photos} photos of {batch_size_wh[0]}x{batch_size_wh[1]}, {name}")
            batches[name] = write_batch_photos(
                folder / "batch" / name, photos, batch_photos, batch_size_wh, BATCH_FOLDERS[name]
            )
        clf = stack.enter_context(Classifier.load(bundle_dir, precision=precision, threads=threads))
        result["artifact_choice"] = clf.info["artifact_choice"]
        result["session_options"] = clf.info["session_options"]
        result["model_only_p50_ms"] = model_only_ms(clf, cells[next(iter(cells))][0])
        latency = measure_latency(clf, cells, repeats, log)
        result["decoders"] = latency["decoders"]
        if latency["jpeg_check_ms"]:
            result["jpeg_check_ms"] = latency["jpeg_check_ms"]
        result["latency"] = latency["latency"]
        result["batch"] = measure_batch(clf, batches, batch_size, rounds, log)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, read off this run: format/JPEG ratios per size, JPEG now vs the Pillow fast path,
    and the mixed folder's predict_batch speed-up."""
    out = latency_targets(result["latency"])
    mixed = batch_target(result["batch"])
    if mixed:
        out["mixed_batch_speedup"] = mixed
    return out


def bench_photos(
    bundle_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split_file: str | os.PathLike,
    split: str = "test",
    seed: int = SEED,
    **kwargs: Any,
) -> dict[str, Any]:
    """``photo_bench`` on a seeded sample of real photos of ``split`` (the ``fashion-bench photos`` entry point).

    One distinct photo per batch image (200 by default); the first ``per_cell`` also make the latency cells.
    """
    count = max(int(kwargs.get("batch_photos", 200)), int(kwargs.get("per_cell", 3)))
    photos = sample_photos(data_dir, split_file, split, count, seed)
    result = photo_bench(bundle_dir, photos, **kwargs)
    result.update(split=split, seed=seed)
    return result
