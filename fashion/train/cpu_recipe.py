"""CPU recipe: cached frozen-trunk activations, then fine-tune the top of the network.

Full back-propagation through EfficientNetB0 is slow on a few CPU cores; forward passes are
cheap. So:

1. Decode every image once (shared preprocessing) and run the frozen lower trunk up to
   ``cut_layer`` (default ``block5c_add``), caching those activations on disk in float16, for the
   training images and their horizontal mirror (the only augmentation that survives caching).
2. Phase 1: pooled features of the frozen upper trunk -> train the six heads (seconds per epoch).
3. Phase 2: fine-tune everything above ``cut_layer`` (blocks 6-7, top conv, heads;
   BatchNormalization frozen) on the cached activations, with early stopping, checkpoints and a
   cosine learning rate.

Every stage writes its result before the next starts; ``resume=True`` skips finished stages and
continues phase 2 from its last checkpoint, so a killed run loses at most one epoch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from fashion import HEADS

from .errors import ResumeMismatch
from .finetune import accuracy_per_head, standard_callbacks
from .model import build_model, compile_model, set_trainable_from
from .recipe import Part, Recipe, TrainData, TrainResult, decode_part


@dataclass
class CpuRecipeConfig:
    """Options of the CPU recipe (stored in the bundle's training record)."""

    height: int = 128
    width: int = 96
    cut_layer: str = "block5c_add"  # the tiny test backbone uses "stem_activation"
    batch_size: int = 64
    head_epochs: int = 40
    head_learning_rate: float = 2e-3
    epochs: int = 10
    learning_rate: float = 5e-4
    label_smoothing: float = 0.1
    dropout: float = 0.2
    class_weight_heads: list[str] = field(default_factory=list)
    class_weight_power: float = 0.5
    patience: int = 3
    seed: int = 0
    backbone: str = "efficientnetb0"


def _upper_model(model, cut_layer: str):
    return keras.Model(model.get_layer(cut_layer).output, model.output)


def cache_activations(
    model, cut_layer: str, part: Part, height: int, width: int, cache_file: Path, flip: bool = False, chunk: int = 512
) -> tuple[np.ndarray, set[int]]:
    """Activations of ``cut_layer`` for the part's images (float16), cached in ``cache_file`` chunk by chunk.

    Resumable: a killed run continues after the last finished chunk. Unreadable images get the
    activations of a blank (white) image and are returned as skipped ids, so their labels are masked.
    """

    lower = keras.Model(model.input, model.get_layer(cut_layer).output)
    shape = (len(part),) + tuple(lower.output.shape[1:])
    progress_file = cache_file.with_suffix(".done")
    skipped_file = cache_file.with_suffix(".skipped.json")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+" if cache_file.exists() and progress_file.exists() else "w+"
    cache = np.lib.format.open_memmap(cache_file, mode=mode, dtype=np.float16, shape=shape)
    done = int(progress_file.read_text()) if mode == "r+" else 0
    skipped = set(json.loads(skipped_file.read_text())) if mode == "r+" and skipped_file.exists() else set()
    bar = tqdm(total=len(part), initial=done, desc=f"caching {cache_file.stem}", unit="img")
    for start in range(done, len(part), chunk):
        rows = np.arange(start, min(start + chunk, len(part)))
        decoded = decode_part(part.take(rows), height, width, workers=2, allow_empty=True)
        images = np.full((len(rows), height, width, 3), 255, np.uint8)
        images[np.isin(part.ids[rows], decoded.ids)] = decoded.images
        skipped.update(i for i, _ in decoded.skipped)
        if flip:
            images = images[:, :, ::-1]
        for s in range(0, len(images), 64):
            out = lower(images[s : s + 64].astype(np.float32), training=False)
            cache[start + s : start + s + len(out)] = keras.ops.convert_to_numpy(out).astype(np.float16)
        cache.flush()
        skipped_file.write_text(json.dumps(sorted(skipped)))
        progress_file.write_text(str(start + len(images)))
        bar.update(len(images))
    bar.close()
    return cache, skipped


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> np.ndarray:
    """Per-class weights (count^-power, mean 1 over examples); power 0 = unweighted."""
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    mean = (weights[labels[labels >= 0]]).mean()
    return (weights / mean).astype(np.float32)


def sample_weights(labels: dict[str, np.ndarray], config, num_classes: dict[str, int]):
    """Per-example loss weights per head: count^-power class weights on ``config.class_weight_heads``, else 1."""
    weights = {}
    for head in HEADS:
        if head in config.class_weight_heads:
            table = class_weights(labels[head], num_classes[head], config.class_weight_power)
            weights[head] = np.where(labels[head] >= 0, table[np.maximum(labels[head], 0)], 0.0).astype(np.float32)
        else:
            weights[head] = np.ones(len(labels[head]), np.float32)
    return weights


def pooled_features(model, cut_layer: str, activations: np.ndarray, batch: int = 256) -> np.ndarray:
    pool = keras.Model(model.get_layer(cut_layer).output, model.get_layer("avg_pool").output)
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(pool(activations[s : s + batch].astype(np.float32), training=False))
            for s in range(0, len(activations), batch)
        ]
    )


