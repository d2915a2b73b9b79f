"""Timing, cold start and memory of one row, each row in its own fresh worker process.

A fresh process per row keeps the numbers honest: cold start (framework import + artifact load)
really starts cold, and peak RSS (``ru_maxrss``) belongs to that row alone. Threads are fixed by
environment before the worker imports anything heavy, and passed to the framework explicitly.

Timed: the model call on an already preprocessed float32 batch of real images (image decoding and
resizing are the same shared code for every row, so they are left out). Batch-1 latency is the
distribution of single calls; throughput is batch size / the median whole-batch call, so a row has one
latency figure everywhere (see :func:`measure_speed`), measured in rounds whose spread is recorded.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

POOL_IMAGES = 64  # distinct real images cycled through while timing


def percentiles(samples_ms: list[float]) -> dict:
    values = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "n": int(values.size),
    }


def batches_of(pool: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Distinct batches cut from the pool (the pool is repeated when it is smaller than one batch)."""
    if len(pool) < batch_size:
        pool = np.concatenate([pool] * (batch_size // len(pool) + 1))
    count = max(1, len(pool) // batch_size)
    return [np.ascontiguousarray(pool[i * batch_size : (i + 1) * batch_size]) for i in range(count)]


def time_calls(infer, batches: list[np.ndarray], calls: int) -> list[float]:
    """Wall time in ms of ``calls`` calls, cycling through ``batches``."""
    samples = []
    for i in range(calls):
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        infer(batch)
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def split_calls(total: int, rounds: int) -> list[int]:
    """``total`` calls spread over at most ``rounds`` rounds as evenly as possible (no empty round)."""
    rounds = max(1, min(rounds, total))
    return [total // rounds + (1 if r < total % rounds else 0) for r in range(rounds)]


def spread(values: list[float], centre: float) -> float:
    """The range of the rounds' values as a percentage of ``centre``: below it, a difference is noise."""
    return 100.0 * (max(values) - min(values)) / centre if len(values) > 1 and centre else 0.0


def measure_speed(infer, pool: np.ndarray, batch_sizes: list[int], warmup: int, iters: int, rounds: int = 5) -> dict:
    """Batch-1 latency over ``iters`` calls and throughput at each batch size over about ``iters`` images.

    The calls are made in ``rounds`` rounds; each round times every batch size in turn, so drifting load
    on a shared machine hits all of them alike (perf_analyzer's idea of stable measurement windows). Every
    number comes from the median call, so one figure describes a row everywhere it appears: the row's
    latency is the batch-1 p50 over all rounds, img/s at batch size N is N / (p50 of the N-image calls)
    (at N = 1: 1000 / latency p50), ms per image is its inverse. ``rounds`` records each round's p50 and
    their spread (range / overall p50, %): a difference between two rows smaller than their spread is noise.
    """
    sizes = [1] + [size for size in dict.fromkeys(batch_sizes) if size != 1]
    batches = {size: batches_of(pool, size) for size in sizes}
    time_calls(infer, batches[1], warmup)
    for size in sizes[1:]:
        time_calls(infer, batches[size], max(2, warmup // size))  # a new shape can build new kernels
    plan = {1: split_calls(iters, rounds)}
    for size in sizes[1:]:
        plan[size] = split_calls(max(3, -(-iters // size)), len(plan[1]))
    samples: dict[int, list[list[float]]] = {size: [] for size in sizes}
    for round_index in range(len(plan[1])):
        for size in sizes:
            if round_index < len(plan[size]):
                samples[size].append(time_calls(infer, batches[size], plan[size][round_index]))

    def summary(size: int) -> tuple[dict, dict]:
        pooled = [value for part in samples[size] for value in part]
        stats = percentiles(pooled)
        round_p50s = [float(np.percentile(part, 50)) for part in samples[size]]
        return stats, {"p50_ms": round_p50s, "spread_pct": spread(round_p50s, stats["p50"])}

    latency, latency_rounds = summary(1)
    throughput = {}
    for size in sizes:
        if size not in batch_sizes:
            continue
        stats, by_round = summary(size) if size != 1 else (latency, latency_rounds)
        throughput[str(size)] = {
            "calls": stats["n"],
            "images": stats["n"] * size,
            "img_per_s": size * 1000.0 / stats["p50"],
            "ms_per_image": stats["p50"] / size,
            "batch_ms": stats,
            "rounds": {
                "img_per_s": [size * 1000.0 / value for value in by_round["p50_ms"]],
                "spread_pct": by_round["spread_pct"],
            },
        }
    return {"latency_ms": {**latency, "rounds": latency_rounds}, "throughput": throughput}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def predict_all(infer, images: np.ndarray, heads: list[str], batch_size: int) -> dict[str, np.ndarray]:
    """Probabilities per head for every image (float32), run in batches of ``batch_size``."""
    outputs: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    for first in range(0, len(images), batch_size):
        result = infer(np.asarray(images[first : first + batch_size], dtype=np.float32))
        for head in heads:
            outputs[head].append(np.asarray(result[head], dtype=np.float32))
    return {head: np.concatenate(parts) for head, parts in outputs.items()}


def run_worker(job: dict) -> dict:
    """Inside the worker process: open the row, time it, measure memory, run every eval image."""
    from fashion.runtime.bundle import load_manifest

    from .rows import ROWS, open_runner

    spec = ROWS[job["row"]]
    bundle = load_manifest(job["bundle"], verify_hashes=False)  # the parent verified every sha256
    images = np.load(job["images"], mmap_mode="r")

    start = time.perf_counter()
    runner = open_runner(spec, bundle, job["threads"])
    cold_start_s = time.perf_counter() - start
    try:
        pool = np.asarray(images[:POOL_IMAGES], dtype=np.float32)
        start = time.perf_counter()
        runner.infer(pool[:1])
        first_inference_ms = (time.perf_counter() - start) * 1000.0
        speed = measure_speed(runner.infer, pool, job["batch_sizes"], job["warmup"], job["iters"], job.get("rounds", 5))
        rss = peak_rss_mb()  # before the accuracy pass pages the whole eval set in
        probabilities = predict_all(runner.infer, images, bundle.heads, job["eval_batch"])
        info = dict(getattr(runner, "info", {}) or {})
    finally:
        runner.close()
    np.savez(job["outputs"], **probabilities)
    return {
        "cold_start_s": cold_start_s,
        "first_inference_ms": first_inference_ms,
        "peak_rss_mb": rss,
        "info": info,
        **speed,
    }


def thread_environment(threads: int | None) -> dict[str, str]:
    """Environment that pins every thread pool a framework might start to ``threads``."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            env[name] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def run_in_subprocess(job: dict, workdir: Path, timeout_s: float = 3600) -> dict:
    """Run one row in a fresh Python process; return its measurements or raise RuntimeError with its stderr."""
    workdir.mkdir(parents=True, exist_ok=True)
    job_path, result_path = workdir / f"{job['row']}.job.json", workdir / f"{job['row']}.result.json"
    job = {**job, "outputs": str(workdir / f"{job['row']}.outputs.npz")}
    job_path.write_text(json.dumps(job))
    env = {**os.environ, **thread_environment(job["threads"])}
    completed = subprocess.run(
        [sys.executable, "-m", "fashion.benchmarks.worker", str(job_path), str(result_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if completed.returncode != 0 or not result_path.is_file():
        lines = (completed.stderr or completed.stdout).strip().splitlines()
        errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]  # the worker's run_cli
        raise RuntimeError((errors or lines or [f"exit code {completed.returncode}"])[-1])
    result = json.loads(result_path.read_text())
    with np.load(job["outputs"], allow_pickle=False) as data:
        result["outputs"] = {name: data[name] for name in data.files}
    return result
