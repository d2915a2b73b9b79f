"""One benchmark run: every requested row, side by side, on the same images, threads and machine."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fashion.metrics import accuracy, compare_outputs, rank
from fashion.runtime.bundle import MANIFEST, load_manifest, sha256_file

from . import rows, system
from .measure import run_in_subprocess

RESULT_SCHEMA = 1


@dataclass
class BenchConfig:
    bundle: str
    data: str | None = None
    split: str = "test"
    split_file: str | None = None
    split_explicit: bool = False  # the user named --split: apply the split file to --data too
    backends: list[str] = field(default_factory=lambda: list(rows.DEFAULT_ROWS))
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    warmup: int = 20
    iters: int = 200
    threads: int | None = None
    limit: int | None = None
    eval_batch: int = 32


def _row_header(spec: rows.RowSpec, bundle) -> dict:
    path = rows.artifact_path(spec, bundle)
    return {
        "name": spec.name,
        "format": spec.label,
        "engine": spec.engine,
        "precision": spec.precision,
        "artifact": spec.artifact,
        "file": path.name if path else None,
        "size_mb": path.stat().st_size / 1e6 if path else None,
        "sha256": sha256_file(path) if path else None,
    }


def _reference(results: list[dict]) -> dict | None:
    """The FP32 accuracy reference: ONNX FP32 if it ran, else the compiled Keras call."""
    for name in ("onnx-fp32", "keras"):
        for row in results:
            if row["name"] == name and row["status"] == "ok":
                return row
    return None


def _compare(results: list[dict], outputs: dict[str, dict[str, np.ndarray]]) -> None:
    """Speed-up vs the Keras baseline, and accuracy and agreement vs FP32, filled into each finished row.

    Agreement is :func:`fashion.metrics.compare_outputs`, the comparison the export gates use.
    """
    baseline = next((r for r in results if r["name"] == rows.BASELINE and r["status"] == "ok"), None)
    reference = _reference(results)
    for row in results:
        if row["status"] != "ok":
            continue
        if baseline:
            row["speedup_vs_keras"] = {
                "p50": baseline["latency_ms"]["p50"] / row["latency_ms"]["p50"],
                "throughput": {
                    size: row["throughput"][size]["img_per_s"] / baseline["throughput"][size]["img_per_s"]
                    for size in row["throughput"]
                    if size in baseline["throughput"]
                },
            }
        if reference:
            row["vs_fp32"] = {
                "reference": reference["name"],
                "accuracy_delta_pp": {
                    head: 100.0 * (row["accuracy"][head]["accuracy"] - reference["accuracy"][head]["accuracy"])
                    for head in row["accuracy"]
                    if row["accuracy"][head]["accuracy"] is not None
                },
                **_agreement(outputs[reference["name"]], outputs[row["name"]], list(row["accuracy"])),
            }


def _agreement(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], heads: list[str]) -> dict:
    comparison = compare_outputs(reference, candidate, heads)
    return {
        "top1_agreement": {item.head: item.top1_agreement for item in comparison},
        "max_abs_diff": {item.head: item.max_abs_diff for item in comparison},
    }


def summarise(result: dict) -> dict:
    """The headline numbers: ONNX FP32 vs Keras, the fastest CPU row's accuracy cost, distance to the floor."""
    finished = {row["name"]: row for row in result["rows"] if row["status"] == "ok"}
    summary: dict = {}
    if "onnx-fp32" in finished and "speedup_vs_keras" in finished["onnx-fp32"]:
        summary["onnx_fp32_speedup_vs_keras_p50"] = finished["onnx-fp32"]["speedup_vs_keras"]["p50"]
    cpu_rows = [row for row in finished.values() if row["engine"] != "tensorrt"]
    if cpu_rows:
        fastest = min(cpu_rows, key=lambda row: row["latency_ms"]["p50"])
        summary.update(fastest_cpu_row=fastest["name"], fastest_cpu_p50_ms=fastest["latency_ms"]["p50"])
        deltas = (fastest.get("vs_fp32") or {}).get("accuracy_delta_pp")
        if deltas:
            summary["fastest_cpu_worst_accuracy_delta_pp"] = min(deltas.values())
        floor = (result.get("compute_floor") or {}).get("floor_ms")
        if floor:
            summary["fastest_cpu_p50_over_floor"] = fastest["latency_ms"]["p50"] / floor
    return summary


def _floor(bundle, cpu: dict, threads: int) -> dict | None:
    """FLOPs of the FP32 ONNX graph at the bundle's input size vs the fp32 peak of the cores the rows used."""
    if "onnx_fp32" not in bundle.artifacts:
        return None
    try:
        from .flops import compute_floor, count_macs
    except ImportError:
        return None
    try:
        counted = count_macs(bundle.artifact_path("onnx_fp32"), *bundle.input_size)
    except ImportError as exc:
        return {"error": f"cannot count FLOPs: {exc} (pip install fashion-edge[export])"}
    cores = min(threads, cpu["cores"])
    peak = system.peak_fp32_gflops({**cpu, "cores": cores})
    return {
        **counted,
        **compute_floor(counted["macs"], peak),
        "cores": cores,
        "peak_formula": "cores x GHz x 2 FMA units x SIMD lanes (16 fp32 for AVX-512) x 2 flops",
    }


