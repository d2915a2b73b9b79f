"""One benchmark run: every requested row, side by side, on the same images, threads and machine."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashion.metrics import accuracy, compare_outputs, rank
from fashion.runtime.bundle import MANIFEST, load_manifest, sha256_file
from fashion.runtime.errors import EXIT_USAGE, FashionError

from . import rows, system
from .measure import run_in_subprocess

if TYPE_CHECKING:
    from fashion.data.cli_options import DataChoice
    from fashion.data.images import LabelledImages
    from fashion.runtime.bundle import Bundle

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
    rounds: int = 5  # timed rounds per row; their p50s' spread says what difference is noise
    threads: int | None = None
    limit: int | None = None
    eval_batch: int = 32
    baseline: str | None = None  # an older bundle benchmarked in the same run, on the same images


class BaselineMismatch(FashionError):
    """The baseline bundle cannot be compared with the main one (different labels or images)."""

    exit_code = EXIT_USAGE


@dataclass
class _Side:
    """One bundle of the run: its images (through its own preprocessing) and its finished rows."""

    bundle: Bundle
    config: BenchConfig
    evalset: LabelledImages
    source: dict
    #: The split file its images were read with (None: a --data folder scored whole).
    split_file: Path | None = None
    prefix: str = ""
    images_path: Path | None = None
    results: list[dict] = field(default_factory=list)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


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
        summary["fastest_cpu_within_noise_of"] = [
            row["name"] for row in cpu_rows if row is not fastest and within_noise(row, fastest)
        ]
        deltas = (fastest.get("vs_fp32") or {}).get("accuracy_delta_pp")
        if deltas:
            summary["fastest_cpu_worst_accuracy_delta_pp"] = min(deltas.values())
        floor = (result.get("compute_floor") or {}).get("floor_ms")
        if floor:
            summary["fastest_cpu_p50_over_floor"] = fastest["latency_ms"]["p50"] / floor
    return summary


def within_noise(a: dict, b: dict) -> bool:
    """Whether two rows' batch-1 p50s differ by less than the larger of their run-to-run spreads."""
    spreads = [(row["latency_ms"].get("rounds") or {}).get("spread_pct", 0.0) for row in (a, b)]
    difference = (
        100.0
        * abs(a["latency_ms"]["p50"] - b["latency_ms"]["p50"])
        / min(a["latency_ms"]["p50"], b["latency_ms"]["p50"])
    )
    return difference < max(spreads)


def runtime_choice(bundle, threads: int) -> dict:
    """What ``Classifier.load(bundle, precision="auto", threads=threads)`` runs on this host, and why."""
    from fashion.runtime.classifier import select_artifact
    from fashion.runtime.errors import FashionError

    try:
        return select_artifact(bundle, threads=threads).to_dict()
    except (FashionError, ValueError) as exc:
        return {"artifact": None, "reason": str(exc)}


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


def data_choice(bundle: Bundle, config: BenchConfig) -> DataChoice:
    """The config's data options as the shared option group resolves them, with ``bundle``'s recorded split file."""
    from fashion.data.cli_options import DataChoice

    return DataChoice(
        data_dir=Path(config.data) if config.data is not None else None,
        split_file=Path(config.split_file) if config.split_file is not None else None,
        split=config.split,
        limit=config.limit,
        split_explicit=config.split_explicit,
    ).with_bundle(bundle)


