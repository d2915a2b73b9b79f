"""The one narrow interface every inference backend implements, and the registry that finds them.

A backend runs one exported artifact: float32 NHWC batch in, {head: probabilities} out (plus
"feature_map" when asked). It knows nothing about images, labels or bundles beyond the typed manifest
entry of its artifact (``ArtifactEntry``). Heavy imports (onnxruntime, tensorrt, cuda) stay inside the backend module
so importing ``fashion.runtime`` costs nothing until a backend is opened.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, UnknownBackendError
from ..manifest import ArtifactEntry

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
    def open(
        cls,
        path: Path,
        entry: ArtifactEntry,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        allow_fallback: bool = False,
        **options: Any,
    ) -> Backend:
        """Load the artifact at ``path`` described by its typed manifest entry ``entry`` (its outputs, feature map
        and recorded build facts); a file not yet in the manifest (a staged export) gets an entry built for it."""

    @abstractmethod
    def output_sizes(self) -> dict[str, int | None]:
        """Number of classes of each head's output as the model declares it (None if dynamic)."""

    @abstractmethod
    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        """Run a float32 NHWC batch; return {head: (N, classes)} and, if asked, {"feature_map": NHWC}."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to release
        """Release sessions and device memory. Safe to call twice."""


#: Backends shipped with the runtime: name -> "module:Class", imported only when requested.
BUILTIN_BACKENDS = {
    "onnxruntime": "fashion.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "fashion.runtime.backends.tensorrt_backend:TensorRTBackend",
}

#: Entry-point group through which installed packages add backends (e.g. ``keras`` from fashion.train),
#: so the runtime runs them without importing their packages until asked.
ENTRY_POINT_GROUP = "fashion.backends"

#: Which backend runs an artifact of a given manifest "format".
BACKEND_FOR_FORMAT = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "keras": "keras"}

#: The extra that provides a backend's packages, named in the message when they are missing.
EXTRA_FOR_BACKEND = {"keras": "train", "tensorrt": "gpu"}

_registered: dict[str, str] = {}
_discovered: dict[str, str] | None = None


def register_backend(name: str, target: str) -> None:
    """Make ``name`` resolve to ``"module:Class"`` (takes precedence over built-ins and entry points)."""
    if ":" not in target:
        raise ValueError(f"backend target must look like 'package.module:Class', got {target!r}")
    _registered[name] = target


def _entry_points() -> dict[str, str]:
    """Backends advertised by installed distributions (read once; nothing is imported here)."""
    global _discovered
    if _discovered is None:
        _discovered = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return _discovered


def refresh_backends() -> None:
    """Forget the discovered entry points (after installing a plugin into a running process)."""
    global _discovered
    _discovered = None


def _targets() -> dict[str, str]:
    return {**_entry_points(), **BUILTIN_BACKENDS, **_registered}


def available_backends() -> list[str]:
    """Every backend name known here (built-in, registered or installed); none of them is imported."""
    return sorted(_targets())


def get_backend(name: str) -> type[Backend]:
    """The backend class for ``name``.

    UnknownBackendError when nothing provides ``name``; BackendUnavailableError (naming the extra to
    install) when its packages are missing.
    """
    targets = _targets()
    if name not in targets:
        raise UnknownBackendError(f"unknown backend {name!r} (choose from {', '.join(sorted(targets))})")
    module_name, _, attribute = targets[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if isinstance(exc, BackendUnavailableError):
            raise
        extra = EXTRA_FOR_BACKEND.get(name)
        hint = f"pip install 'fashion-edge[{extra}]'" if extra else "install the package that provides it"
        raise BackendUnavailableError(f"backend {name!r} is not available here ({exc}); {hint}") from exc
    backend: Any = module
    for part in attribute.split("."):
        backend = getattr(backend, part, None)
        if backend is None:
            raise UnknownBackendError(f"backend {name!r}: {targets[name]} does not exist")
    if not (isinstance(backend, type) and issubclass(backend, Backend)):
        raise UnknownBackendError(f"backend {name!r}: {targets[name]} is not a Backend subclass")
    return backend
