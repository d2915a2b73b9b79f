"""GPU recipe: full fine-tune (BatchNormalization frozen), mixed precision, one or more input sizes.

Runs under any Keras backend; on a GPU machine without TensorFlow use ``KERAS_BACKEND=jax``.
For each size: the whole network trains with a cosine learning rate (over ``epochs``, or over
``seconds_per_size`` of *training* time), early stopping on mean validation accuracy, checkpoints
(weights and optimizer state, for ``resume``), a CSV log, and per-epoch timings.

What keeps an accelerator busy with training rather than compiling:

* the same model object (``pipeline.training_model``) trains, validates and predicts, and every
  batch has one shape (the last is padded), so XLA compiles each step once per size;
* the wall-clock schedule starts after the first step, so compilation and autotuning never eat
  the warm-up (``TimeCosine``); compile seconds and steady img/s are measured and recorded;
* JAX's persistent compilation cache lives in the run directory, so a resumed or repeated run
  does not compile again;
* images cross to the device as uint8 and are augmented inside the compiled step; decoding uses
  threads (never a fork after JAX has started);
* ``devices > 1`` trains data-parallel (``keras.distribution.DataParallel``; the global batch is
  split across the devices).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .callbacks import Progress, StepTimer, TimeCosine
from .checkpoints import load_optimizer_state, load_weights_npz, save_optimizer_state, save_weights_npz
from .errors import ResumeMismatch, TrainError
from .pipeline import ArrayBatches, AugmentSpec, predict_padded, training_model
from .recipe import Recipe, TrainData, TrainResult

STATE_FILE = "state.json"
#: Overrides where JAX's persistent compilation cache lives (default: the run directory's jax_cache/).
CACHE_ENV = "FASHION_JAX_CACHE"


@dataclass
class GpuRecipeConfig:
    """Options of the GPU recipe (stored in the bundle's training record)."""

    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(128, 96)])
    epochs: int = 12
    batch_size: int = 128  # global batch; split across devices
    learning_rate: float = 3e-4
    label_smoothing: float = 0.1
    seconds_per_size: float | None = None  # training seconds per size (compilation excluded); None: epochs
    mixed_precision: str = "auto"  # "auto" (bfloat16 on a GPU/TPU), "on", "off"
    devices: str = "1"  # a count or "all"
    backbone: str = "efficientnetb0"
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    patience: int = 4
    seed: int = 0
    compile_cache: bool = True
    max_epochs_timed: int = 1000  # cap on epochs when seconds_per_size drives the schedule
    init_from: str | None = None  # a bundle whose Keras weights start the run (instead of ImageNet's)

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["sizes"] = [f"{h}x{w}" for h, w in self.sizes]
        return out


