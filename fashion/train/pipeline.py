"""tf.data input pipeline: image paths + encoded labels -> batches the six-head model trains on.

Decoding goes through the shared ``fashion.runtime.preprocess.preprocess`` (inside
``tf.numpy_function``), so training sees exactly the tensor the runtime builds from the same file:
RGB from any mode, white padding to the model's aspect ratio, bilinear resize, raw 0-255 float32 NHWC.

    paths -> parallel decode (AUTOTUNE) -> cache (uint8) -> [shuffle] -> batch -> float32
          -> [augment hook] -> prefetch

Labels are ``{head: int32}`` with -1 where a label is missing; the masked loss ignores those, so a
row still trains the heads it has.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from fashion.data.labels import encode
from fashion.runtime.preprocess import PAD_VALUE, preprocess

AUTOTUNE = tf.data.AUTOTUNE
Augment = Callable[[tf.Tensor], tf.Tensor]


def decode_fn(height: int, width: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """A tf function path -> uint8 (height, width, 3) tensor using the shared preprocessing."""

    def _numpy_decode(path: bytes) -> np.ndarray:
        return preprocess(path.decode("utf-8"), height, width)

    def decode(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(_numpy_decode, [path], tf.uint8, stateful=False)
        image.set_shape((height, width, 3))
        return image

    return decode


def label_preserving_augment(seed: int | None = None, flip: bool = True, max_shift: float = 0.08,
                             max_zoom: float = 0.1, max_brightness: float = 12.0,
                             max_contrast: float = 0.1) -> Augment:
    """Augmentation that keeps every label true, for a float32 NHWC 0-255 batch.

    Horizontal flip (garments mean the same mirrored), small shift and zoom with the white studio
    background as fill, mild brightness and contrast. Deliberately no hue or saturation change
    (baseColour is a label) and no vertical flip or rotation (orientation separates some classes).
    """
    generator = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.Generator.from_non_deterministic_state()

    def augment(images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        n = shape[0]
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        if flip:
            mirrored = generator.uniform((n, 1, 1, 1)) < 0.5
            images = tf.where(mirrored, tf.reverse(images, axis=[2]), images)
        if max_shift or max_zoom:
            # Output pixel (x, y) samples input (x / zoom + offset): zoom > 1 crops in, < 1 shows more white.
            zoom = generator.uniform((n,), 1.0 - max_zoom, 1.0 + max_zoom)
            shift_x = generator.uniform((n,), -max_shift, max_shift) * width
            shift_y = generator.uniform((n,), -max_shift, max_shift) * height
            cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
            zeros = tf.zeros((n,))
            transforms = tf.stack([1.0 / zoom, zeros, cx - cx / zoom + shift_x,
                                   zeros, 1.0 / zoom, cy - cy / zoom + shift_y, zeros, zeros], axis=1)
            images = tf.raw_ops.ImageProjectiveTransformV3(
                images=images, transforms=transforms, output_shape=shape[1:3],
                fill_value=float(PAD_VALUE), interpolation="BILINEAR", fill_mode="CONSTANT")
        if max_brightness or max_contrast:
            contrast = generator.uniform((n, 1, 1, 1), 1.0 - max_contrast, 1.0 + max_contrast)
            brightness = generator.uniform((n, 1, 1, 1), -max_brightness, max_brightness)
            images = (images - 128.0) * contrast + 128.0 + brightness
        return tf.clip_by_value(images, 0.0, 255.0)

    return augment


def make_dataset(paths: Sequence[str], labels: Mapping[str, np.ndarray] | None, height: int, width: int,
                 batch_size: int = 32, shuffle: bool = False, augment: Augment | None = None,
                 cache: bool | str = True, seed: int | None = None, shuffle_buffer: int = 8192,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of (float32 NHWC images, {head: int32 labels}) or just images when ``labels`` is None.

    ``cache``: True keeps decoded uint8 images in memory (40k images at 128x96 are ~1.5 GB), a string
    caches to that file prefix, False decodes every epoch. Without ``shuffle`` the order is ``paths``.
    """
    paths = [str(p) for p in paths]
    if labels is not None:
        labels = {head: np.asarray(values, dtype=np.int32) for head, values in labels.items()}
        for head, values in labels.items():
            if len(values) != len(paths):
                raise ValueError(f"labels[{head!r}] has {len(values)} entries for {len(paths)} paths")
    decode = decode_fn(height, width)

    if labels is None:
        dataset = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=AUTOTUNE)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            lambda path, label: (decode(path), label), num_parallel_calls=AUTOTUNE)
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        dataset = dataset.shuffle(min(shuffle_buffer, max(len(paths), 1)), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    augment = augment or (lambda images: images)
    if labels is None:
        dataset = dataset.map(lambda images: augment(tf.cast(images, tf.float32)), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda images, label: (augment(tf.cast(images, tf.float32)), label),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def dataset_from_frame(frame: pd.DataFrame, vocabularies: Mapping[str, list[str]], height: int, width: int,
                       training: bool = False, seed: int | None = None, **kwargs) -> tf.data.Dataset:
    """The pipeline for a loaded dataset frame (``path`` + head columns); training adds shuffle and augmentation."""
    labels = encode(frame, dict(vocabularies))
    if training:
        kwargs.setdefault("shuffle", True)
        kwargs.setdefault("augment", label_preserving_augment(seed=seed))
    return make_dataset(list(frame["path"]), labels, height, width, seed=seed, **kwargs)
