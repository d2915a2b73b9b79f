"""Weight-space averaging of a fine-tuned bundle with the ImageNet weights it started from.

``alpha * fine-tuned + (1 - alpha) * ImageNet`` for every trunk variable (the heads keep their fine-tuned
values; BatchNormalization is frozen, so its statistics are the ImageNet ones in both). Fine-tuning on
Myntra thumbnails buys in-domain accuracy by moving away from the general ImageNet features; averaging
the two weight sets keeps part of that generality at a small in-domain cost (WiSE-FT). ``alpha`` is
chosen on the validation split, never on test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from fashion import HEADS

from .errors import TrainError
from .model import finalize_states


def pretrained_like(model, weights: str | None, backbone: str = "efficientnetb0"):
    """The architecture of ``model`` with the ImageNet trunk weights (heads freshly initialised, unused)."""
    from .model import build_model

    height, width = (int(d) for d in model.input_shape[1:3])
    num_classes = {head: int(model.get_layer(head).units) for head in HEADS}
    return build_model(num_classes, height, width, weights=weights, backbone=backbone)


def averaged_model(model, pretrained, alpha: float, backbone: str = "efficientnetb0", heads_too: bool = False):
    """A new model: trunk variables ``alpha * model + (1 - alpha) * pretrained``, heads as in ``model``.

    ``heads_too``: average the heads as well (when ``pretrained`` is another fine-tuned model of the same
    lineage, e.g. the bundle a run started from: a two-model soup).
    """
    if not 0.0 <= alpha <= 1.0:
        raise TrainError(f"alpha must be within [0, 1], not {alpha}")
    import keras

    # The output keeps ``model``'s variable order (a clone); the partner's variables are matched by path with
    # Keras's layer-name counters dropped ("normalization_1" and "normalization" are the same layer built in
    # another process), never by position: a loaded and a freshly built model may list variables differently.
    start = _by_key(pretrained)
    _by_key(model)  # the keys must be unique on both sides
    out = keras.models.clone_model(model)
    for target, tuned in zip(out.weights, model.weights):
        key = _key(tuned.path)
        if key not in start:
            raise TrainError(f"variable {tuned.path!r} has no counterpart in the other model; same architecture?")
        a, b = np.asarray(tuned.numpy()), np.asarray(start[key].numpy())
        if a.shape != b.shape:
            raise TrainError(f"variable {tuned.path}: shape {a.shape} vs {b.shape}")
        head = key.split("/")[0] in HEADS and not heads_too
        target.assign(a if head else (alpha * a + (1.0 - alpha) * b).astype(a.dtype))
    finalize_states(out)
    return out


def _key(path: str) -> str:
    layer, _, rest = path.partition("/")
    return f"{re.sub(r'_[0-9]+$', '', layer)}/{rest}"


def _by_key(model) -> dict[str, Any]:
    keyed = {_key(v.path): v for v in model.weights}
    if len(keyed) != len(model.weights):
        raise TrainError(f"{model.name}: variable paths are not unique once layer counters are dropped")
    return keyed


def scan_alphas(
    model,
    pretrained,
    alphas: Sequence[float],
    images: np.ndarray,
    labels: dict[str, np.ndarray],
    log=print,
    backbone: str = "efficientnetb0",
    heads_too: bool = False,
) -> list[dict[str, Any]]:
    """Validation accuracy per head (and the six-head mean) for each ``alpha``."""
    from .finetune import accuracy_per_head
    from .pipeline import predict_padded

    rows = []
    for alpha in alphas:
        candidate = averaged_model(model, pretrained, alpha, backbone, heads_too) if alpha < 1.0 else model
        accuracy = accuracy_per_head(predict_padded(candidate, images, 128), labels)
        mean = float(np.mean([accuracy[h] for h in HEADS]))
        rows.append({"alpha": alpha, "val_accuracy": accuracy, "mean": mean})
        log(f"alpha {alpha:.2f}: mean {mean:.4f} " + " ".join(f"{h[:6]} {accuracy[h]:.4f}" for h in HEADS))
    return rows


__all__ = ["averaged_model", "pretrained_like", "scan_alphas"]
