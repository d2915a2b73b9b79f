"""The one narrow interface every inference backend implements, and the registry that finds them.

A backend runs one exported artifact: float32 NHWC batch in, {head: probabilities} out (plus
"feature_map" when asked). It knows nothing about images, labels or bundles beyond the manifest
entry of its artifact. Heavy imports (onnxruntime, tensorrt, cuda) stay inside the backend module
so importing ``fashion.runtime`` costs nothing until a backend is opened.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError

FEATURE_MAP = "feature_map"


class Backend(ABC):
    """Open an artifact, run batches, close. Subclasses fill ``name``, ``providers`` and ``thread_safe``."""

    name: str = ""
    #: What actually runs the model, e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"] or ["TensorRT 10.3"].
    providers: list[str]
    #: False when ``infer`` touches shared state (buffers, an execution context): the caller serialises calls.
    thread_safe: bool = True

    @classmethod
    @abstractmethod
    def open(cls, path: Path, artifact: dict[str, Any], *, providers: list[str] | None = None,
             threads: int | None = None, allow_fallback: bool = False, **options: Any) -> "Backend":
        """Load the artifact at ``path`` described by its manifest entry ``artifact``."""

    @abstractmethod
    def output_sizes(self) -> dict[str, int | None]:
        """Number of classes of each head's output as the model declares it (None if dynamic)."""

    @abstractmethod
    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        """Run a float32 NHWC batch; return {head: (N, classes)} and, if asked, {"feature_map": NHWC}."""

    def close(self) -> None:
        """Release sessions and device memory. Safe to call twice."""


# name -> "module:Class"; the module is imported only when the backend is requested.
_REGISTRY = {
    "onnxruntime": "fashion.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "fashion.runtime.backends.tensorrt_backend:TensorRTBackend",
}

#: Which backend runs an artifact of a given manifest "format".
BACKEND_FOR_FORMAT = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}


def register_backend(name: str, target: str) -> None:
    """Make ``name`` resolve to ``"module:Class"`` (for out-of-tree backends)."""
    _REGISTRY[name] = target


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str) -> type[Backend]:
    """The backend class for ``name``; BackendUnavailableError when its packages are missing."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(available_backends())})")
    module_name, class_name = _REGISTRY[name].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)