def split_file_used(bundle: Bundle, config: BenchConfig) -> Path | None:
    """The split file the images are read with: None when ``--data`` names a folder scored whole, else
    ``--split-file``, else the one ``bundle`` recorded, else the committed default."""
    if config.data is not None and config.split_file is None and not config.split_explicit:
        return None
    return data_choice(bundle, config).resolved_split_file()


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

    split_file = split_file_used(bundle, config)
    use_split = split_file is not None
    data_dir = data_choice(bundle, config).resolved_data_dir()
    recorded = bundle.manifest.split
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
        digest = recorded.sha256 if recorded is not None else None
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
    """Every requested row of the bundle (and of ``config.baseline``, row by row in turn) on one machine.

    With a baseline, each bundle scores the same labelled images through its own preprocessing, and
    the result gains ``baseline`` (that bundle's full result) and ``comparison`` (new vs old per row).
    """
    bundle = load_manifest(config.bundle)  # verifies every listed sha256
    specs = rows.parse_rows(",".join(config.backends))
    threads = config.threads or system.available_cores()
    machine = system.machine_summary()
    old = load_manifest(config.baseline) if config.baseline else None
    if old is not None:
        check_same_labels(bundle, old)  # refused before any image is read

    evalset, source = load_images(bundle, config, progress)
    main_side = _Side(bundle, config, evalset, source, split_file=split_file_used(bundle, config))
    sides = [main_side]
    if old is not None:
        sides.insert(0, _load_baseline(main_side, old, progress))
    load = LoadWatch(log)
    load.sample("start")
    with tempfile.TemporaryDirectory(prefix="fashion-bench-") as tmp:
        for index, side in enumerate(sides):
            side.images_path = Path(tmp) / ("images.npy" if side is main_side else f"images-{index}.npy")
            np.save(side.images_path, side.evalset.images)
        for spec in specs:  # row by row, old then new, so drift in machine load hits both alike
            for side in sides:
                workdir = Path(tmp) / ("work" if side is main_side else "baseline-work")
                if _run_row(spec, side, threads, workdir, log):
                    load.sample(f"after {side.prefix}{spec.name}")
    for side in sides:
        _compare(side.results, side.outputs)
    machine["load_average_end"] = system.load_average()
    machine["load_average_samples"] = load.samples
    result = _side_result(main_side, threads, machine, machine)
    if load.warning:
        result["notes"].append(load.warning)
    if config.baseline:
        shared = "shared: the top-level machine section (both bundles ran in this one run)"
        result["baseline"] = _side_result(sides[0], threads, machine, shared)
        result["comparison"] = compare_bundles(result["rows"], result["baseline"]["rows"])
    return result


def _side_result(side: _Side, threads: int, machine: dict, machine_record: dict | str) -> dict:
    """The full single-bundle result of one side; ``machine_record`` is what its "machine" key holds."""
    bundle = side.bundle
    training = bundle.manifest.training or {}
    notes = []
    if training.get("backbone") == "tiny":
        notes.append("test bundle with an untrained tiny model: timings are not representative, only correctness")
    result = {
        "schema": RESULT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bundle": {
            "path": str(bundle.root),
            "name": bundle.manifest.name,
            "manifest_sha256": sha256_file(bundle.root / MANIFEST),
            "input_size": list(bundle.input_size),
            "heads": bundle.heads,
            "training": training,
        },
        "data": side.source,
        "settings": {
            **asdict(side.config),
            "threads": threads,
            "timed": "model call on a preprocessed float32 batch of real images",
        },
        "machine": machine_record,
        "compute_floor": _floor(bundle, machine["cpu"], threads),
        "runtime_choice": runtime_choice(bundle, threads),
        "rows": side.results,
        "notes": notes,
    }
    result["summary"] = summarise(result)
    return result


class LoadWatch:
    """The machine's load average through a run: a load above the CPUs means rows waited for a core.

    Sampled at the start and after every row that ran; the first sample over the CPU count is logged as
    a warning at once, and :attr:`warning` (also a note in the result) says the timings are not clean.
    """

    def __init__(self, log, cpus: int | None = None):
        self.log, self.cpus = log, cpus or os.cpu_count() or 1
        self.samples: list[dict] = []
        self.warning: str | None = None

    def sample(self, when: str, load: list[float] | None = None) -> None:
        """Record the load average now (or ``load``, 1/5/15 minutes) and warn once it is above the CPUs."""
        load = load if load is not None else system.load_average()
        if load is None:
            return
        self.samples.append({"when": when, "load_average": load})
        busiest = max(self.samples, key=lambda s: s["load_average"][0])
        if busiest["load_average"][0] > self.cpus:
            first = self.warning is None
            self.warning = (
                f"load average up to {busiest['load_average'][0]:.2f} ({busiest['when']}) on {self.cpus} CPUs: "
                "other work competed for the cores, so timings are slower and noisier than on a quiet machine; "
                "compare rows of this run with each other only, and mind the spread column"
            )
            if first:
                self.log(f"warning: {self.warning}")


