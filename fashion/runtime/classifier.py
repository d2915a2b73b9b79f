"""Classifier: load a bundle, pick an artifact and a backend, predict six attributes of a photo.

    with Classifier.load("models/fashion-effnetb0") as clf:
        pred = clf.predict("shirt.jpg", top_k=3)
        print(pred.heads["articleType"].label, pred.heads["articleType"].confidence)

One loaded classifier may be shared by several threads: ONNX Runtime sessions are safe to run
concurrently, and backends that are not (TensorRT) are serialised behind a lock.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from .backends.base import BACKEND_FOR_FORMAT, FEATURE_MAP, Backend, get_backend
from .bundle import Bundle, load_manifest, verify_files
from .errors import BundleError, FashionError
from .hierarchy import LEVELS, HierarchyDecoder
from .preprocess import ImageSource, _describe, preprocess, to_batch
from .results import BatchItem, Prediction, decode_head

PRECISIONS = ("fp32", "fp16", "int8")


def choose_artifact(bundle: Bundle, backend: str = "auto", precision: str = "auto") -> str:
    """The manifest key of the artifact to run.

    ``auto`` backend means ONNX Runtime on the CPU. ``auto`` precision means the bundle's
    ``default_artifact`` when it suits the backend (the exporter records the fastest artifact
    that passed its accuracy check there), else FP32 ONNX, else FP16 TensorRT.
    """
    if backend not in ("auto", "onnxruntime", "tensorrt"):
        raise ValueError(f"backend must be auto, onnxruntime or tensorrt, got {backend!r}")
    if precision not in ("auto",) + PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, fp16 or int8, got {precision!r}")
    artifacts = bundle.artifacts
    fmt = "tensorrt" if backend == "tensorrt" else "onnx"
    if precision == "auto":
        default = bundle.manifest.recorded_default
        candidates = [default] if default else []
        candidates += [f"{fmt}_fp32", f"{fmt}_fp16", f"{fmt}_int8"]
    else:
        candidates = [f"{fmt}_{precision}"]
    for key in candidates:
        if key in artifacts and artifacts[key].get("format") == fmt:
            return key
    raise BundleError(
        f"{bundle.root}: no {fmt} artifact for precision {precision} "
        f"(bundle has: {', '.join(artifacts) or 'none'}; build one with fashion-export)"
    )


class Classifier:
    """Predicts every head of the bundle for one image or a batch. Build it with :meth:`load`."""

    def __init__(self, bundle: Bundle, backend: Backend, artifact: str, threads: int | None = None):
        self.bundle = bundle
        self.backend = backend
        self.artifact = artifact
        self.threads = threads
        self.heads = bundle.heads
        self.input_size = bundle.input_size
        self.hierarchy = HierarchyDecoder(bundle.hierarchy, bundle.labels)
        self._lock = threading.Lock()
        self._head_weights: dict[str, np.ndarray] | None = None

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike, backend: str = "auto", precision: str = "auto",
             providers: list[str] | None = None, threads: int | None = None, allow_fallback: bool = False,
             **backend_options: Any) -> "Classifier":
        """Validate the bundle, verify the chosen artifact's sha256, open it and check its outputs."""
        bundle = load_manifest(bundle_dir, verify_hashes=False)
        key = choose_artifact(bundle, backend, precision)
        verify_files(bundle, [key])
        entry = bundle.artifacts[key]
        path = bundle.artifact_path(key)
        backend_cls = get_backend(BACKEND_FOR_FORMAT[entry["format"]])
        engine = backend_cls.open(path, entry.to_dict(), providers=providers, threads=threads,
                                  allow_fallback=allow_fallback, **backend_options)
        try:
            _check_outputs(bundle, engine, path)
        except BaseException:
            engine.close()
            raise
        return cls(bundle, engine, key, threads)

    # -- inference ---------------------------------------------------------------------------

    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        """Raw model outputs {head: (N, classes) probabilities} for a float32 NHWC 0-255 batch (thread-safe)."""
        if self.backend is None:
            raise FashionError("this Classifier is closed")
        if self.backend.thread_safe:
            return self.backend.infer(batch, feature_map=feature_map)
        with self._lock:
            return self.backend.infer(batch, feature_map=feature_map)

    def _decode(self, outputs: dict[str, np.ndarray], row: int, top_k: int, consistent: bool,
                latency_ms: float) -> Prediction:
        chosen: dict[str, int] = {}
        if consistent and self.hierarchy:
            combo = self.hierarchy.decode({level: outputs[level][row : row + 1] for level in LEVELS})[0]
            chosen = dict(zip(LEVELS, combo.tolist()))
        heads = {head: decode_head(outputs[head][row], self.bundle.labels[head], top_k, chosen.get(head))
                 for head in self.heads}
        return Prediction(heads=heads, latency_ms=latency_ms, consistent=bool(chosen))

    def preprocess(self, image: ImageSource) -> np.ndarray:
        """The exact uint8 HxWx3 tensor the model sees for ``image`` (raises InvalidImageError)."""
        return preprocess(image, *self.input_size)

    def predict(self, image: ImageSource, top_k: int = 3, consistent: bool = False) -> Prediction:
        """Predict every head for one image (path, bytes, PIL image or HxWx3 uint8 array)."""
        start = time.perf_counter()
        outputs = self.infer(to_batch([self.preprocess(image)]))
        return self._decode(outputs, 0, top_k, consistent, (time.perf_counter() - start) * 1000)

    def predict_batch(self, images: Iterable[ImageSource], batch_size: int = 32, top_k: int = 3,
                      consistent: bool = False) -> list[BatchItem]:
        """Predict many images; an image that cannot be read is reported in its item, the rest still run."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        images = list(images)
        items: list[BatchItem | None] = [None] * len(images)
        for first in range(0, len(images), batch_size):
            start = time.perf_counter()
            tensors, rows = [], []
            for position in range(first, min(first + batch_size, len(images))):
                source = images[position]
                try:
                    tensors.append(self.preprocess(source))
                    rows.append(position)
                except Exception as exc:  # one unreadable photo must not sink the batch
                    items[position] = BatchItem(source=_describe(source), error=str(exc) or type(exc).__name__)
            if not tensors:
                continue
            outputs = self.infer(to_batch(tensors))
            per_image_ms = (time.perf_counter() - start) * 1000 / len(rows)
            for row, position in enumerate(rows):
                prediction = self._decode(outputs, row, top_k, consistent, per_image_ms)
                items[position] = BatchItem(source=_describe(images[position]), prediction=prediction)
        return items  # type: ignore[return-value]

    # -- class-activation maps -----------------------------------------------------------------

    def _weights(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._head_weights is None:
                path = self.bundle.root / "head_weights.npz"
                if not path.is_file():
                    raise BundleError(f"{path}: missing (needed for cam())")
                with np.load(path, allow_pickle=False) as data:
                    self._head_weights = {name: data[name] for name in data.files}
            return self._head_weights

    def cam(self, image: ImageSource, head: str = "articleType", class_index: int | None = None) -> np.ndarray:
        """Class-activation map of ``head`` (its predicted class unless ``class_index``): float32 HxW in [0, 1]."""
        if head not in self.heads:
            raise ValueError(f"unknown head {head!r} (heads: {', '.join(self.heads)})")
        outputs = self.infer(to_batch([self.preprocess(image)]), feature_map=True)
        kernel = self._weights().get(f"{head}/kernel")
        features = outputs[FEATURE_MAP][0]  # h x w x C
        if kernel is None or kernel.shape != (features.shape[-1], len(self.bundle.labels[head])):
            raise BundleError(f"{self.bundle.root / 'head_weights.npz'}: '{head}/kernel' is missing or has shape "
                              f"{None if kernel is None else kernel.shape}, expected "
                              f"{(features.shape[-1], len(self.bundle.labels[head]))}")
        index = int(np.argmax(outputs[head][0])) if class_index is None else int(class_index)
        heat = np.maximum(features @ kernel[:, index], 0).astype(np.float32)
        height, width = self.input_size
        heat = np.asarray(Image.fromarray(heat).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
        peak = float(heat.max())
        return np.clip(heat / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(heat)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        entry = self.bundle.artifacts[self.artifact]
        return {
            "backend": self.backend.name if self.backend else None,
            "providers": list(self.backend.providers) if self.backend else [],
            "precision": entry.get("precision"),
            "artifact": self.artifact,
            "file": entry["file"],
            "input_size": list(self.input_size),
            "threads": self.threads,
        }

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_outputs(bundle: Bundle, backend: Backend, path: Path) -> None:
    """The model must produce every head, each with as many classes as labels.json lists."""
    sizes = backend.output_sizes()
    for head in bundle.heads:
        if head not in sizes:
            raise BundleError(f"{path}: model has no output for head '{head}' (outputs: {sorted(sizes)})")
        expected = len(bundle.labels[head])
        if sizes[head] is not None and sizes[head] != expected:
            raise BundleError(f"{path}: head '{head}' outputs {sizes[head]} classes but labels.json "
                              f"lists {expected}; the model and labels come from different trainings")