class GpuRecipe(Recipe):
    """Full fine-tune at each size in ``config.sizes``; the bundle gets the first size's model."""

    name = "gpu"

    def __init__(
        self,
        config: GpuRecipeConfig | None = None,
        weights: str | None = None,
        resume: bool = False,
        callbacks: Sequence[Any] = (),
    ):
        self.config = config or GpuRecipeConfig()
        self.weights = weights
        self.resume = resume
        self.extra_callbacks = list(callbacks)  # e.g. tests observing the steps
        self.timers: dict[str, Any] = {}
        self.schedules: dict[str, Any] = {}
        self.resumed_from: dict[str, dict[str, int]] = {}  # size -> epoch and optimizer step a resume started at

    def fit(self, train_data: TrainData, run_dir: Path) -> TrainResult:
        config = self.config
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        state = _RunState(run_dir / STATE_FILE, self._state_config(), self.resume)
        backend = keras.backend.backend()
        if config.compile_cache and backend == "jax":
            enable_compilation_cache(Path(os.environ.get(CACHE_ENV) or run_dir / "jax_cache"))
        devices = select_devices(config.devices, config.batch_size)
        policy = precision_policy(config.mixed_precision)
        print(
            f"GPU recipe on Keras {keras.__version__} / {backend}: {len(devices)} device(s) {devices}, policy {policy}",
            flush=True,
        )
        started = time.time()
        previous_policy = keras.mixed_precision.dtype_policy().name
        sizes: dict[str, Any] = {}
        first: tuple[Any, Any] | None = None
        try:
            if len(devices) > 1:
                keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            keras.mixed_precision.set_global_policy(policy)
            for height, width in config.sizes:
                tag = f"{height}x{width}"
                model, wrapper, sizes[tag], probs = self._fit_size(train_data, run_dir, height, width, state)
                print(
                    f"{tag}: compile {sizes[tag]['compile_seconds']} s, steady "
                    f"{sizes[tag]['steady_img_per_s']} img/s, val accuracy "
                    f"{json.dumps(sizes[tag]['val_accuracy'])}",
                    flush=True,
                )
                if first is None:
                    first = (model, probs)
                _write_results(run_dir, backend, devices, policy, train_data, sizes, started)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
            if len(devices) > 1:
                keras.distribution.set_distribution(None)
        assert first is not None
        model, probs = first
        height, width = config.sizes[0]
        bundle_model = float32_copy(model, train_data.num_classes, height, width, config.backbone)
        val = train_data.decoded("val", height, width)
        training = {
            "recipe": self.name,
            **config.record(),
            "backend": backend,
            "devices": len(devices),
            "policy": policy,
            "weights": Path(self.weights).name if self.weights else None,
            "results": {"sizes": sizes, "seconds": round(time.time() - started, 1)},
        }
        return TrainResult(bundle_model, training, probs, val.labels, run_dir)

    def _state_config(self) -> dict[str, Any]:
        record = self.config.record()
        record.pop("compile_cache", None)
        return record

    def _fit_size(self, data: TrainData, run_dir: Path, height: int, width: int, state: _RunState):
        from .finetune import accuracy_per_head, cosine_schedule, read_log
        from .model import build_model, compile_model, set_trainable_from

        config, tag = self.config, f"{height}x{width}"
        size_dir = run_dir / tag
        size_dir.mkdir(parents=True, exist_ok=True)
        train, val = data.decoded("train", height, width), data.decoded("val", height, width)
        for name, part in (("train", train), ("val", val)):
            if part.skipped:
                print(
                    f"{tag} {name}: skipped {len(part.skipped)} unreadable images, e.g. {part.skipped[0]}", flush=True
                )
        keras.utils.set_random_seed(config.seed)
        model = build_model(data.num_classes, height, width, weights=self.weights, backbone=config.backbone)
        if config.init_from:
            start_from_bundle(model, config.init_from, data.vocabularies)
        set_trainable_from(model, "stem_conv")  # everything but BatchNormalization
        wrapper = training_model(model, config.augment, seed=config.seed)
        batches = ArrayBatches(train.images, train.labels, config.batch_size, shuffle=True, seed=config.seed)
        val_batches = ArrayBatches(val.images, val.labels, config.batch_size)
        progress = state.size(tag)
        timed = config.seconds_per_size is not None
        if timed:
            compile_model(wrapper, config.learning_rate, config.label_smoothing)
            max_epochs = config.max_epochs_timed
        else:
            steps = config.epochs * len(batches)
            compile_model(
                wrapper,
                cosine_schedule(config.learning_rate, steps, warmup_steps=len(batches) // 2),
                config.label_smoothing,
            )
            max_epochs = config.epochs
        wrapper.optimizer.build(wrapper.trainable_variables)  # so a checkpoint restores Adam's moments too
        initial_epoch = 0
        if not progress:  # a fresh size: logs of an earlier run in this directory do not continue
            (size_dir / "log.csv").unlink(missing_ok=True)
        if progress.get("epochs_done"):
            initial_epoch = int(progress["epochs_done"])
            load_weights_npz(wrapper, size_dir / "resume.weights.npz")
            load_optimizer_state(wrapper.optimizer, size_dir / "resume.optimizer.npz")
            batches.set_epoch(initial_epoch)
            step = int(keras.ops.convert_to_numpy(wrapper.optimizer.iterations))
            self.resumed_from[tag] = {"epoch": initial_epoch, "optimizer_step": step}
            print(f"{tag}: resuming after epoch {initial_epoch} (optimizer step {step})", flush=True)
        timer = StepTimer(config.batch_size, batches)
        callbacks: list[keras.callbacks.Callback] = []
        schedule = None
        if timed:
            schedule = TimeCosine(
                config.learning_rate, config.seconds_per_size, already=float(progress.get("train_seconds", 0.0))
            )
            callbacks.append(schedule)
            self.schedules[tag] = schedule
        callbacks += [
            timer,
            Progress(
                max_epochs if not timed else config.epochs, len(batches), config.batch_size, log=_log, window=schedule
            ),
            *selection_callbacks(size_dir, config.patience),
            _Checkpoint(size_dir, state, tag),
            *self.extra_callbacks,
        ]
        self.timers[tag] = timer
        finished = bool(progress.get("done"))
        if not finished:
            if initial_epoch < max_epochs:
                wrapper.fit(
                    batches,
                    validation_data=val_batches,
                    epochs=max_epochs,
                    initial_epoch=initial_epoch,
                    verbose=2,
                    callbacks=callbacks,
                )
            save_weights_npz(wrapper, size_dir / "final.weights.npz")
            state.update_size(tag, done=True)
        else:
            load_weights_npz(wrapper, size_dir / "final.weights.npz")
        probs = predict_padded(wrapper, val.images, config.batch_size)
        timing = timer.summary() if not finished else progress.get("timing", {})
        state.update_size(tag, timing=timing)
        result = {
            "val_accuracy": accuracy_per_head(probs, val.labels),
            "epochs_run": len(read_log(size_dir / "log.csv")),
            "per_epoch": read_log(size_dir / "log.csv"),
            "train_images": int(len(train.images)),
            "val_images": int(len(val.images)),
            "skipped": {"train": train.skipped[:20], "val": val.skipped[:20]},
            **{k: v for k, v in timing.items()},
        }
        if timed:
            result["schedule"] = {
                "train_seconds": round(self.schedules[tag].trained_seconds(), 2),
                "first_rates": self.schedules[tag].first_rates[:3],
            }
        return model, wrapper, result, probs


class _Checkpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state and progress after every epoch (in that order) for ``resume``."""

    def __init__(self, size_dir: Path, state: _RunState, tag: str):
        super().__init__()
        self.size_dir, self.state, self.tag = size_dir, state, tag

    def on_epoch_end(self, epoch, logs=None):
        save_weights_npz(self.model, self.size_dir / "resume.weights.npz")
        save_optimizer_state(self.model.optimizer, self.size_dir / "resume.optimizer.npz")
        update: dict[str, Any] = {"epochs_done": epoch + 1}
        if logs and "train_seconds" in logs:
            update["train_seconds"] = float(logs["train_seconds"])
        self.state.update_size(self.tag, **update)


class _RunState:
    """``state.json``: the configuration and each size's progress; ``resume`` refuses another configuration."""

    def __init__(self, path: Path, config: dict[str, Any], resume: bool):
        self.path = path
        if resume and path.exists():
            self.data = json.loads(path.read_text())
            if self.data.get("config") != json.loads(json.dumps(config)):
                raise ResumeMismatch(
                    f"{path}: --resume with a different configuration; start a new --work-dir or drop --resume"
                )
        else:
            self.data = {"config": config, "sizes": {}}
            self._write()

    def size(self, tag: str) -> dict[str, Any]:
        return dict(self.data["sizes"].get(tag, {}))

    def update_size(self, tag: str, **values: Any) -> None:
        self.data["sizes"].setdefault(tag, {}).update(values)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable))
        tmp.replace(self.path)