def _run_row(spec: rows.RowSpec, side: _Side, threads: int, workdir: Path, log) -> bool:
    """One row of one bundle in a fresh process; a row that cannot run or breaks is recorded with the reason.

    Returns whether a worker process ran.
    """
    config, bundle, name = side.config, side.bundle, f"{side.prefix}{spec.name}"
    row = _row_header(spec, bundle)
    reason = rows.skip_reason(spec, bundle)
    if reason:
        side.results.append({**row, "status": "skipped", "reason": reason})
        log(f"  {name}: skipped ({reason})")
        return False
    log(f"  {name}: running in a fresh process ...")
    job = {
        "row": spec.name,
        "bundle": str(bundle.root),
        "images": str(side.images_path),
        "threads": threads,
        "batch_sizes": config.batch_sizes,
        "warmup": config.warmup,
        "iters": config.iters,
        "rounds": config.rounds,
        "eval_batch": config.eval_batch,
    }
    started = time.perf_counter()
    try:
        measured = run_in_subprocess(job, workdir)
    except Exception as exc:  # a broken row is reported, the others still run
        side.results.append({**row, "status": "failed", "reason": str(exc)})
        log(f"  {name}: FAILED ({exc})")
        return True
    side.outputs[spec.name] = measured.pop("outputs")
    scores = _scores(side.outputs[spec.name], side.evalset)
    side.results.append(
        {**row, "status": "ok", "reason": None, **measured, "accuracy": scores, "wall_s": time.perf_counter() - started}
    )
    latency = measured["latency_ms"]
    log(f"  {name}: p50 {latency['p50']:.2f} ms (rounds spread {latency['rounds']['spread_pct']:.1f} %)")
    return True


def _load_baseline(main: _Side, old: Bundle, progress: bool) -> _Side:
    """The baseline bundle and the same labelled images read through its own preprocessing.

    Refused (exit 2) before any row runs when accuracy would not be comparable: other labels.json,
    or other image ids. The main bundle's split file is used for both, so the ids agree by construction.
    """
    config = main.config
    old_config = dataclasses.replace(config, bundle=str(config.baseline), baseline=None)
    if main.split_file is not None:  # the split file the main bundle resolved, not the baseline's own record
        old_config = dataclasses.replace(old_config, split_file=str(main.split_file))
    evalset, source = load_images(old, old_config, progress)
    check_same_ids(main.evalset.ids, evalset.ids, str(old.root))
    return _Side(old, old_config, evalset, source, split_file=main.split_file, prefix="baseline ")


def check_same_labels(bundle: Bundle, baseline: Bundle) -> None:
    """Refuse a baseline whose labels.json differs: per-head accuracy would mean different things."""
    if bundle.labels == baseline.labels:
        return
    heads = sorted(set(bundle.labels) | set(baseline.labels))
    differ = [head for head in heads if bundle.labels.get(head) != baseline.labels.get(head)]
    raise BaselineMismatch(
        f"--baseline {baseline.root}: its labels.json differs from {bundle.root}'s (heads: {', '.join(differ)}); "
        "accuracy would not be comparable"
    )


def check_same_ids(ids: np.ndarray, baseline_ids: np.ndarray, baseline: str) -> None:
    """Refuse a baseline that would score other images than the main bundle (same data, split and --limit)."""
    if np.array_equal(np.asarray(ids), np.asarray(baseline_ids)):
        return
    only_new = len(set(map(int, ids)) - set(map(int, baseline_ids)))
    only_old = len(set(map(int, baseline_ids)) - set(map(int, ids)))
    raise BaselineMismatch(
        f"--baseline {baseline}: it would score {len(baseline_ids):,} images vs {len(ids):,} for the bundle "
        f"({only_new} ids only in the bundle's set, {only_old} only in the baseline's); "
        "accuracy would not be comparable"
    )


def compare_bundles(new_rows: list[dict], old_rows: list[dict]) -> dict[str, dict]:
    """New vs old for each row that finished in both: p50 and throughput ratios (new/old), accuracy deltas."""
    old_by_name = {row["name"]: row for row in old_rows if row["status"] == "ok"}
    comparison = {}
    for new in new_rows:
        old = old_by_name.get(new["name"])
        if new["status"] != "ok" or old is None:
            continue
        heads = [h for h in new["accuracy"] if h in old["accuracy"]]
        comparison[new["name"]] = {
            "latency_p50_ratio": new["latency_ms"]["p50"] / old["latency_ms"]["p50"],
            "throughput_ratios": {
                size: new["throughput"][size]["img_per_s"] / old["throughput"][size]["img_per_s"]
                for size in new["throughput"]
                if size in old["throughput"]
            },
            "accuracy_delta_pp": _deltas(new, old, heads, "accuracy", 100.0),
            "macro_f1_delta": _deltas(new, old, heads, "macro_f1", 1.0),
        }
    return comparison


def _deltas(new: dict, old: dict, heads: list[str], metric: str, scale: float) -> dict[str, float]:
    values = {head: (new["accuracy"][head].get(metric), old["accuracy"][head].get(metric)) for head in heads}
    return {head: scale * (a - b) for head, (a, b) in values.items() if a is not None and b is not None}


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
