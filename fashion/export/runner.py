"""Running models during export, always through :func:`fashion.runtime.backends.get_backend`.

The exporter never builds its own ONNX Runtime session, TensorRT context or Keras call: the parity,
FP16, INT8 and TensorRT gates open the staged file with the same backend the runtime will use to
serve it, so a gate checks what users will actually run. Keras runs through the ``keras`` backend
registered by the training package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.backends import BACKEND_FOR_FORMAT, Backend, get_backend
from fashion.runtime.errors import BackendUnavailableError
from fashion.runtime.manifest import ArtifactEntry
from fashion.runtime.timing import median_ms

from .errors import ExportError, TensorRTUnavailable

BATCH = 64


def backend_name(entry: ArtifactEntry) -> str:
    """The backend that runs an artifact of this manifest entry's ``format``."""
    fmt = entry.format
    if fmt == "keras":
        return "keras"
    if fmt not in BACKEND_FOR_FORMAT:
        raise ExportError(f"no backend runs artifacts of format {fmt!r}")
    return BACKEND_FOR_FORMAT[fmt]


def open_model(
    path: str | os.PathLike, entry: ArtifactEntry, threads: int | None = None, **backend_options: Any
) -> Backend:
    """Open ``path`` (described by manifest entry ``entry``) with its backend; ONNX runs on the CPU provider."""
    name = backend_name(entry)
    options: dict[str, Any] = {"providers": ["cpu"], **backend_options} if name == "onnxruntime" else {}
    try:
        return get_backend(name).open(Path(path), entry, threads=threads, **options)
    except BackendUnavailableError as exc:
        if name == "tensorrt":
            raise TensorRTUnavailable(str(exc)) from None
        raise


def infer_all(model: Backend, batch: np.ndarray, batch_size: int = BATCH) -> dict[str, np.ndarray]:
    """{head: probabilities} for every image of ``batch``, run in chunks of ``batch_size``."""
    if len(batch) == 0:
        raise ExportError("no images to run the model on")
    chunks = [
        model.infer(np.ascontiguousarray(batch[i : i + batch_size], dtype=np.float32))
        for i in range(0, len(batch), batch_size)
    ]
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def run_model(
    path: str | os.PathLike, entry: ArtifactEntry, batch: np.ndarray, batch_size: int = BATCH
) -> dict[str, np.ndarray]:
    """Open, run over ``batch``, close."""
    model = open_model(path, entry)
    try:
        return infer_all(model, batch, batch_size)
    finally:
        model.close()


def batch1_p50_ms(
    models: dict[str, tuple[Path, ArtifactEntry]],
    images: np.ndarray,
    threads: int | None,
    warmup: int = 5,
    rounds: int = 3,
) -> dict[str, float]:
    """Median batch-1 latency (ms) of each model ({key: (path, entry)}) over ``images``.

    The models take turns image by image (``fashion.runtime.timing.median_ms``), so a neighbour's load on a
    shared CPU slows them all alike instead of whichever happened to run at the wrong moment.
    """
    # the models take turns call by call: a session still spinning after its call would slow the next one
    opened = {
        key: open_model(path, entry, threads=threads, spin_between_calls=False) for key, (path, entry) in models.items()
    }
    try:
        calls = {key: model.infer for key, model in opened.items()}
        return median_ms(calls, [image[None] for image in images], rounds=rounds, warmup=min(warmup, len(images)))
    finally:
        for model in opened.values():
            model.close()