def load_images(bundle, config: BenchConfig, progress: bool = True):
    """The labelled images every row scores, preprocessed once (as the bundle's spec says) and shared.

    The split file applies when ``--data`` is the default shared data, ``--split-file`` is given or the
    user named ``--split``; any other folder is scored whole. ``--limit`` draws a seeded sample.
    Returns the images and the JSON record of what was read.
    """
    try:
        from fashion.data.images import load_labelled
    except ImportError as exc:
        raise ImportError(f"reading a dataset needs pandas ({exc}) — pip install fashion-edge[bench]") from exc
    from fashion.data.errors import DataError
    from fashion.data.paths import resolve_data_dir, resolve_split_file

    use_split = config.data is None or config.split_file is not None or config.split_explicit
    data_dir = resolve_data_dir(config.data)
    recorded = bundle.manifest.get("split") or {}
    split_file = (
        resolve_split_file(config.split_file, recorded.get("file"), bases=[bundle.root], option="--split-file")
        if use_split
        else None
    )
    preprocessor = bundle.preprocessor()
    images = load_labelled(
        data_dir,
        split_file,
        config.split if use_split else None,
        bundle.labels,
        bundle.input_size,
        limit=config.limit,
        progress=progress,
        preprocessor=preprocessor,
    )
    if not len(images):
        raise DataError(
            f"{data_dir}: no labelled images to score" + (f" in split '{config.split}'" if use_split else "")
        )
    source = dict(images.report)
    if use_split:
        digest = recorded.get("sha256")
        source.update(split=config.split, split_matches_bundle=(digest == source["split_sha256"]) if digest else None)
    return images, source


def _scores(probabilities: dict[str, np.ndarray], images) -> dict[str, dict]:
    """The one scorer per head, with how many labels were missing or unknown to the model (and so not scored)."""
    report = images.report
    return {
        head: {
            **accuracy.head_scores(images.labels[head], top),
            "missing_labels": report["missing_labels"][head],
            "unknown_labels": report["unknown_labels"][head],
        }
        for head, top in ((h, rank(p)) for h, p in probabilities.items())
    }


def run_benchmark(config: BenchConfig, progress: bool = True, log=print) -> dict:
    bundle = load_manifest(config.bundle)  # verifies every listed sha256
    specs = rows.parse_rows(",".join(config.backends))
    threads = config.threads or system.available_cores()
    machine = system.machine_summary()
    training = bundle.manifest.get("training") or {}
    notes = []
    if training.get("backbone") == "tiny":
        notes.append("test bundle with an untrained tiny model: timings are not representative, only correctness")

    evalset, source = load_images(bundle, config, progress)
    results: list[dict] = []
    outputs: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="fashion-bench-") as tmp:
        images_path = Path(tmp) / "images.npy"
        np.save(images_path, evalset.images)
        for spec in specs:
            row = _row_header(spec, bundle)
            reason = rows.skip_reason(spec, bundle)
            if reason:
                results.append({**row, "status": "skipped", "reason": reason})
                log(f"  {spec.name}: skipped ({reason})")
                continue
            log(f"  {spec.name}: running in a fresh process ...")
            job = {
                "row": spec.name,
                "bundle": str(bundle.root),
                "images": str(images_path),
                "threads": threads,
                "batch_sizes": config.batch_sizes,
                "warmup": config.warmup,
                "iters": config.iters,
                "eval_batch": config.eval_batch,
            }
            started = time.perf_counter()
            try:
                measured = run_in_subprocess(job, Path(tmp) / "work")
            except Exception as exc:  # a broken row is reported, the others still run
                results.append({**row, "status": "failed", "reason": str(exc)})
                log(f"  {spec.name}: FAILED ({exc})")
                continue
            outputs[spec.name] = measured.pop("outputs")
            scores = _scores(outputs[spec.name], evalset)
            results.append(
                {
                    **row,
                    "status": "ok",
                    "reason": None,
                    **measured,
                    "accuracy": scores,
                    "wall_s": time.perf_counter() - started,
                }
            )
            log(f"  {spec.name}: p50 {measured['latency_ms']['p50']:.2f} ms")
    _compare(results, outputs)
    machine["load_average_end"] = system.load_average()
    result = {
        "schema": RESULT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bundle": {
            "path": str(bundle.root),
            "name": bundle.manifest.get("name"),
            "manifest_sha256": sha256_file(bundle.root / MANIFEST),
            "input_size": list(bundle.input_size),
            "heads": bundle.heads,
            "training": training,
        },
        "data": source,
        "settings": {
            **asdict(config),
            "threads": threads,
            "timed": "model call on a preprocessed float32 batch of real images",
        },
        "machine": machine,
        "compute_floor": _floor(bundle, machine["cpu"], threads),
        "rows": results,
        "notes": notes,
    }
    result["summary"] = summarise(result)
    return result


def parse_thresholds(pairs: list[str], heads: list[str]) -> dict[str, float]:
    """["articleType=0.9", ...] -> {"articleType": 0.9}; values are fractions in [0, 1] (or above, to force a failure)."""
    thresholds = {}
    for pair in pairs:
        head, sep, value = pair.partition("=")
        if not sep or head not in heads:
            raise ValueError(f"--min-accuracy {pair!r}: expected HEAD=VALUE with HEAD one of {', '.join(heads)}")
        try:
            thresholds[head] = float(value)
        except ValueError:
            raise ValueError(f"--min-accuracy {pair!r}: {value!r} is not a number") from None
    return thresholds


def accuracy_failures(result: dict, thresholds: dict[str, float]) -> list[str]:
    """Every (row, head) of a finished row whose accuracy is below its threshold."""
    failures = []
    for row in result["rows"]:
        if row["status"] != "ok":
            continue
        for head, minimum in thresholds.items():
            value = row["accuracy"][head]["accuracy"]
            if value is None or value < minimum:
                failures.append(
                    f"{row['name']} {head} accuracy {value if value is None else f'{value:.4f}'} < {minimum}"
                )
    return failures
