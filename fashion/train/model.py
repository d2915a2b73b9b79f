"""The six-head EfficientNetB0 classifier (backend-agnostic Keras 3: TensorFlow, JAX or torch).

Input ``image``: raw RGB 0-255 float32, NHWC. The trunk's own Rescaling/Normalization layers
scale it. Outputs: one softmax per head, named by head. BatchNormalization stays frozen in
inference mode: the ImageNet weights have batch-norm folded into the convolutions.
"""

from __future__ import annotations

import keras

from fashion import HEADS
from fashion.data.paths import WEIGHTS_ENV
from fashion.data.paths import WEIGHTS_FILE as NOTOP_FILE

FEATURE_LAYER = "top_activation"  # last conv feature map, used for class-activation maps
POOL_LAYER = "avg_pool"


def build_model(
    num_classes: dict[str, int],
    height: int,
    width: int,
    weights: str | None = None,
    dropout: float = 0.2,
    heads=HEADS,
    backbone: str = "efficientnetb0",
) -> keras.Model:
    """Build the classifier. ``weights``: a notop .weights.h5 path, "imagenet" (download) or None.

    ``backbone="tiny"`` is a few-layer stand-in with the same input, layer names and outputs,
    for fast tests of training, export and runtime code.
    """
    inputs = keras.Input((height, width, 3), name="image")
    if backbone == "tiny":
        trunk = _tiny_trunk(inputs)
        weights = None
    else:
        trunk = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=inputs, pooling="avg")
    if weights == "imagenet":
        reference = _imagenet_trunk(height, width)
        trunk.set_weights(reference.get_weights())
    elif weights:
        trunk.load_weights(weights)
    freeze_batchnorm(trunk)
    features = trunk.output
    x = keras.layers.Dropout(dropout, name="head_dropout")(features)
    outputs = {
        head: keras.layers.Dense(num_classes[head], activation="softmax", name=head, dtype="float32")(x)
        for head in heads
    }
    return keras.Model(inputs, outputs, name="fashion_efficientnetb0")


def _tiny_trunk(inputs) -> keras.Model:
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("swish", name="stem_activation")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="top_conv")(x)
    x = keras.layers.Activation("swish", name=FEATURE_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    return keras.Model(inputs, x, name="tiny_trunk")


def _imagenet_trunk(height: int, width: int) -> keras.Model:
    try:
        return keras.applications.EfficientNetB0(
            include_top=False, weights="imagenet", input_shape=(height, width, 3), pooling="avg"
        )
    except Exception as exc:  # offline: the download is the only thing that can fail here
        raise RuntimeError(
            "Could not download ImageNet EfficientNetB0 weights. Pass --weights PATH to an "
            f"'{NOTOP_FILE}' file or set ${WEIGHTS_ENV} (see README: 'Getting the weights'). ({exc})"
        ) from exc


def finalize_states(model: keras.Model) -> None:
    """Recompute state derived from variables after they were assigned directly (``set_weights``/``assign``).

    ``Normalization`` keeps its mean and variance as tensors computed from its variables when weights are
    *loaded*; assigning the variables leaves those tensors stale (the ImageNet statistics silently replaced by
    0 and 1). Every weight transplant calls this.
    """
    for layer in model._flatten_layers():
        if layer.built and hasattr(layer, "finalize_state"):
            layer.finalize_state()


def freeze_batchnorm(model: keras.Model) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def set_trainable_from(model: keras.Model, first_layer: str | None) -> None:
    """Train every layer from ``first_layer`` on (None: heads only); BatchNormalization stays frozen."""
    trainable = first_layer is None
    names = [layer.name for layer in model.layers]
    if first_layer is not None and first_layer not in names:
        raise ValueError(f"no layer named {first_layer!r}")
    head_layers = set(HEADS) | {"head_dropout"}
    for layer in model.layers:
        if layer.name == first_layer:
            trainable = True
        layer.trainable = (trainable or layer.name in head_layers) and not isinstance(
            layer, keras.layers.BatchNormalization
        )


def masked_sparse_crossentropy(label_smoothing: float = 0.0, num_classes: int | None = None):
    """Sparse cross-entropy that ignores label -1 (missing) and can smooth labels."""
    ops = keras.ops

    def loss(y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        mask = ops.cast(ops.greater_equal(y_true, 0), y_pred.dtype)
        safe = ops.maximum(y_true, 0)
        n = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(safe, n, dtype=y_pred.dtype)
        if label_smoothing:
            one_hot = one_hot * (1.0 - label_smoothing) + label_smoothing / ops.cast(n, y_pred.dtype)
        log_p = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        per_example = -ops.sum(one_hot * log_p, axis=-1) * mask
        return ops.sum(per_example) / ops.maximum(ops.sum(mask), 1.0)

    loss.__name__ = "masked_sparse_crossentropy"
    return loss


class MaskedAccuracy(keras.metrics.Metric):
    """Accuracy over examples whose label is present (>= 0)."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        mask = ops.cast(ops.greater_equal(y_true, 0), "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32") * mask
        self.correct.assign(self.correct + ops.sum(hit))
        self.total.assign(self.total + ops.sum(mask))

    def result(self):
        return self.correct / keras.ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


def compile_model(
    model: keras.Model,
    learning_rate=1e-3,
    label_smoothing: float = 0.0,
    loss_weights: dict[str, float] | None = None,
    heads=HEADS,
) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={h: masked_sparse_crossentropy(label_smoothing) for h in heads},
        loss_weights=loss_weights or {h: 1.0 for h in heads},
        metrics={h: [MaskedAccuracy(name="acc")] for h in heads},
    )
