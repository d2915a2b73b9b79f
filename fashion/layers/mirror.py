"""Test-time horizontal flip inside the graph: the photo and its mirror as one batch of 2N, then the mean.

``MirrorBatch``: NHWC images (N, H, W, C) -> (2N, H, W, C), the N photos then their mirrors (width reversed).
``BatchHalf``: (2N, ...) -> (N, ...), the photos' half or the mirrors' half (the caller averages the two). Both
are plain ``keras.ops``, so they export to ONNX (Concat, Reverse/Slice) and every runtime computes them alike.
A member of an ensemble can run this way (``fashion-train ensemble --flip``): on a CPU a batch of 2 costs less
than two calls of 1.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="fashion")
class MirrorBatch(keras.layers.Layer):
    def call(self, images):
        return keras.ops.concatenate([images, keras.ops.flip(images, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else 2 * input_shape[0]
        return (batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="fashion")
class BatchHalf(keras.layers.Layer):
    """One half of a (2N, ...) batch made by :class:`MirrorBatch`: ``part`` 0 = the photos, 1 = their mirrors."""

    def __init__(self, part: int = 0, **kwargs):
        super().__init__(**kwargs)
        if part not in (0, 1):
            raise ValueError(f"part must be 0 or 1, not {part!r}")
        self.part = part

    def call(self, batch):
        n = keras.ops.shape(batch)[0] // 2
        return batch[:n] if self.part == 0 else batch[n:]

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // 2
        return (batch, *input_shape[1:])

    def get_config(self) -> dict:
        return {**super().get_config(), "part": self.part}