def train_heads(
    model,
    features: dict[str, np.ndarray],
    labels: dict,
    config: CpuRecipeConfig,
    num_classes: dict[str, int],
    out_dir: Path,
) -> dict:
    """Phase 1: fit the six Dense heads on pooled features, then copy them into ``model``."""

    inputs = keras.Input((features["train"].shape[1],), name="features")
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(inputs)
    outputs = {h: keras.layers.Dense(num_classes[h], activation="softmax", name=h)(x) for h in HEADS}
    heads = keras.Model(inputs, outputs)
    compile_model(
        heads,
        keras.optimizers.schedules.CosineDecay(
            config.head_learning_rate, config.head_epochs * int(np.ceil(len(features["train"]) / 256))
        ),
        config.label_smoothing,
    )
    weights = sample_weights(labels["train"], config, num_classes)
    history = heads.fit(
        features["train"],
        labels["train"],
        sample_weight=weights,
        batch_size=256,
        epochs=config.head_epochs,
        verbose=2,
        validation_data=(features["val"], labels["val"]),
        callbacks=[keras.callbacks.CSVLogger(str(out_dir / "phase1_log.csv"))],
    )
    for head in HEADS:
        model.get_layer(head).set_weights(heads.get_layer(head).get_weights())
    return {k: float(v[-1]) for k, v in history.history.items() if k.startswith("val_") and k.endswith("_acc")}


class CachedBatches(keras.utils.PyDataset):
    """Training batches from cached activations, each image either as-is or mirrored at random."""

    def __init__(self, plain, mirrored, labels, weights, batch_size, seed):
        super().__init__()
        self.plain, self.mirrored, self.labels, self.weights = plain, mirrored, labels, weights
        self.batch_size, self.rng = batch_size, np.random.default_rng(seed)
        self.order = np.arange(len(plain))
        self.on_epoch_end()

    def __len__(self):
        return int(np.ceil(len(self.plain) / self.batch_size))

    def __getitem__(self, index):
        idx = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        use_mirror = self.rng.random(len(idx)) < 0.5
        x = np.where(use_mirror[:, None, None, None], self.mirrored[idx], self.plain[idx]).astype(np.float32)
        return x, {h: self.labels[h][idx] for h in HEADS}, {h: self.weights[h][idx] for h in HEADS}

    def on_epoch_end(self):
        self.rng.shuffle(self.order)


