"""A/B of ONNX graphs of the same model in ONE process: ``fashion-bench ab BUNDLE NAME=FILE.onnx ...``.

Separate benchmark runs on a shared CPU differ by more than a graph clean-up gains, so this mode
compares variants of the bundle's FP32 graph (``bundle`` = the recorded ``onnx_fp32``) against each
other in one process, taking turns call by call (the order rotates every turn, so no variant is
always first), and reports ratios to the bundle's graph:

- cold start: opening the file with the ONNX Runtime backend (session creation, graph optimisation),
  alternated ``--rounds`` times;
- batch-1 p50 latency, interleaved image by image, as wall time and as the process's CPU time (every
  thread of it): on a CPU shared with other work the CPU time of a call is far steadier than its wall
  time, which includes waiting for a core (the load average is recorded at start and end);
- throughput at each ``--batch-sizes`` size (whole-batch calls, variants alternating per call);
- the largest probability difference to the bundle's graph on the same real images.

Every variant is opened through ``fashion.runtime.backends.get_backend("onnxruntime")``. A variant
named ``NAME=FILE.onnx@disable`` is opened with graph optimisation off (for a file that was saved
already optimised by ONNX Runtime).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fashion.metrics import compare_outputs
from fashion.runtime.backends import get_backend
from fashion.runtime.manifest import ArtifactEntry

from . import system


def parse_variants(pairs: list[str]) -> dict[str, tuple[Path, str]]:
    """["rewritten=a.onnx", "saved=b.onnx@disable"] -> {name: (path, graph_optimization)}."""
    variants = {}
    for pair in pairs:
        name, sep, spec = pair.partition("=")
        if not sep or not name or name == "bundle":
            raise ValueError(f"variant {pair!r}: expected NAME=FILE.onnx (NAME not 'bundle')")
        file, _, level = spec.partition("@")
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"variant {pair!r}: {path} is not a file")
        variants[name] = (path, level or "all")
    return variants


def _rotated(names: list[str], turn: int) -> list[str]:
    """``names`` starting at position ``turn``: no variant always runs first (or right after another)."""
    shift = turn % len(names)
    return names[shift:] + names[:shift]


def _open(path: Path, entry: ArtifactEntry, threads: int, level: str):
    return get_backend("onnxruntime").open(path, entry, providers=["cpu"], threads=threads, graph_optimization=level)


def compare_graphs(
    bundle,
    variants: dict[str, tuple[Path, str]],
    images: np.ndarray,
    threads: int,
    batch_sizes: list[int],
    iters: int = 200,
    rounds: int = 5,
    log=print,
) -> dict[str, Any]:
    """Measure the bundle's FP32 graph and every variant as described in the module docstring."""
    entry = bundle.artifacts["onnx_fp32"]
    files = {"bundle": (bundle.artifact_path("onnx_fp32"), "all"), **variants}
    cold: dict[str, list[float]] = {name: [] for name in files}
    for turn in range(rounds):
        for name in _rotated(list(files), turn):
            path, level = files[name]
            start = time.perf_counter()
            _open(path, entry, threads, level).close()
            cold[name].append(time.perf_counter() - start)
    models = {name: _open(path, entry, threads, level) for name, (path, level) in files.items()}
    try:
        reference = models["bundle"].infer(images)
        outputs = {name: model.infer(images) for name, model in models.items()}
        singles = [images[i : i + 1] for i in range(len(images))]
        for model in models.values():
            for single in singles[:10]:
                model.infer(single)
        latency: dict[str, list[float]] = {name: [] for name in models}
        cpu: dict[str, list[float]] = {name: [] for name in models}
        for i in range(iters):
            for name in _rotated(list(models), i):
                model = models[name]
                start, start_cpu = time.perf_counter(), time.process_time()
                model.infer(singles[i % len(singles)])
                latency[name].append((time.perf_counter() - start) * 1000.0)
                cpu[name].append((time.process_time() - start_cpu) * 1000.0)
        throughput: dict[str, dict[str, float]] = {name: {} for name in models}
        for size in batch_sizes:
            batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
            for model in models.values():
                model.infer(batch)
            spent = {name: 0.0 for name in models}
            calls = max(3, -(-iters // size))
            for call in range(calls):
                for name in _rotated(list(models), call):
                    start = time.perf_counter()
                    models[name].infer(batch)
                    spent[name] += time.perf_counter() - start
            for name in models:
                throughput[name][str(size)] = calls * size / spent[name]
    finally:
        for model in models.values():
            model.close()
    heads = bundle.heads
    result: dict[str, Any] = {
        "threads": threads,
        "images": int(len(images)),
        "iters": iters,
        "rounds": rounds,
        "machine": system.machine_summary(),
        "variants": {},
    }
    base_p50 = float(np.median(latency["bundle"]))
    base_cpu = float(np.median(cpu["bundle"]))
    base_cold = float(np.median(cold["bundle"]))
    for name, (path, level) in files.items():
        p50 = float(np.median(latency[name]))
        comparison = compare_outputs(reference, outputs[name], heads)
        result["variants"][name] = {
            "file": str(path),
            "bytes": Path(path).stat().st_size,
            "graph_optimization": level,
            "cold_start_s": float(np.median(cold[name])),
            "cold_start_ratio": float(np.median(cold[name])) / base_cold,
            "p50_ms": p50,
            "p50_ratio": p50 / base_p50,
            "cpu_p50_ms": float(np.median(cpu[name])),
            "cpu_p50_ratio": float(np.median(cpu[name])) / base_cpu,
            "img_per_s": throughput[name],
            "throughput_ratio": {s: v / throughput["bundle"][s] for s, v in throughput[name].items()},
            "max_abs_diff_vs_bundle": comparison.worst_diff,
            "top1_agreement_vs_bundle": comparison.min_agreement,
        }
        log(f"  {name}: p50 {p50:.3f} ms ({p50 / base_p50:.3f}x), cold {np.median(cold[name]):.3f} s")
    result["machine"]["load_average_end"] = system.load_average()
    return result


def render_markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if cpu.get(f)]
    sizes = sorted({s for v in result["variants"].values() for s in v["img_per_s"]}, key=int)
    lines = [
        f"CPU: {cpu['model']} ({', '.join(flags) or 'no AVX2'}), {result['threads']} threads, "
        f"{result['images']} real test images, {result['iters']} interleaved batch-1 calls per variant, "
        f"cold start median of {result['rounds']}. Load average start/end: "
        f"{result['machine'].get('load_average_start')} / {result['machine'].get('load_average_end')}.",
        "",
        "| variant | MB | cold start s (ratio) | batch-1 p50 ms (ratio) | batch-1 CPU ms (ratio) | "
        + " | ".join(f"img/s b{s} (ratio)" for s in sizes)
        + " | max abs diff vs bundle |",
        "|---|---|---|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for name, v in result["variants"].items():
        cells = [f"{v['img_per_s'][s]:.0f} ({v['throughput_ratio'][s]:.3f})" for s in sizes]
        lines.append(
            f"| {name} | {v['bytes'] / 1e6:.1f} | {v['cold_start_s']:.3f} ({v['cold_start_ratio']:.3f}) | "
            f"{v['p50_ms']:.3f} ({v['p50_ratio']:.3f}) | {v['cpu_p50_ms']:.3f} ({v['cpu_p50_ratio']:.3f}) | "
            + " | ".join(cells)
            + f" | {v['max_abs_diff_vs_bundle']:.2e} |"
        )
    lines += [f"\nNote: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)
