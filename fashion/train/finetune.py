"""Full fine-tuning from in-memory arrays (any Keras backend; the GPU recipe).

Augmentations keep every label true: horizontal flip (garments are left-right symmetric in
meaning), small shifts and zooms padded with the white studio background, mild brightness and
contrast. No hue or saturation change: baseColour is a label.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from fashion import HEADS
from fashion.metrics.accuracy import head_scores


def augment_batch(images: np.ndarray, rng: np.random.Generator, max_shift: float = 0.08,
                  max_zoom: float = 0.12) -> np.ndarray:
    """Label-preserving augmentation of a uint8 NHWC batch; returns float32."""
    n, h, w, _ = images.shape
    out = np.full(images.shape, 255.0, dtype=np.float32)
    flips = rng.random(n) < 0.5
    for i in range(n):
        image = images[i, :, ::-1] if flips[i] else images[i]
        zoom = 1.0 + rng.uniform(0.0, max_zoom)  # zoom in: crop the centre, nearest-neighbour upsample
        rows = ((np.arange(h) - h / 2) / zoom + h / 2).astype(int).clip(0, h - 1)
        cols = ((np.arange(w) - w / 2) / zoom + w / 2).astype(int).clip(0, w - 1)
        image = image[rows][:, cols]
        dy = int(rng.integers(-int(h * max_shift), int(h * max_shift) + 1))
        dx = int(rng.integers(-int(w * max_shift), int(w * max_shift) + 1))
        ys, yd = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy)))
        xs, xd = (slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx)))
        out[i, yd, xd] = image[ys, xs]
    brightness = rng.uniform(-12, 12, size=(n, 1, 1, 1)).astype(np.float32)
    contrast = rng.uniform(0.9, 1.1, size=(n, 1, 1, 1)).astype(np.float32)
    out = (out - 128.0) * contrast + 128.0 + brightness
    return np.clip(out, 0, 255)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (float32 images, {head: int labels}) from uint8 arrays, reshuffled every epoch."""

    def __init__(self, images: np.ndarray, labels: dict[str, np.ndarray], batch_size: int,
                 augment: bool = False, shuffle: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.augment, self.shuffle = augment, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        batch = self.images[idx]
        x = augment_batch(batch, np.random.default_rng(self.rng.integers(1 << 31))) if self.augment \
            else batch.astype(np.float32)
        return x, {head: labels[idx] for head, labels in self.labels.items()}

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


class TimeCosine(keras.callbacks.Callback):
    """Cosine learning rate over a wall-clock window, with linear warm-up; stops at the window's end.

    Used when the epoch time is unknown in advance (a borrowed GPU for a fixed number of minutes):
    the schedule always completes, however fast the machine is.
    """

    def __init__(self, base_lr: float, seconds: float, warmup_fraction: float = 0.08, floor: float = 0.02):
        super().__init__()
        self.base_lr, self.seconds, self.warmup, self.floor = base_lr, seconds, warmup_fraction, floor
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_begin(self, batch, logs=None):
        progress = min(1.0, (time.time() - self.start) / self.seconds)
        if progress < self.warmup:
            lr = self.base_lr * (0.1 + 0.9 * progress / self.warmup)
        else:
            cosine = 0.5 * (1 + math.cos(math.pi * (progress - self.warmup) / (1 - self.warmup)))
            lr = self.base_lr * (self.floor + (1 - self.floor) * cosine)
        self.model.optimizer.learning_rate = lr
        if progress >= 1.0:
            self.model.stop_training = True


def cosine_schedule(base_lr: float, total_steps: int, warmup_steps: int = 0):
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=base_lr if not warmup_steps else base_lr * 0.1,
        decay_steps=max(1, total_steps - warmup_steps), alpha=0.02,
        warmup_target=base_lr if warmup_steps else None, warmup_steps=warmup_steps)


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
        keras.callbacks.ModelCheckpoint(str(out_dir / "best.weights.h5"), monitor=monitor, mode=mode,
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.ModelCheckpoint(str(out_dir / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=True),
    ]
    return callbacks


def predict_arrays(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Softmax outputs per head for uint8 images (no augmentation)."""
    outputs = {head: [] for head in HEADS}
    for start in range(0, len(images), batch_size):
        batch = model(images[start:start + batch_size].astype(np.float32), training=False)
        for head in HEADS:
            outputs[head].append(keras.ops.convert_to_numpy(batch[head]).astype(np.float32))
    return {head: np.concatenate(chunks) for head, chunks in outputs.items()}


def accuracy_per_head(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Top-1 accuracy per head over labelled examples (None for a head without labels)."""
    return {head: head_scores(labels[head], p.argmax(axis=1)[:, None])["accuracy"] for head, p in probs.items()}


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
