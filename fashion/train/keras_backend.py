"""Keras as a runtime backend: run a bundle's model.keras through ``fashion.runtime.backends``.

Registered through the ``fashion.backends`` entry point (``keras = fashion.train.keras_backend:KerasBackend``),
so the runtime finds it without importing TensorFlow or Keras itself. Used where the reference
model must run behind the same seam as the exported artifacts (export's parity gates, the bench's
agreement columns, tests).

``infer`` goes through the model's compiled predict step (``predict_on_batch``): one trace per
batch shape, not one per call as ``model.predict`` on a fresh dataset, and not op by op as an
eager call on JAX.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fashion import HEADS
from fashion.runtime.backends.base import FEATURE_MAP, Backend
from fashion.runtime.errors import BackendUnavailableError, BundleError
from fashion.runtime.manifest import ArtifactEntry

MODEL_FILE = "model.keras"
FEATURE_LAYER = "top_activation"


def _import_keras():
    try:
        import keras
    except ImportError as exc:
        raise BackendUnavailableError(
            "the keras backend needs Keras 3 and a Keras backend (pip install 'fashion-edge[train]')"
        ) from exc
    return keras


def set_threads(threads: int | None) -> list[str]:
    """Best-effort CPU thread count for whichever Keras backend runs; returns what was applied.

    TensorFlow accepts the setting only before it has run anything; JAX/XLA only through
    ``XLA_FLAGS`` before it starts. Where it is too late the model runs with the default and the
    returned list says so.
    """
    if not threads:
        return []
    keras = _import_keras()
    applied = []
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            applied.append(f"tensorflow intra-op threads {threads}")
        except RuntimeError:
            applied.append("tensorflow already initialised: default threads")
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        applied.append(f"torch threads {threads}")
    elif backend == "jax":
        import sys

        if "jax" in sys.modules and getattr(sys.modules["jax"], "_src", None) is not None and _jax_started():
            applied.append("jax already initialised: default threads")
        else:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}".strip()
            )
            applied.append(f"jax intra-op threads {threads}")
    return applied


def _jax_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)  # noqa: SLF001 - no public "is initialised" query
    except Exception:  # pragma: no cover - private API moved: assume started (the safe answer)
        return True


class KerasBackend(Backend):
    """A Keras classifier (input "image" NHWC float32; one softmax per head) behind the backend interface."""

    name = "keras"
    thread_safe = False  # Keras models are not documented as safe for concurrent calls

    def __init__(self, model: Any, path: Path | None = None, threads_applied: list[str] | None = None):
        keras = _import_keras()
        self.path = path
        self.model = model
        self.providers = [f"keras {keras.__version__} ({keras.backend.backend()})"]
        self.threads_applied = threads_applied or []
        self._with_features: Any = None
        outputs = model.output if isinstance(model.output, dict) else {}
        missing = [h for h in HEADS if h not in outputs]
        if missing:
            raise BundleError(f"{path or 'model'}: Keras model has no output for {', '.join(missing)}")

    @classmethod
    def open(
        cls,
        path: Path,
        entry: ArtifactEntry | None = None,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        allow_fallback: bool = False,
        **options: Any,
    ) -> KerasBackend:
        """``path``: a model.keras file or a bundle directory holding one (a ``keras`` ``entry`` names the file)."""
        applied = set_threads(threads)
        _import_keras()
        from fashion.layers import load_keras_model

        path = Path(path)
        if path.is_dir():
            name = entry.file if entry is not None and entry.format == "keras" else MODEL_FILE
            path = path / name
        if not path.is_file():
            raise BundleError(f"{path}: no Keras model file")
        try:
            model = load_keras_model(path)
        except (ValueError, OSError) as exc:
            raise BundleError(f"{path}: not a loadable Keras model ({exc})") from exc
        return cls(model, path, applied)

    def output_sizes(self) -> dict[str, int | None]:
        return {
            h: (int(self.model.output[h].shape[-1]) if self.model.output[h].shape[-1] is not None else None)
            for h in HEADS
        }

    def _feature_model(self):
        if self._with_features is None:
            keras = _import_keras()
            try:
                features = self.model.get_layer(FEATURE_LAYER).output
            except ValueError as exc:
                raise BundleError(f"{self.path or 'model'}: no layer {FEATURE_LAYER!r} for the feature map") from exc
            self._with_features = keras.Model(self.model.input, {**self.model.output, FEATURE_MAP: features})
        return self._with_features

    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ValueError(f"expected an NHWC batch, got shape {batch.shape}")
        model = self._feature_model() if feature_map else self.model
        outputs = model.predict_on_batch(batch)
        names = list(HEADS) + ([FEATURE_MAP] if feature_map else [])
        return {name: np.asarray(outputs[name], dtype=np.float32) for name in names}

    def close(self) -> None:
        self.model = None
        self._with_features = None
