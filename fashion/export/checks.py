"""Running exported models on real images and the numbers the gates compare.

Outputs are always looked up by name (``outputs`` maps head -> graph output name): tf2onnx sorts
graph outputs alphabetically, so positions mean nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from fashion.metrics.accuracy import head_scores

BATCH = 64


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep ORT's initializer-cleanup warnings out of the export log
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path: str | os.PathLike, batch: np.ndarray, outputs: dict[str, str],
             batch_size: int = BATCH) -> dict[str, np.ndarray]:
    """Outputs of the ONNX model at ``path`` keyed by head (and any other key in ``outputs``)."""
    session = onnx_session(path)
    names = list(outputs.values())
    chunks = [session.run(names, {"image": batch[i : i + batch_size]}) for i in range(0, len(batch), batch_size)]
    return {key: np.concatenate([chunk[j] for chunk in chunks]) for j, key in enumerate(outputs)}


def run_keras(model, batch: np.ndarray, heads: list[str], batch_size: int = BATCH) -> dict[str, np.ndarray]:
    results: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    for i in range(0, len(batch), batch_size):
        out = model(batch[i : i + batch_size], training=False)
        for head in heads:
            results[head].append(np.asarray(out[head]))
    return {head: np.concatenate(chunks) for head, chunks in results.items()}


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], heads: list[str]) -> dict:
    """Per head: max abs difference of the probabilities and the share of equal argmaxes."""
    report = {}
    for head in heads:
        ref, cand = reference[head].astype(np.float64), candidate[head].astype(np.float64)
        report[head] = {
            "max_abs_diff": float(np.max(np.abs(ref - cand))) if ref.size else 0.0,
            "argmax_agreement": float(np.mean(ref.argmax(1) == cand.argmax(1))) if len(ref) else 1.0,
        }
    return report


def accuracy(probabilities: dict[str, np.ndarray], labels: dict[str, np.ndarray], heads: list[str]) -> dict:
    """Per-head accuracy over the images whose label is known; {"accuracy": ..., "n": ...}."""
    report = {}
    for head in heads:
        scores = head_scores(labels[head], probabilities[head].argmax(1)[:, None])
        report[head] = {"accuracy": scores["accuracy"], "n": scores["n"]}
    return report


def latency_ms(models: dict[str, tuple[str | os.PathLike, dict[str, str]]], batch: np.ndarray,
               warmup: int = 5, rounds: int = 3) -> dict[str, float]:
    """Median batch-1 latency per model ({key: (path, outputs)}) over the images in ``batch``.

    The models take turns image by image, so a neighbour's load on a shared CPU slows them all
    alike instead of whichever happened to run at the wrong moment.
    """
    sessions = {key: (onnx_session(path), list(outputs.values())) for key, (path, outputs) in models.items()}
    for session, names in sessions.values():
        for image in batch[:warmup]:
            session.run(names, {"image": image[None]})
    times = {key: [] for key in sessions}
    for _ in range(rounds):
        for image in batch:
            for key, (session, names) in sessions.items():
                start = time.perf_counter()
                session.run(names, {"image": image[None]})
                times[key].append((time.perf_counter() - start) * 1000.0)
    return {key: float(np.median(values)) for key, values in times.items()}


def file_size(path: str | os.PathLike) -> int:
    return Path(path).stat().st_size