def _log(message: str) -> None:
    print(message, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_results(
    run_dir: Path, backend: str, devices: list[str], policy: str, data: TrainData, sizes: dict[str, Any], started: float
) -> None:
    results = {
        "backend": backend,
        "devices": devices,
        "policy": policy,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "sizes": sizes,
        "seconds": round(time.time() - started, 1),
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")


def selection_callbacks(size_dir: Path, patience: int) -> list[keras.callbacks.Callback]:
    """Mean validation accuracy, early stopping that keeps the best epoch's weights (in memory), a CSV log.

    No HDF5 checkpoints here: the GPU image need not have h5py; ``_Checkpoint`` writes .npz files.
    """
    from .finetune import MeanValAccuracy

    return [
        MeanValAccuracy(),
        keras.callbacks.EarlyStopping(monitor="val_mean_acc", mode="max", patience=patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(size_dir / "log.csv"), append=True),
    ]


def enable_compilation_cache(cache_dir: Path) -> None:
    """JAX's persistent compilation cache in the run directory: a resumed or repeated run skips compiling."""
    import jax

    cache_dir.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(cache_dir):
        jax.config.update("jax_compilation_cache_dir", str(cache_dir))
        try:  # the cache binds its directory on first use; a second run in one process must rebind it
            from jax._src import compilation_cache

            compilation_cache.reset_cache()
        except (ImportError, AttributeError):  # pragma: no cover - private API moved: keep the first directory
            pass
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def select_devices(requested: str | int, batch_size: int) -> list[str]:
    """Device names to train on: ``requested`` is a count or "all"; several need the JAX backend."""
    text = str(requested).strip().lower()
    try:
        available = keras.distribution.list_devices()
    except Exception:  # backends without the distribution API (TensorFlow here) train on their default device
        available = ["default"]
    accelerators = [d for d in available if not d.lower().startswith("cpu")] or available
    if text == "all":
        count = len(accelerators)
    else:
        try:
            count = int(text)
        except ValueError:
            raise TrainError(f"--devices {requested!r}: expected a number or 'all'") from None
    if count < 1:
        raise TrainError(f"--devices {requested!r}: must be at least 1")
    if count > len(accelerators):
        raise TrainError(f"--devices {count}: only {len(accelerators)} device(s) here ({', '.join(accelerators)})")
    if count > 1:
        if keras.backend.backend() != "jax":
            raise TrainError(f"--devices {count} needs KERAS_BACKEND=jax (this run uses {keras.backend.backend()})")
        if batch_size % count:
            raise TrainError(f"--batch-size {batch_size} does not split evenly over {count} devices")
    return accelerators[:count]


def precision_policy(mode: str) -> str:
    """``auto``: mixed bfloat16 on an accelerator, float32 on a CPU (bfloat16 is slow there)."""
    if mode == "on":
        return "mixed_bfloat16"
    if mode == "off":
        return "float32"
    if mode != "auto":
        raise TrainError(f"mixed precision must be auto, on or off, not {mode!r}")
    try:
        devices = keras.distribution.list_devices()
    except Exception:
        devices = []
    return "mixed_bfloat16" if any(not d.lower().startswith("cpu") for d in devices) else "float32"


def start_from_bundle(model, bundle_dir: str, vocabularies: dict[str, list[str]]) -> None:
    """Set ``model``'s weights to a trained bundle's (same vocabularies and architecture).

    The input size may differ: every weight of the convolutional trunk and the heads is independent of it, so a
    bundle trained at 128x96 can start a run at 160x120 (fine-tuning at the new resolution). Each variable's
    shape is still checked."""
    from fashion.runtime.bundle import load_manifest

    from .bundle_io import load_keras_model
    from .model import finalize_states

    bundle = load_manifest(bundle_dir)
    if bundle.labels != vocabularies:
        raise TrainError(f"--init-from {bundle_dir}: its labels differ from the training data's vocabularies")
    trained = load_keras_model(bundle_dir)
    if trained.input_shape[-1] != model.input_shape[-1]:
        raise TrainError(
            f"--init-from {bundle_dir}: {trained.input_shape[-1]} input channels, this run {model.input_shape[-1]}"
        )
    source = {w.path: w for w in trained.weights}
    missing = [w.path for w in model.weights if w.path not in source or tuple(source[w.path].shape) != tuple(w.shape)]
    if missing and _same_layout(model.weights, trained.weights):
        # Keras numbers a layer's name when one of that name was built before in the process (a bundle's float32
        # copy is built after the trained model: "normalization_1"); the same architecture keeps the same order.
        pairs = list(zip(model.weights, trained.weights, strict=True))
    elif missing:
        raise TrainError(
            f"--init-from {bundle_dir}: no matching weights for {len(missing)} variables (e.g. {missing[0]})"
        )
    else:
        pairs = [(variable, source[variable.path]) for variable in model.weights]
    for variable, value in pairs:
        variable.assign(value.numpy())
    finalize_states(model)


def _same_layout(ours, theirs) -> bool:
    """Both lists hold variables of the same shapes in the same order, named alike but for Keras's ``_N``."""
    import re

    def base(path: str) -> str:
        return "/".join(re.sub(r"_\d+$", "", part) for part in path.split("/"))

    return len(ours) == len(theirs) and all(
        tuple(a.shape) == tuple(b.shape) and base(a.path) == base(b.path) for a, b in zip(ours, theirs, strict=True)
    )


def float32_copy(model, num_classes: dict[str, int], height: int, width: int, backbone: str):
    """The trained classifier rebuilt under float32 with the same weights, for the bundle (no compilation)."""
    from .model import build_model, finalize_states

    previous = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_model(num_classes, height, width, weights=None, backbone=backbone)
        copy.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
        finalize_states(copy)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return copy


__all__ = ["GpuRecipe", "GpuRecipeConfig", "Progress", "StepTimer", "TimeCosine"]
