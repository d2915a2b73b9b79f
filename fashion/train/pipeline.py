"""The one input pipeline and the one augmentation definition of training (any Keras backend).

    decoded uint8 NHWC arrays (host) -> fixed-size batches (uint8, padded) -> device:
        cast to float32 -> [label-preserving augmentation, training only] -> classifier

Batches stay uint8 on the host (4x less to copy than float32) and every batch has the same shape:
the last one is padded with blank images whose labels are -1, which the masked loss and
``MaskedAccuracy`` ignore. One shape per size means XLA compiles the train, validation and
prediction steps once each. Augmentation runs inside the compiled step (``LabelPreservingAugment``
is a Keras layer built from ``keras.ops`` and ``keras.random``), so on a GPU the host only slices
arrays and never limits throughput.

Augmentations keep every label true: horizontal flip (garments mean the same mirrored), small
shift and zoom (in and out, with aspect jitter) with the white studio background as fill, a random
blur (sharpness varies: 60x80 thumbnails are blurry after upscaling, shop photos are sharp, and the
training set holds both), mild brightness and contrast. Deliberately no hue or saturation change
(baseColour is a label) and no vertical flip or rotation (orientation separates some classes).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from fashion import HEADS
from fashion.data.paths import MISSING
from fashion.runtime.preprocess import PAD_VALUE


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges of the label-preserving augmentation (the only definition in the project)."""

    flip: bool = True
    max_shift: float = 0.08  # fraction of height/width, each direction
    max_zoom: float = 0.1  # zoom factor drawn from [1 - max_zoom, 1 + max_zoom]
    max_brightness: float = 12.0  # added to 0-255 pixel values
    max_contrast: float = 0.1  # contrast factor drawn from [1 - max_contrast, 1 + max_contrast]
    max_aspect: float = 0.0  # height/width zoom ratio drawn from [1 - max_aspect, 1 + max_aspect]
    blur_probability: float = 0.0  # share of images blurred (Gaussian, sigma in pixels at the input size)
    max_blur_sigma: float = 1.2

    @classmethod
    def off(cls) -> AugmentSpec:
        return cls(flip=False, max_shift=0.0, max_zoom=0.0, max_brightness=0.0, max_contrast=0.0)

    @classmethod
    def robust(cls) -> AugmentSpec:
        """The default augmentation plus aspect jitter, a wider zoom and random blur (sharp and blurry photos)."""
        return cls(max_zoom=0.15, max_aspect=0.1, blur_probability=0.5, max_blur_sigma=1.2)


