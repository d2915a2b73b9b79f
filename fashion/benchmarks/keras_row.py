"""The Keras baseline, measured two ways.

``KerasCallRunner`` is the fastest honest Keras path: the model called with ``training=False``
inside one ``tf.function`` traced once for a dynamic batch dimension (no XLA, so it is the graph
TensorFlow itself would run). ``KerasPredictRunner`` is what most code does, ``model.predict``,
whose per-call overhead dominates small batches.

TensorFlow is imported inside :func:`open_keras_runner`, so a worker process's cold start
includes it, and so threads are fixed before TensorFlow's runtime starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TF_INSTALL_HINT = "TensorFlow not installed — pip install fashion-edge[train]"


def configure_tensorflow(threads: int | None, inter_op_threads: int = 1) -> dict:
    """Fix TensorFlow's thread pools (must run before the first op); return what TF reports."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter_op_threads))
    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "devices": [d.device_type for d in tf.config.list_logical_devices()],
    }


def _as_numpy(outputs, heads: list[str]) -> dict[str, np.ndarray]:
    return {head: np.asarray(outputs[head], dtype=np.float32) for head in heads}


class KerasCallRunner:
    """``model(x, training=False)`` compiled once by ``tf.function`` (jit_compile=False)."""

    mode = "compiled call"
    info: dict = {}

    def __init__(self, model, heads: list[str]):
        import tensorflow as tf

        self.model = model
        self.heads = list(heads)
        height, width, channels = model.input_shape[1:]
        signature = [tf.TensorSpec([None, height, width, channels], tf.float32)]
        self._call = tf.function(lambda x: model(x, training=False), input_signature=signature, jit_compile=False)
        self._tf = tf

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._call(self._tf.convert_to_tensor(batch, dtype=self._tf.float32))
        return {head: outputs[head].numpy() for head in self.heads}

    def close(self) -> None:
        self._call = None


class KerasPredictRunner:
    """``model.predict(x, batch_size=len(x))``: one call per batch, as typical code does."""

    mode = "model.predict"
    info: dict = {}

    def __init__(self, model, heads: list[str]):
        self.model = model
        self.heads = list(heads)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return _as_numpy(self.model.predict(batch, batch_size=len(batch), verbose=0), self.heads)

    def close(self) -> None:
        self.model = None


def open_keras_runner(path: str | Path, heads: list[str], threads: int | None, predict: bool = False):
    """Import TensorFlow with fixed threads, load ``model.keras`` (not compiled) and wrap it."""
    try:
        thread_info = configure_tensorflow(threads)
        import keras
    except ImportError as exc:
        raise ImportError(TF_INSTALL_HINT) from exc
    model = keras.saving.load_model(str(path), compile=False)
    runner = (KerasPredictRunner if predict else KerasCallRunner)(model, heads)
    runner.info = {"backend": f"keras {keras.__version__} ({keras.backend.backend()}), {runner.mode}",
                   "providers": thread_info["devices"], "threads": thread_info["intra_op_threads"],
                   "inter_op_threads": thread_info["inter_op_threads"]}
    return runner
