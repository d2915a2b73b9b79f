"""Real-size photos: does the fast decode path change answers, and how fast is ``predict`` end to end?

The dataset's photos are 60x80 thumbnails; shop photos are 1-12 megapixels. Both checks here make
real-size photos from real test photos (bicubic upscale, saved as JPEG q90 / PNG / WebP), so the
content and labels stay those of the test split:

* ``fast_decode_check``: every photo through the exact path and the fast path (JPEG draft /
  ``Image.reduce``) at 1080x1440 and 2400x3200 -> pixel max/mean difference, per-head accuracy,
  top-1 agreement. The fast path stays the default only if no head loses more than 0.1 pp.
* ``photo_bench``: ``Classifier.predict(path)`` p50/p90 at 1080x1440, 2400x3200 and 4000x3000 in
  JPEG/PNG/RGBA PNG/WebP, and ``predict_batch`` images/s and cores busy on 200 photos of 2400x3200, before
  (exact decode, one decode thread) and after (fast path, parallel decoding).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashion.runtime.bundle import load_manifest
from fashion.runtime.host import cpu_facts, usable_cores
from fashion.runtime.preprocess import FAST_DECODE_DEFAULT, FAST_DECODE_GAP, Preprocessor, build_preprocessor

DECODE_SIZES = ((1080, 1440), (2400, 3200))  # (width, height), the dataset's 3:4 portrait aspect
BENCH_SIZES = ((1080, 1440), (2400, 3200), (4000, 3000))
FORMATS = ("JPEG", "PNG", "PNG-RGBA", "WEBP")
SUFFIXES = {"JPEG": "jpg", "PNG": "png", "PNG-RGBA": "png", "WEBP": "webp"}
MAX_DROP_PP = 0.1
SEED = 0


def upscale(image: Image.Image, size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    """``image`` resized (bicubic) to ``size`` and encoded as ``fmt`` (JPEG q90, fast PNG, RGBA PNG cut-out, WebP q90)."""
    big = image.resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        big.save(buffer, "JPEG", quality=90)
    elif fmt == "PNG":
        big.save(buffer, "PNG", compress_level=1)
    elif fmt == "PNG-RGBA":  # a catalogue cut-out: the white studio background made transparent
        pixels = np.asarray(big.convert("RGBA")).copy()
        pixels[(pixels[..., :3] > 245).all(axis=-1), 3] = 0
        Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=1)
    elif fmt == "WEBP":
        big.save(buffer, "WEBP", quality=90, method=0)
    else:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return buffer.getvalue()


# -- fast decode accuracy check --------------------------------------------------------------------------------------


def _test_photos(data_dir: Path, split_file: Path, split: str, subset: int | None, seed: int) -> list[tuple[int, Path]]:
    with open(split_file, newline="", encoding="utf-8") as handle:
        wanted = {int(row["id"]) for row in csv.DictReader(handle) if row["split"] == split}
    from fashion.data.paths import find_layout

    images_dir = find_layout(data_dir)[1]
    photos = sorted((image_id, images_dir / f"{image_id}.jpg") for image_id in wanted)
    photos = [(image_id, path) for image_id, path in photos if path.is_file()]
    if subset and subset < len(photos):
        photos = sorted(random.Random(seed).sample(photos, subset))
    return photos


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
    """Exact vs fast decoding of real-size versions of the test photos: pixels, accuracy, agreement."""
    from fashion.data.dataset import load_dataset
    from fashion.data.labels import encode_values
    from fashion.metrics.accuracy import head_scores
    from fashion.runtime import Classifier

    gaps, sizes = [float(g) for g in gaps], [tuple(s) for s in sizes]
    bundle = load_manifest(bundle_dir, verify_hashes=False)
    height, width = bundle.input_size
    spec = bundle.manifest["preprocessing"]
    photos = _test_photos(Path(data_dir), Path(split_file), split, subset, seed)
    frame, _ = load_dataset(data_dir)
    by_id = frame.set_index("id")
    log(f"{len(photos)} {split} photos, sizes {sizes}, gaps {gaps}, {workers} worker(s)")

    ranked: dict[str, dict[str, list[np.ndarray]]] = {}
    pixel: dict[str, dict[str, float]] = {}
    kept_ids: list[int] = []
    chunks = [photos[i : i + chunk] for i in range(0, len(photos), chunk)]
    jobs = [([str(p) for _, p in part], spec, height, width, gaps, sizes) for part in chunks]
    start = time.time()
    with Classifier.load(bundle_dir, precision="fp32") as clf, ProcessPoolExecutor(max_workers=workers) as pool:
        for number, (part, result) in enumerate(zip(chunks, pool.map(_decode_chunk, jobs))):
            kept_ids += [image_id for (image_id, _), ok in zip(part, result["ok"]) if ok]
            exact_by_size = {key.split("/")[0]: result[key] for key in result if key.endswith("/exact")}
            for key, tensors in result.items():
                if key == "ok" or not len(tensors):
                    continue
                outputs = clf.infer(clf.preprocessor.to_batch(list(tensors)))
                for head in bundle.heads:
                    top = np.argsort(-outputs[head], axis=1, kind="stable")[:, :3]
                    ranked.setdefault(key, {}).setdefault(head, []).append(top)
                size = key.split("/")[0]
                if key != "original" and not key.endswith("/exact"):
                    diff = np.abs(tensors.astype(np.int16) - exact_by_size[size].astype(np.int16))
                    stats = pixel.setdefault(key, {"max_abs_diff": 0.0, "sum_abs_diff": 0.0, "values": 0})
                    stats["max_abs_diff"] = max(stats["max_abs_diff"], float(diff.max()))
                    stats["sum_abs_diff"] += float(diff.sum())
                    stats["values"] += int(diff.size)
            done = min((number + 1) * chunk, len(photos))
            log(f"  {done}/{len(photos)} photos, {time.time() - start:.0f} s")

    labels = by_id.loc[kept_ids]
    truth = {head: encode_values(list(labels[head]), bundle.labels[head])[0] for head in bundle.heads}
    rows: dict[str, Any] = {}
    for key, per_head in ranked.items():
        tops = {head: np.concatenate(parts) for head, parts in per_head.items()}
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
    comparisons = []
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
            flips = {head: _flips(truth[head], exact["_tops"][head][:, 0], fast["_tops"][head][:, 0]) for head in heads}
            comparisons.append(
                {
                    "size": size,
                    "variant": name,
                    "gap": gap,
                    "pixel_max_abs_diff": stats["max_abs_diff"],
                    "pixel_mean_abs_diff": round(stats["sum_abs_diff"] / max(1, stats["values"]), 5),
                    "accuracy_exact": {h: exact["heads"][h]["accuracy"] for h in heads},
                    "accuracy_fast": {h: fast["heads"][h]["accuracy"] for h in heads},
                    "drop_pp": drops,
                    "top1_agreement": agreement,
                    "flips": flips,
                }
            )
    accuracy = {key: {h: row["heads"][h] for h in heads} for key, row in rows.items()}
    verdict = {
        name: {"worst_drop_pp": round(worst, 4), "passes": worst <= MAX_DROP_PP} for name, worst in worst_by_gap.items()
    }
    return {"max_drop_pp": MAX_DROP_PP, "comparisons": comparisons, "verdict": verdict, "accuracy": accuracy}


def _flips(truth: np.ndarray, exact: np.ndarray, fast: np.ndarray) -> dict[str, float]:
    """Images the fast path gets wrong that the exact path got right (lost) and the reverse (gained), with the
    two-sided exact McNemar p-value: whether the accuracy difference is more than the chance of flipping."""
    from math import comb

    valid = truth >= 0
    lost = int(np.sum(valid & (exact == truth) & (fast != truth)))
    gained = int(np.sum(valid & (exact != truth) & (fast == truth)))
    n, k = lost + gained, min(lost, gained)
    p_value = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"lost": lost, "gained": gained, "mcnemar_p": round(p_value, 4)}


def render_fast_decode_markdown(result: dict[str, Any]) -> str:
    heads = list(result["accuracy"]["original"])
    lines = [
        "# Fast decode path: accuracy check on real-size photos",
        "",
        f"Generated by `{result.get('command', 'python -m fashion.benchmarks.photos check')}` on {result['cpu']['model']} "
        f"({result['cores']} usable cores). {result['photos']} photos of the `{result['split']}` split"
        + (
            f" (a seeded random subset, seed {result['subset']['seed']}, of the split)"
            if result.get("subset")
            else " (the whole split)"
        )
        + f", upscaled bicubic to {', '.join(result['upscale']['sizes'])} and saved as JPEG q90, then "
        "preprocessed by the exact path (full decode + bilinear resize) and by the fast path "
        "(JPEG DCT-domain reduced decode, then `Image.reduce`, leaving at least `gap` x the input size "
        "for the final bilinear resize). Model: FP32 ONNX. Accept if no head loses more than "
        f"{result['max_drop_pp']} pp.",
        "",
        "| size | variant | pixel max / mean abs diff (0-255) | worst drop (pp), head | images lost / gained on it "
        "(McNemar p) | min top-1 agreement |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["comparisons"]:
        head = max(row["drop_pp"], key=row["drop_pp"].get)
        flips = row.get("flips", {}).get(head, {})
        lines.append(
            f"| {row['size']} | {row['variant']} | {row['pixel_max_abs_diff']:.0f} / "
            f"{row['pixel_mean_abs_diff']:.3f} | {row['drop_pp'][head]:+.3f}, {head} | "
            f"{flips.get('lost', '?')} / {flips.get('gained', '?')} (p={flips.get('mcnemar_p', '?')}) | "
            f"{min(row['top1_agreement'].values()):.4f} |"
        )
    lines += ["", "Per-head accuracy (%):", "", "| photos | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for key, scores in result["accuracy"].items():
        lines.append(f"| {key} | " + " | ".join(f"{100 * scores[h]['accuracy']:.2f}" for h in heads) + " |")
    lines += [
        "",
        "Verdict: "
        + "; ".join(
            f"{name}: worst drop {v['worst_drop_pp']:+.3f} pp, {'passes' if v['passes'] else 'FAILS'}"
            for name, v in result["verdict"].items()
        ),
        "",
        f"Runtime default now: fast path {'on' if FAST_DECODE_DEFAULT else 'off'}, gap {FAST_DECODE_GAP:g} "
        "(`fashion.runtime.preprocess.FAST_DECODE_DEFAULT` / `FAST_DECODE_GAP`; per call: "
        "`Classifier.load(..., fast_decode=True|False)`).",
        "",
    ]
    return "\n".join(lines)


# -- end-to-end photo benchmark --------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 2)


def make_photo_folder(
    folder: Path, photos: list[Path], sizes: Iterable[tuple[int, int]], formats: Iterable[str], per_cell: int
) -> dict[str, list[Path]]:
    """Write ``per_cell`` upscaled photos per (size, format) into ``folder``; {"WxH/FORMAT": [paths]}."""
    from fashion.runtime.preprocess import load_image

    cells: dict[str, list[Path]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    bases = [load_image(path) for path in photos[:per_cell]]
    for width, height in sizes:
        for fmt in formats:
            cell = f"{width}x{height}/{fmt}"
            cells[cell] = []
            for number, base in enumerate(bases):
                path = folder / f"{width}x{height}_{fmt.lower()}_{number}.{SUFFIXES[fmt]}"
                path.write_bytes(upscale(base, (width, height), fmt))
                cells[cell].append(path)
    return cells


def write_batch_photos(folder: Path, photos: list[Path], count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` JPEG q90 photos upscaled to ``size`` in ``folder``, cycling through ``photos``."""
    from fashion.runtime.preprocess import load_image

    paths = []
    for number in range(count):
        path = folder / f"{number:04d}.jpg"
        path.write_bytes(upscale(load_image(photos[number % len(photos)]), size, "JPEG"))
        paths.append(path)
    return paths


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median images/s, plus every round's images/s."""
    ordered = sorted(runs, key=lambda run: run["images_per_s"])
    return {**ordered[len(ordered) // 2], "rounds_images_per_s": [run["images_per_s"] for run in runs]}


def _latencies(clfs: dict[str, Any], paths: list[Path], repeats: int) -> dict[str, dict[str, float]]:
    """predict(path) times per mode, the modes interleaved call by call so drifting load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in clfs}
    for path in paths:
        for clf in clfs.values():
            clf.predict(path)  # warm: file cache, allocator
        for _ in range(repeats):
            for name, clf in clfs.items():
                start = time.perf_counter()
                clf.predict(path)
                times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {"p50_ms": _percentile(values, 50), "p90_ms": _percentile(values, 90), "calls": len(values)}
        for name, values in times.items()
    }


def _throughput(clf: Any, paths: list[Path], batch_size: int, decode_threads: int | None) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    items = clf.predict_batch(paths, batch_size=batch_size, decode_threads=decode_threads)
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
        "overlap_with_model": overlap,
    }


#: name -> how the classifier runs: fast decode path, predict_batch decode threads (None: host-aware default),
#: ORT spinning (None: the runtime's default), and whether predict(path) latencies are measured too.
MODES: dict[str, dict[str, Any]] = {
    # exact decode, serial decoding. Latency modes share one spinning setting: calls are interleaved, and a
    # session whose idle threads spin would slow the call that follows it in the other mode
    "before": {"fast_decode": False, "decode_threads": 1, "spinning": None, "latency": True},
    # the runtime's defaults now: fast decode path, host-aware decode threads, and ORT threads that spin inside a
    # call but stop when it returns if the model has every core
    "after": {"fast_decode": True, "decode_threads": None, "spinning": None, "latency": True},
    # batch only: the runtime as it was (ORT's spinning threads too), and one change at a time
    "before, spinning on (as it was)": {"fast_decode": False, "decode_threads": 1, "spinning": True, "latency": False},
    "fast decode only": {"fast_decode": True, "decode_threads": 1, "spinning": None, "latency": False},
    "after, spinning on": {"fast_decode": True, "decode_threads": None, "spinning": True, "latency": False},
    "after, spinning off": {"fast_decode": True, "decode_threads": None, "spinning": False, "latency": False},
}


def _model_only_ms(clfs: dict[str, Any], path: Path, calls: int = 100) -> dict[str, float]:
    """p50 of the model call alone on one preprocessed photo (the floor under predict(path)), per mode.

    Each mode runs its calls in one block (after one untimed call), not interleaved: a session that keeps
    spinning after its call would otherwise slow the other modes' calls.
    """
    out = {}
    for name, clf in clfs.items():
        batch = clf.preprocessor.to_batch([clf.preprocess(path)])
        clf.infer(batch)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            clf.infer(batch)
            times.append((time.perf_counter() - start) * 1000)
        out[name] = _percentile(times, 50)
    return out


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
    rounds: int = 3,
    threads: int | None = None,
    precision: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """predict(path) p50/p90 per (size, format) and predict_batch throughput, before vs after, in one run."""
    from fashion.runtime import Classifier

    sizes, formats = [tuple(s) for s in sizes], list(formats)
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "cpu": cpu_facts().to_dict(),
        "usable_cores": usable_cores(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "photos_from": sorted({f"{p.parent.parent.name}/{p.parent.name}" for p in photos}),  # no machine paths
        "per_cell": per_cell,
        "repeats": repeats,
        "modes": {name: {k: ("auto" if v is None else v) for k, v in mode.items()} for name, mode in MODES.items()},
        "latency": {},
        "batch": {},
    }
    with tempfile.TemporaryDirectory(prefix="fashion-photos-") as tmp:
        folder = Path(tmp)
        log(f"writing {per_cell} photo(s) per size x format into {folder}")
        cells = make_photo_folder(folder / "cells", photos, sizes, formats, per_cell)
        batch_dir = folder / "batch"
        batch_dir.mkdir()
        log(f"writing {batch_photos} photos of {batch_size_wh[0]}x{batch_size_wh[1]} JPEG")
        batch_paths = write_batch_photos(batch_dir, photos, batch_photos, batch_size_wh)
        with contextlib.ExitStack() as stack:
            clfs = {}
            for name, mode in MODES.items():
                options = {} if mode["spinning"] is None else {"spinning": mode["spinning"]}
                clfs[name] = stack.enter_context(
                    Classifier.load(
                        bundle_dir, precision=precision, threads=threads, fast_decode=mode["fast_decode"], **options
                    )
                )
            first = next(iter(clfs.values()))
            result["artifact_choice"] = first.info["artifact_choice"]
            result["session_options"] = {name: clf.info["session_options"] for name, clf in clfs.items()}
            timed = {name: clf for name, clf in clfs.items() if MODES[name]["latency"]}
            result["model_only_p50_ms"] = _model_only_ms(clfs, photos[0])
            for cell, paths in cells.items():
                result["latency"][cell] = _latencies(timed, paths, repeats)
                log(
                    f"  {cell:16s} "
                    + ", ".join(f"{n} p50 {r['p50_ms']:.1f} ms" for n, r in result["latency"][cell].items())
                )
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clfs}
            for number in range(rounds):  # round robin over the modes, so load drift is shared
                for name, clf in clfs.items():
                    runs[name].append(_throughput(clf, batch_paths, batch_size, MODES[name]["decode_threads"]))
                    log(f"  round {number + 1} {name}: {runs[name][-1]['images_per_s']} img/s")
            for name, clf in clfs.items():
                result["batch"][name] = {
                    **_median_run(runs[name]),
                    "allow_spinning": clf.info["session_options"].get("allow_spinning"),
                    "spin_between_calls": clf.info["session_options"].get("spin_between_calls"),
                }
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    before, after = result["batch"]["before"], result["batch"]["after"]
    result["batch_speedup"] = round(after["images_per_s"] / before["images_per_s"], 2)
    result["batch_images"] = f"{batch_photos} x {batch_size_wh[0]}x{batch_size_wh[1]} JPEG q90"
    return result


def _spin_text(row: dict[str, Any]) -> str:
    if not row.get("allow_spinning"):
        return "off"
    return "on, also between calls" if row.get("spin_between_calls", True) else "inside calls only"


def render_photo_markdown(result: dict[str, Any]) -> str:
    cpu = result["cpu"]
    choice = result.get("artifact_choice", {})
    lines = [
        "# End-to-end `predict(path)` on real-size photos",
        "",
        f"CPU: {cpu['model']} ({cpu['arch']}), {result['usable_cores']} usable cores; ISA flags: "
        f"{', '.join(cpu['flags']) or 'none recorded'}. Artifact: `{choice.get('artifact')}` "
        f"({choice.get('reason')}). Load average (1/5/15 min) at start {result.get('load_average_start')}, "
        f"at end {result.get('load_average_end')}: other work shares the cores, so compare rows of this run only.",
        "",
        "Test photos upscaled (bicubic) and saved as JPEG q90 / PNG / WebP q90; "
        f"{result['per_cell']} photo(s) per cell, {result['repeats']} timed calls each after one warm call, the "
        "modes interleaved call by call. `predict_batch`: median of the rounds, modes run round robin. "
        "*before*: exact decode, one decode thread; *after*: fast decode path, host-aware decode threads; both with "
        "the runtime's spinning default (ONNX Runtime threads spin inside a call and stop when it returns if the "
        "model has every core); *spinning on* keeps them spinning after each call too, *spinning off* never spins.",
        "",
        "| size / format | before p50 (ms) | before p90 | after p50 (ms) | after p90 | speed-up (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for cell, modes in result["latency"].items():
        before, after = modes["before"], modes["after"]
        lines.append(
            f"| {cell} | {before['p50_ms']:.1f} | {before['p90_ms']:.1f} | {after['p50_ms']:.1f} | "
            f"{after['p90_ms']:.1f} | {before['p50_ms'] / after['p50_ms']:.1f}x |"
        )
    lines += [
        "",
        f"`predict_batch` on {result['batch_images']}:",
        "",
        "| mode | images/s (median) | vs before | every round | cores busy | decode threads | overlap with model "
        "| ORT spinning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = result["batch"]["before"]["images_per_s"]
    for name, row in result["batch"].items():
        lines.append(
            f"| {name} | {row['images_per_s']:.1f} | {row['images_per_s'] / base:.2f}x | "
            f"{', '.join(f'{v:.1f}' for v in row['rounds_images_per_s'])} | "
            f"{row['cores_busy']:.2f} | {row['decode_threads']} | {'yes' if row['overlap_with_model'] else 'no'} | "
            f"{_spin_text(row)} |"
        )
    floor = result.get("model_only_p50_ms", {})
    lines += [
        "",
        f"Speed-up of `predict_batch`, after vs before: {result['batch_speedup']:.2f}x. Model call alone (batch 1, "
        "one preprocessed photo, each mode's calls in one block), p50: "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in floor.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


# -- scaling with cores ----------------------------------------------------------------------------------------------

#: predict_batch modes of the scaling run: the fast decode path with one decode thread, and the runtime's default
#: (host-aware decode threads); both let the model take its default threads, i.e. every usable core.
SCALING_MODES: dict[str, int | None] = {"one decode thread": 1, "parallel decoding (default)": None}


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
                runs[name].append(_throughput(clf, paths, batch_size, decode_threads))
        info = {"artifact": clf.info["artifact_choice"].get("artifact"), "model_threads": clf.info.get("threads")}
    out: dict[str, Any] = {"cores": len(cpus), "usable_cores": usable_cores(), **info, "modes": {}}
    out["modes"] = {name: _median_run(values) for name, values in runs.items()}
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


def render_scaling_markdown(result: dict[str, Any]) -> str:
    cpu = result["cpu"]
    lines = [
        "# `predict_batch` scaling with cores",
        "",
        f"CPU: {cpu['model']} ({cpu['arch']}), {result['usable_cores']} usable cores; ISA flags: "
        f"{', '.join(cpu['flags']) or 'none recorded'}. Load average (1/5/15 min) at start "
        f"{result.get('load_average_start')}, at end {result.get('load_average_end')}.",
        "",
        f"{result['batch_images']}, batch size {result['batch_size']}, fast decode path. One fresh process per "
        "core count, pinned to that many CPUs; the runtime's defaults pick the model and decode threads from "
        f"the pinned CPUs. Median of {result['rounds']} rounds, modes taking turns.",
        "",
        "| cores | one decode thread (img/s) | parallel decoding (img/s) | parallel vs one thread | "
        "parallel vs 1 core | cores busy (parallel) | decode threads | overlap with model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = result["rows"]
    base = rows[0]["modes"]["parallel decoding (default)"]["images_per_s"] if rows else None
    for row in rows:
        one, par = row["modes"]["one decode thread"], row["modes"]["parallel decoding (default)"]
        lines.append(
            f"| {row['cores']} | {one['images_per_s']:.1f} | {par['images_per_s']:.1f} | "
            f"{par['images_per_s'] / one['images_per_s']:.2f}x | {par['images_per_s'] / base:.2f}x | "
            f"{par['cores_busy']:.2f} | {par['decode_threads']} | {'yes' if par['overlap_with_model'] else 'no'} |"
        )
    if result.get("skipped_cores"):
        lines += ["", f"Not run (more than this machine's CPUs): {', '.join(map(str, result['skipped_cores']))}."]
    lines.append("")
    return "\n".join(lines)


def _sample_photos(
    data_dir: str | os.PathLike, split_file: str | os.PathLike, split: str, count: int, seed: int
) -> list[Path]:
    photos = [path for _, path in _test_photos(Path(data_dir), Path(split_file), split, count, seed)]
    if not photos:
        raise ValueError(f"{data_dir}: no photos of split '{split}' found")
    return photos


def bench_photos(
    bundle_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split_file: str | os.PathLike,
    split: str = "test",
    seed: int = SEED,
    **kwargs: Any,
) -> dict[str, Any]:
    """``photo_bench`` on a seeded sample of real photos of ``split`` (the fashion-bench --photos entry point).

    One distinct photo per batch image (200 by default); the first ``per_cell`` also make the latency cells.
    """
    count = max(int(kwargs.get("batch_photos", 200)), int(kwargs.get("per_cell", 3)))
    photos = _sample_photos(data_dir, split_file, split, count, seed)
    result = photo_bench(bundle_dir, photos, **kwargs)
    result.update(split=split, seed=seed)
    return result


def run_photo_bench_cli(
    bundle: str,
    data: str | None,
    split: str,
    split_file: str | None,
    threads: int | None,
    json_path: str | None,
    markdown_path: str | None,
    log: Callable[[str], None],
    cores: list[int] | None = None,
) -> int:
    """``fashion-bench BUNDLE --photos [--cores N,...]``: run, print the Markdown table, write JSON/Markdown."""
    import json

    import click

    from fashion.data.paths import resolve_data_dir, resolve_split_file
    from fashion.runtime.errors import FashionError

    try:
        data_dir = resolve_data_dir(data)
        recorded = (load_manifest(bundle, verify_hashes=False).manifest.get("split") or {}).get("file")
        split_path = resolve_split_file(split_file, recorded=recorded, bases=[bundle])
        if cores:
            photos = _sample_photos(data_dir, split_path, split, 200, SEED)
            result = scaling_bench(bundle, photos, cores, log=log)
            result.update(split=split, seed=SEED)
        else:
            result = bench_photos(bundle, data_dir, split_path, split=split, threads=threads, log=log)
    except (FashionError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    markdown = render_scaling_markdown(result) if cores else render_photo_markdown(result)
    click.echo(markdown)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {json_path}")
    if markdown_path:
        Path(markdown_path).write_text(markdown, encoding="utf-8")
        log(f"wrote {markdown_path}")
    return 0


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="fast vs exact decode on the test split (writes JSON + Markdown)")
    check.add_argument("bundle")
    check.add_argument("--data", required=True)
    check.add_argument("--split-file", default="data/splits/fashion-product-images.csv")
    check.add_argument("--subset", type=int, default=None)
    check.add_argument("--gaps", default=str(FAST_DECODE_GAP))
    check.add_argument("--workers", type=int, default=1)
    check.add_argument("--out", default="docs/eval/fast-decode")
    args = parser.parse_args(argv)
    result = fast_decode_check(
        args.bundle,
        args.data,
        args.split_file,
        subset=args.subset,
        gaps=[float(g) for g in args.gaps.split(",")],
        workers=args.workers,
    )
    result["command"] = "python -m fashion.benchmarks.photos " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(f"{args.out}.md").write_text(render_fast_decode_markdown(result), encoding="utf-8")
    print(render_fast_decode_markdown(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
