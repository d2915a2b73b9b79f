"""Pieces both recipes share: the cosine schedule, selection on mean validation accuracy, checkpoints, logs.

Input batches and augmentation live in ``pipeline.py`` (the one definition).
"""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np

from fashion import HEADS
from fashion.metrics.accuracy import head_scores


def cosine_schedule(base_lr: float, total_steps: int, warmup_steps: int = 0):
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=base_lr if not warmup_steps else base_lr * 0.1,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.02,
        warmup_target=base_lr if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


class MeanValAccuracy(keras.callbacks.Callback):
    """Adds ``val_mean_acc`` (mean of the heads' validation accuracies) to the epoch logs.

    Selecting on it rather than on the label-smoothed validation loss keeps the epoch with the best
    accuracies: smoothed loss rises as the model grows confident even while accuracy improves.
    """

    def on_epoch_end(self, epoch, logs=None):
        accuracies = [v for k, v in (logs or {}).items() if k.startswith("val_") and k.endswith("_acc")]
        if accuracies:
            logs["val_mean_acc"] = float(np.mean(accuracies))


def standard_callbacks(out_dir: Path, monitor: str = "val_mean_acc", patience: int = 4):
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = "max" if "acc" in monitor else "min"
    callbacks = [
        MeanValAccuracy(),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(
            str(out_dir / "best.weights.h5"), monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.ModelCheckpoint(str(out_dir / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=True),
    ]
    return callbacks


def accuracy_per_head(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Top-1 accuracy per head over labelled examples (None for a head without labels)."""
    return {head: head_scores(labels[head], p.argmax(axis=1)[:, None])["accuracy"] for head, p in probs.items()}


def read_log(log_csv: str | Path) -> list[dict[str, float]]:
    """The CSVLogger rows (one per epoch) as numbers; empty when the log does not exist yet."""
    path = Path(log_csv)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return float("nan")
    return int(value) if value.is_integer() and abs(value) < 1e15 else round(value, 6)


def plot_training_curves(log_csv: str | Path, png: str | Path) -> None:
    """Loss and per-head accuracy (train dashed, validation solid) per epoch from a CSVLogger file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    log = pd.read_csv(log_csv)
    epochs = log["epoch"] + 1
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot(epochs, log["loss"], "--", label="train")
    loss_ax.plot(epochs, log["val_loss"], label="val")
    loss_ax.set(title="total loss", xlabel="epoch")
    loss_ax.legend()
    for i, head in enumerate(HEADS):
        color = f"C{i}"
        if f"{head}_acc" in log:
            acc_ax.plot(epochs, log[f"{head}_acc"], "--", color=color, alpha=0.5)
        if f"val_{head}_acc" in log:
            acc_ax.plot(epochs, log[f"val_{head}_acc"], color=color, label=head)
    acc_ax.set(title="accuracy (val solid, train dashed)", xlabel="epoch")
    acc_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