@keras.saving.register_keras_serializable(package="fashion")
class LabelPreservingAugment(keras.layers.Layer):
    """uint8 (or float) NHWC 0-255 -> float32; augments only when ``training`` is true.

    Runs in float32 whatever the global dtype policy, so the augmentation is identical under
    mixed precision.
    """

    def __init__(self, spec: AugmentSpec | dict | None = None, seed: int | None = None, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.spec = spec if isinstance(spec, AugmentSpec) else AugmentSpec(**(spec or {}))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        ops = keras.ops
        images = ops.cast(images, "float32")
        if not training:
            return images
        spec, seed = self.spec, self.seed_generator
        shape = ops.shape(images)
        n = shape[0]
        if spec.flip:
            mirrored = keras.random.uniform((n, 1, 1, 1), seed=seed) < 0.5
            images = ops.where(mirrored, ops.flip(images, axis=2), images)
        if spec.max_shift or spec.max_zoom or spec.max_aspect or spec.blur_probability:
            height, width = int(images.shape[1]), int(images.shape[2])
            zoom = keras.random.uniform((n,), 1.0 - spec.max_zoom, 1.0 + spec.max_zoom, seed=seed)
            aspect = keras.random.uniform((n,), 1.0 - spec.max_aspect, 1.0 + spec.max_aspect, seed=seed)
            shift_y = keras.random.uniform((n,), -spec.max_shift, spec.max_shift, seed=seed) * height
            shift_x = keras.random.uniform((n,), -spec.max_shift, spec.max_shift, seed=seed) * width
            rows = _resampling(height, zoom * ops.sqrt(aspect), shift_y)  # (n, height, height)
            cols = _resampling(width, zoom / ops.sqrt(aspect), shift_x)  # (n, width, width)
            if spec.blur_probability:
                blurred = keras.random.uniform((n,), seed=seed) < spec.blur_probability
                sigma = keras.random.uniform((n,), 0.3, max(spec.max_blur_sigma, 0.3), seed=seed)
                sigma = ops.where(blurred, sigma, ops.zeros_like(sigma))
                rows = ops.einsum("nij,njk->nik", _gaussian(height, sigma), rows)
                cols = ops.einsum("nij,njk->nik", _gaussian(width, sigma), cols)
            # Separable bilinear resampling as two batched matmuls (fast on any device, unlike a gather);
            # working on (image - white) makes every pixel that samples outside the photo white.
            shifted = images - float(PAD_VALUE)
            shifted = ops.einsum("nyj,njxc->nyxc", rows, shifted)
            images = ops.einsum("nxk,nykc->nyxc", cols, shifted) + float(PAD_VALUE)
        if spec.max_brightness or spec.max_contrast:
            contrast = keras.random.uniform((n, 1, 1, 1), 1.0 - spec.max_contrast, 1.0 + spec.max_contrast, seed=seed)
            brightness = keras.random.uniform((n, 1, 1, 1), -spec.max_brightness, spec.max_brightness, seed=seed)
            images = (images - 128.0) * contrast + 128.0 + brightness
        return ops.clip(images, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "spec": asdict(self.spec), "seed": self.seed}


def _resampling(size: int, zoom, shift):
    """Bilinear sampling matrices (n, size, size): output pixel i reads input (i - c) / zoom + c + shift.

    The weight of input pixel j is max(0, 1 - |source - j|) (the bilinear tent), so sources outside the
    image get no weight from it: zoom > 1 crops in, zoom < 1 shows more background.
    """
    ops = keras.ops
    centre = (size - 1) / 2.0
    index = ops.arange(size, dtype="float32")
    source = (index[None, :] - centre) / zoom[:, None] + centre + shift[:, None]  # (n, size)
    return ops.relu(1.0 - ops.abs(source[:, :, None] - index[None, None, :]))


def _gaussian(size: int, sigma):
    """Row-normalised Gaussian blur matrices (n, size, size); sigma 0 gives the identity.

    Weights outside the image are dropped and each row renormalised, so the border keeps its colour.
    """
    ops = keras.ops
    index = ops.arange(size, dtype="float32")
    distance = index[None, :, None] - index[None, None, :]  # (1, size, size)
    safe = ops.maximum(sigma, 1e-3)[:, None, None]
    weights = ops.exp(-0.5 * ops.square(distance / safe))
    weights = weights / ops.sum(weights, axis=2, keepdims=True)
    return weights


def training_model(model: keras.Model, spec: AugmentSpec | None = None, seed: int | None = None) -> keras.Model:
    """``model`` behind a uint8 input and the augmentation layer; shares ``model``'s weights.

    The same wrapper object trains, validates and predicts (augmentation is off outside training),
    so each of its steps is compiled once per input shape.
    """
    height, width, channels = (int(d) for d in model.input_shape[1:])
    inputs = keras.Input((height, width, channels), dtype="uint8", name="image_uint8")
    x = LabelPreservingAugment(spec or AugmentSpec(), seed=seed, name="augment")(inputs)
    return keras.Model(inputs, model(x), name="train_wrapper")


class ArrayBatches(keras.utils.PyDataset):
    """Fixed-size (uint8 images, {head: int32 labels}) batches; the last batch is padded with label -1.

    ``shuffle`` draws a new order every epoch from ``seed`` (deterministic, so a resumed run sees the
    same sequence). Padding instead of a short last batch keeps one shape per size (one compilation).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: dict[str, np.ndarray],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if len(images) == 0:
            raise ValueError("no images to batch")
        self.images, self.labels, self.batch_size, self.shuffle = images, labels, batch_size, shuffle
        self.seed, self.epoch = seed, 0
        self.order = self._order()
        self.fetch_seconds = 0.0  # time the training loop spent waiting for batches (read by the step timer)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        began = time.perf_counter()
        idx = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        batch = pad_batch(self.images[idx], {h: v[idx] for h, v in self.labels.items()}, self.batch_size)
        self.fetch_seconds += time.perf_counter() - began
        return batch

    def set_epoch(self, epoch: int) -> None:
        """Reorder for ``epoch`` (called by the recipe at each epoch start, also when resuming)."""
        self.epoch = epoch
        self.order = self._order()

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)


def pad_batch(images: np.ndarray, labels: dict[str, np.ndarray] | None, size: int):
    """Pad ``images`` (and ``labels`` with -1) up to ``size`` rows."""
    missing = size - len(images)
    if missing > 0:
        images = np.concatenate([images, np.full((missing,) + images.shape[1:], PAD_VALUE, images.dtype)])
        if labels is not None:
            labels = {h: np.concatenate([v, np.full(missing, MISSING, v.dtype)]) for h, v in labels.items()}
    return images if labels is None else (images, labels)


def predict_padded(model: keras.Model, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Softmax outputs per head through the model's compiled predict step, one batch shape throughout."""
    outputs: dict[str, list[np.ndarray]] = {head: [] for head in HEADS}
    as_uint8 = str(model.inputs[0].dtype) == "uint8"  # the training wrapper takes uint8; a bundle model float32
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = pad_batch(chunk, None, batch_size)
        batch = model.predict_on_batch(batch if as_uint8 else batch.astype(np.float32))
        for head in HEADS:
            outputs[head].append(np.asarray(batch[head], dtype=np.float32)[: len(chunk)])
    return {head: np.concatenate(chunks) for head, chunks in outputs.items()}
