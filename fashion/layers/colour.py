"""Colour statistics of the product pixels, computed inside the model from the raw input.

The ImageNet trunk normalises colour away and sees a small image; colour names (Navy Blue vs
Blue, Charcoal vs Grey) need colour statistics of the product itself. The photos are products on
a white studio background, so a pixel is *foreground* when it is far from white. This layer turns
the raw 0-255 RGB input into a fixed-length vector:

- a joint hue x saturation x value histogram of the foreground (square-rooted, so a linear layer
  sees Hellinger-style features; 12 x 4 x 4 bins by default),
- foreground-weighted means and standard deviations of R, G, B, saturation and value,
- the mean chroma vector (saturation-weighted cos/sin of hue),
- the foreground fraction.

It has no weights and is built from ``keras.ops`` only (max/min, floor, one_hot, matmul, where),
so it is part of the exported ONNX graph and every runtime computes it the same way. An image
with no foreground at all (a white product) falls back to all its pixels.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from fashion.runtime.preprocess import PAD_VALUE

WHITE_DISTANCE = 24.0  # a pixel is foreground when its darkest channel is this far below white (0-255 scale)
FALLBACK_WEIGHT = 1e-4
BIN_OFFSET = (
    1.0 / 2048
)  # below the gap between a bin edge and any other value whole pixel values give  # weight of background pixels, so an all-white product still has a histogram


@keras.saving.register_keras_serializable(package="fashion")
class ColourStatistics(keras.layers.Layer):
    """(N, H, W, 3) raw RGB 0-255 -> (N, features) colour statistics of the foreground (see module doc)."""

    def __init__(
        self,
        hue_bins: int = 12,
        saturation_bins: int = 4,
        value_bins: int = 4,
        white_distance: float = WHITE_DISTANCE,
        pool: int = 2,
        **kwargs: Any,
    ):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if min(hue_bins, saturation_bins, value_bins, pool) < 1:
            raise ValueError("bins and pool must be at least 1")
        self.hue_bins, self.saturation_bins, self.value_bins = int(hue_bins), int(saturation_bins), int(value_bins)
        self.white_distance, self.pool = float(white_distance), int(pool)

    @property
    def size(self) -> int:
        """Length of the output vector."""
        return self.hue_bins * self.saturation_bins * self.value_bins + 10 + 2 + 1

    def call(self, images):
        ops = keras.ops
        x = ops.cast(images, "float32")
        if self.pool > 1:
            x = ops.average_pool(x, self.pool, strides=self.pool, padding="valid")
        n = ops.shape(x)[0]
        x = ops.reshape(x, (n, -1, 3)) / float(PAD_VALUE)  # (n, pixels, 3) in [0, 1]
        red, green, blue = x[:, :, 0], x[:, :, 1], x[:, :, 2]
        high = ops.max(x, axis=-1)
        low = ops.min(x, axis=-1)
        chroma = high - low
        safe = ops.maximum(chroma, 1e-6)
        hue_red = (green - blue) / safe
        hue_red = hue_red - 6.0 * ops.floor(hue_red / 6.0)  # mod 6, without a Mod op
        hue = ops.where(
            ops.equal(high, red),
            hue_red,
            ops.where(ops.equal(high, green), (blue - red) / safe + 2.0, (red - green) / safe + 4.0),
        )
        hue = ops.where(chroma > 1e-6, hue / 6.0, ops.zeros_like(hue))  # [0, 1)
        saturation = chroma / ops.maximum(high, 1e-6)
        value = high

        # Inputs are whole 0-255 values (averaged over pool x pool), so thresholds and bin edges can be hit
        # exactly; half a quantum of offset keeps every runtime's rounding on the same side of them.
        foreground = ops.cast(low < 1.0 - (self.white_distance - 0.125) / float(PAD_VALUE), "float32")
        weight = foreground + FALLBACK_WEIGHT
        total = ops.sum(weight, axis=1, keepdims=True)  # (n, 1)

        def bins(values, count):
            return ops.clip(ops.floor(values * count + BIN_OFFSET), 0, count - 1)

        def one_hot(index, count):  # a comparison with the bin numbers: cheaper than OneHot in ONNX Runtime
            return ops.cast(ops.equal(index[:, :, None], ops.arange(count, dtype="float32")), "float32")

        sv_count = self.saturation_bins * self.value_bins
        hue_hot = one_hot(bins(hue, self.hue_bins), self.hue_bins)  # (n, p, H)
        sv_index = bins(saturation, self.saturation_bins) * self.value_bins + bins(value, self.value_bins)
        sv_hot = one_hot(sv_index, sv_count) * weight[:, :, None]  # (n, p, SV)
        joint = ops.matmul(ops.transpose(hue_hot, (0, 2, 1)), sv_hot)  # (n, H, SV)
        histogram = ops.sqrt(ops.reshape(joint, (n, -1)) / total)

        channels = ops.stack([red, green, blue, saturation, value], axis=-1)  # (n, p, 5)
        w = (weight / total)[:, :, None]
        mean = ops.sum(channels * w, axis=1)
        std = ops.sqrt(ops.maximum(ops.sum(ops.square(channels) * w, axis=1) - ops.square(mean), 0.0) + 1e-8)
        angle = hue * (2.0 * math.pi)
        chroma_vector = ops.stack(
            [
                ops.sum(saturation * ops.cos(angle) * w[:, :, 0], axis=1),
                ops.sum(saturation * ops.sin(angle) * w[:, :, 0], axis=1),
            ],
            axis=-1,
        )
        fraction = ops.mean(foreground, axis=1, keepdims=True)
        return ops.concatenate([histogram, mean, std, chroma_vector, fraction], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "hue_bins": self.hue_bins,
            "saturation_bins": self.saturation_bins,
            "value_bins": self.value_bins,
            "white_distance": self.white_distance,
            "pool": self.pool,
        }
