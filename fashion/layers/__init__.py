"""The project's own Keras layers, and the one way to load a saved Keras model that may use them.

Sits beside ``fashion.data`` and ``fashion.metrics`` (it imports only the runtime), so training,
export and the Keras backend all load models through :func:`load_keras_model` without importing
each other. Importing this package registers the layers with Keras's serialisation.
"""

from __future__ import annotations

from pathlib import Path

from .colour import ColourStatistics
from .mirror import BatchHalf, MirrorBatch

__all__ = ["BatchHalf", "ColourStatistics", "MirrorBatch", "load_keras_model"]


def load_keras_model(path: str | Path):
    """Load a ``.keras`` file in safe mode (no Lambda code), with the project's layers registered."""
    import keras

    return keras.saving.load_model(Path(path), compile=False, safe_mode=True)
