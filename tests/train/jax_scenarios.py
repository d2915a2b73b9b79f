"""GPU-recipe scenarios run under KERAS_BACKEND=jax in a child process (the backend is fixed at Keras import).

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python -m tests.train.jax_scenarios SAMPLE_DIR SPLIT_CSV WORK_DIR

Prints one JSON line (the last line of stdout) that tests/train/test_gpu_jax.py asserts on:

* ``warmup``: a first step made slow on purpose (a sleep where XLA would compile) longer than the
  whole ``--gpu-seconds`` window; the learning rates of the first steps;
* ``devices``: per-epoch training loss on 1 and on 2 devices (DataParallel over the host platform);
* ``resume``: a run interrupted after its first epoch, then resumed; the loss of an uninterrupted run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras  # first: JAX starts before any image is decoded (the fork check is meaningful)

from fashion.train.cli import build_train_data
from fashion.train.gpu_recipe import GpuRecipe, GpuRecipeConfig

BASE_LR = 3e-4
SLOW_COMPILE_SECONDS = 3.0


class SlowFirstStep(keras.callbacks.Callback):
    """Sleeps inside the first step's window (after the schedule set its rate): a stand-in for a slow compile."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and not getattr(self, "done", False):
            self.done = True
            time.sleep(SLOW_COMPILE_SECONDS)


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill after epoch 1")


def losses(result, tag="32x24"):
    return [row["loss"] for row in result.training["results"]["sizes"][tag]["per_epoch"]]


def main(sample_dir: str, split: str, work: str) -> dict:
    work_dir = Path(work)
    data = build_train_data(sample_dir, split)
    out: dict = {"backend": keras.backend.backend(), "devices": keras.distribution.list_devices()}

    def config(**changes):
        options = dict(sizes=[(32, 24)], epochs=2, batch_size=32, learning_rate=BASE_LR, backbone="tiny")
        options.update(changes)
        return GpuRecipeConfig(**options)

    recipe = GpuRecipe(config(seconds_per_size=1.0), callbacks=[SlowFirstStep()])
    result = recipe.fit(data, work_dir / "warmup")
    schedule = recipe.schedules["32x24"]
    out["warmup"] = {
        "first_rates": schedule.first_rates,
        "steps": sum(e["steps"] for e in recipe.timers["32x24"].epochs),
        "train_seconds": schedule.trained_seconds(),
        "compile_seconds": result.training["results"]["sizes"]["32x24"]["compile_seconds"],
    }

    one = GpuRecipe(config(devices="1")).fit(data, work_dir / "one")
    two = GpuRecipe(config(devices="2")).fit(data, work_dir / "two")
    out["devices"] = {"one": losses(one), "two": losses(two), "two_devices": two.training["devices"]}

    try:
        GpuRecipe(config(), callbacks=[Interrupt()]).fit(data, work_dir / "resume")
        out["resume_interrupted"] = False
    except KeyboardInterrupt:
        out["resume_interrupted"] = True
    state = json.loads((work_dir / "resume" / "state.json").read_text())
    resumed = GpuRecipe(config(), resume=True)
    result = resumed.fit(data, work_dir / "resume")
    out["resume"] = {
        "epochs_done_before": state["sizes"]["32x24"]["epochs_done"],
        "losses": losses(result),
        "resumed_from": resumed.resumed_from.get("32x24"),
        "steps_per_epoch": -(-len(data.train) // 32),
        "uninterrupted": losses(one),
        "val_accuracy": result.training["results"]["sizes"]["32x24"]["val_accuracy"],
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
