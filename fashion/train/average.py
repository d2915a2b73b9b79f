"""Weight-space averaging of a fine-tuned bundle with the ImageNet weights it started from.

``alpha * fine-tuned + (1 - alpha) * ImageNet`` for every trunk variable (the heads keep their fine-tuned
values; BatchNormalization is frozen, so its statistics are the ImageNet ones in both). Fine-tuning on
Myntra thumbnails buys in-domain accuracy by moving away from the general ImageNet features; averaging
the two weight sets keeps part of that generality at a small in-domain cost (WiSE-FT). ``alpha`` is
chosen on the validation split, never on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fashion import HEADS

from .errors import TrainError


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
    out = pretrained_like(model, None, backbone)
    if len(model.weights) != len(pretrained.weights):
        raise TrainError(
            f"the bundle's model has {len(model.weights)} variables, the pretrained one {len(pretrained.weights)}"
        )
    values = []
    for tuned, start in zip(model.weights, pretrained.weights):
        a, b = np.asarray(tuned.numpy()), np.asarray(start.numpy())
        if a.shape != b.shape:
            raise TrainError(f"variable {tuned.path}: shape {a.shape} vs ImageNet {b.shape}")
        head = tuned.path.split("/")[0] in HEADS and not heads_too
        values.append(a if head else (alpha * a + (1.0 - alpha) * b).astype(a.dtype))
    out.set_weights(values)
    return out


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