class CpuRecipe(Recipe):
    """Cached activations, then the heads, then everything above ``cut_layer``; resumable stage by stage."""

    name = "cpu"

    def __init__(
        self,
        config: CpuRecipeConfig | None = None,
        weights: str | None = None,
        cache_dir: str | Path = "cache",
        resume: bool = False,
    ):
        self.config = config or CpuRecipeConfig()
        self.weights, self.cache_dir, self.resume = weights, Path(cache_dir), resume

    def fit(self, train_data: TrainData, run_dir: Path) -> TrainResult:
        config, out_dir = self.config, Path(run_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state_file = out_dir / "state.json"
        state = (
            json.loads(state_file.read_text()) if self.resume and state_file.exists() else {"config": asdict(config)}
        )
        if self.resume and state.get("config") and state["config"] != asdict(config):
            raise ResumeMismatch(
                f"{state_file}: --resume with a different configuration; start a new --work-dir or drop --resume"
            )

        def save_state(**updates):
            state.update(updates)
            state_file.write_text(json.dumps(state, indent=2))

        started = time.time()
        num_classes = train_data.num_classes
        keras.utils.set_random_seed(config.seed)
        model = build_model(
            num_classes,
            config.height,
            config.width,
            weights=self.weights,
            dropout=config.dropout,
            backbone=config.backbone,
        )
        parts = {"train": train_data.train, "val": train_data.val}
        tag = f"{config.backbone}_{config.height}x{config.width}_{config.cut_layer}"
        acts, labels = {}, {}
        for name, part in parts.items():
            acts[name], skipped = cache_activations(
                model, config.cut_layer, part, config.height, config.width, self.cache_dir / f"{tag}_{name}.npy"
            )
            labels[name] = _mask(part, skipped)
        mirrored, _ = cache_activations(
            model,
            config.cut_layer,
            parts["train"],
            config.height,
            config.width,
            self.cache_dir / f"{tag}_train_mirrored.npy",
            flip=True,
        )

        if not state.get("phase1_done"):
            t0 = time.time()
            features = {name: pooled_features(model, config.cut_layer, acts[name]) for name in acts}
            phase1 = train_heads(model, features, labels, config, num_classes, out_dir)
            model.save_weights(str(out_dir / "phase1.weights.h5"))
            save_state(phase1_done=True, phase1_val_accuracy=phase1, phase1_seconds=round(time.time() - t0, 1))
        else:
            model.load_weights(str(out_dir / "phase1.weights.h5"))

        set_trainable_from(model, _first_layer_after(model, config.cut_layer))
        upper = _upper_model(model, config.cut_layer)
        batches = CachedBatches(
            acts["train"],
            mirrored,
            labels["train"],
            sample_weights(labels["train"], config, num_classes),
            config.batch_size,
            config.seed,
        )
        steps = config.epochs * len(batches)
        compile_model(
            upper,
            keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02),
            config.label_smoothing,
        )
        initial_epoch = int(state.get("phase2_epochs_done", 0))
        upper.optimizer.build(upper.trainable_variables)
        if initial_epoch:
            upper.load_weights(str(out_dir / "phase2" / "last.weights.h5"))
            upper.optimizer.iterations.assign(initial_epoch * len(batches))

        class Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                save_state(phase2_epochs_done=epoch + 1)

        if initial_epoch < config.epochs:
            val_x = acts["val"].astype(np.float32)
            callbacks = standard_callbacks(out_dir / "phase2", patience=config.patience) + [Progress()]
            upper.fit(
                batches,
                validation_data=(val_x, labels["val"]),
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                verbose=2,
                callbacks=callbacks,
            )
        best = out_dir / "phase2" / "best.weights.h5"
        if best.exists():
            upper.load_weights(str(best))
        probs = upper.predict(acts["val"].astype(np.float32), batch_size=256, verbose=0)
        probs = {h: np.asarray(probs[h], dtype=np.float32) for h in HEADS}
        save_state(phase2_done=True, val_accuracy=accuracy_per_head(probs, labels["val"]))
        training = {
            "recipe": self.name,
            **asdict(config),
            "weights": Path(self.weights).name if self.weights else None,
            "seconds": round(time.time() - started, 1),
        }
        return TrainResult(model, training, probs, labels["val"], out_dir)


def _mask(part: Part, skipped: set[int]) -> dict[str, np.ndarray]:
    """The part's labels with unreadable images' labels set to -1 (ignored by the loss and the scores)."""
    if not skipped:
        return part.labels
    bad = np.isin(part.ids, sorted(skipped))
    return {h: np.where(bad, -1, v).astype(v.dtype) for h, v in part.labels.items()}


def _first_layer_after(model, cut_layer: str) -> str:
    names = [layer.name for layer in model.layers]
    return names[names.index(cut_layer) + 1]
