"""Training callbacks of the GPU recipe: time-based cosine schedule, step timing, progress with an ETA.

None of them implements ``on_train_batch_end``, so Keras keeps dispatching steps asynchronously on an
accelerator (the host slices the next batch while the device runs this one).
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np

from .errors import TrainError


class TimeCosine(keras.callbacks.Callback):
    """Cosine learning rate over a window of training seconds, with linear warm-up; stops at the window's end.

    The clock starts when the first training step's call has returned: that call carries the XLA
    compilation and autotuning (minutes on a GPU), which must not use up the warm-up; the first
    step runs at the warm-up start value. No ``on_train_batch_end`` here, so Keras may dispatch
    steps asynchronously. Validation passes (whose first one
    compiles too) are not counted either. ``already`` is training time a resumed run had used. The
    learning rate is pushed to the optimizer only when it moved by more than ``resolution`` of the
    base value: on JAX every push synchronises the model state.
    """

    def __init__(
        self,
        base_lr: float,
        seconds: float,
        warmup_fraction: float = 0.08,
        floor: float = 0.02,
        already: float = 0.0,
        resolution: float = 0.002,
        clock=time.monotonic,
    ):
        super().__init__()
        if seconds <= 0:
            raise TrainError(f"--gpu-seconds must be positive, not {seconds}")
        self.base_lr, self.seconds, self.warmup, self.floor = base_lr, seconds, warmup_fraction, floor
        self.already, self.resolution, self.clock = already, resolution, clock
        self.start: float | None = None  # clock value when counting (re)started
        self.counted = already  # training seconds counted before ``start``
        self.applied: float | None = None
        self.first_rates: list[float] = []  # the rate of each of the first steps (for tests and logs)

    async_safe = True

    def rate(self, progress: float) -> float:
        if progress < self.warmup:
            return self.base_lr * (0.1 + 0.9 * progress / self.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * (progress - self.warmup) / (1 - self.warmup)))
        return self.base_lr * (self.floor + (1 - self.floor) * cosine)

    def trained_seconds(self) -> float:
        return self.counted + (self.clock() - self.start if self.start is not None else 0.0)

    def progress(self) -> float:
        return min(1.0, self.trained_seconds() / self.seconds)

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None and self.first_rates:  # the first step's call returned: compilation is over
            self.start = self.clock()
        progress = self.progress()
        lr = self.rate(progress)
        if self.applied is None or abs(lr - self.applied) > self.resolution * self.base_lr:
            self.model.optimizer.learning_rate = lr
            self.applied = lr
        if len(self.first_rates) < 8:
            self.first_rates.append(float(self.applied))
        if progress >= 1.0:
            self._model.stop_training = True

    def on_test_begin(self, logs=None):
        if self.start is not None:
            self.counted += self.clock() - self.start
            self.start = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start is None and self.first_rates:
            self.start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.applied or 0.0)
            logs["train_seconds"] = round(self.trained_seconds(), 3)


class StepTimer(keras.callbacks.Callback):
    """Per epoch: training seconds, seconds spent fetching batches (data wait), steady img/s; compile time.

    Nothing here waits for the device at each step (no ``on_train_batch_end``), so Keras keeps
    dispatching steps asynchronously: the host slices the next batch while the device runs this one.
    The device is waited for once per epoch, before validation. The first step's interval (its call
    blocks while XLA compiles) is reported as compile time, less one steady step.
    """

    async_safe = True

    def __init__(self, batch_size: int, batches: Any = None):
        super().__init__()
        self.batch_size, self.batches = batch_size, batches
        self.epochs: list[dict[str, Any]] = []
        self.first_step: float | None = None
        self.validation: list[float] = []
        self._first_begin: float | None = None
        self._epoch: dict[str, Any] | None = None

    def _fetched(self) -> float:
        return float(getattr(self.batches, "fetch_seconds", 0.0))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = {
            "epoch": epoch + 1,
            "steps": 0,
            "train_seconds": None,
            "data_wait_seconds": None,
            "img_per_s": None,
        }
        self._epoch_begin, self._fetch_begin = time.perf_counter(), self._fetched()
        self._first_in_epoch = False

    def on_train_batch_begin(self, batch, logs=None):
        now = time.perf_counter()
        if self._first_begin is None:
            self._first_begin = now
            self._first_in_epoch = True
        elif self.first_step is None:
            self.first_step = now - self._first_begin  # the first call returned: compilation is over
        if self._epoch is not None:
            self._epoch["steps"] += 1

    def _close_epoch(self) -> None:
        if self._epoch is None or self._epoch["train_seconds"] is not None:
            return
        if self.model is not None:  # wait for the device once, so the epoch's time includes its steps
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        record = self._epoch
        record["train_seconds"] = round(time.perf_counter() - self._epoch_begin, 3)
        record["data_wait_seconds"] = round(self._fetched() - self._fetch_begin, 3)
        steady_steps, steady_seconds = record["steps"], record["train_seconds"]
        if self._first_in_epoch:
            steady_steps -= 1
            steady_seconds -= self.first_step or record["train_seconds"]
        record["steady_steps"], record["steady_seconds"] = steady_steps, round(max(steady_seconds, 0.0), 3)
        record["img_per_s"] = (
            round(steady_steps * self.batch_size / steady_seconds, 1)
            if steady_steps > 0 and steady_seconds > 0
            else None
        )

    def on_test_begin(self, logs=None):
        self._close_epoch()
        self._test_begin = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation.append(time.perf_counter() - self._test_begin)

    def on_epoch_end(self, epoch, logs=None):
        self._close_epoch()
        if self._epoch is not None:
            self.epochs.append(self._epoch)
            if logs is not None:
                logs["img_per_s"] = self._epoch["img_per_s"] or 0.0
                logs["data_wait_s"] = self._epoch["data_wait_seconds"]
            self._epoch = None

    def summary(self) -> dict[str, Any]:
        steps = sum(e["steady_steps"] for e in self.epochs)
        seconds = sum(e["steady_seconds"] for e in self.epochs)
        trained = sum(e["train_seconds"] for e in self.epochs)
        steady_step = seconds / steps if steps else 0.0
        val_compile = self.validation[0] - float(np.median(self.validation[1:])) if len(self.validation) > 1 else None
        epoch_seconds = [e["train_seconds"] for e in self.epochs]
        return {
            "compile_seconds": round(max(0.0, (self.first_step or 0.0) - steady_step), 2),
            "first_step_seconds": round(self.first_step or 0.0, 3),
            "validation_compile_seconds": round(max(0.0, val_compile), 2) if val_compile is not None else None,
            "first_epoch_seconds": epoch_seconds[0] if epoch_seconds else None,
            "steady_epoch_seconds": round(float(np.median(epoch_seconds[1:])), 3) if len(epoch_seconds) > 1 else None,
            "steady_img_per_s": round(steps * self.batch_size / seconds, 1) if steps and seconds > 0 else None,
            "data_wait_fraction": round(sum(e["data_wait_seconds"] for e in self.epochs) / trained, 4)
            if trained > 0
            else None,
            "epochs": self.epochs,
        }


class Progress(keras.callbacks.Callback):
    """A line every ``every`` seconds: epoch, step, img/s over the run so far and the ETA of the whole run.

    With ``window`` (the run's :class:`TimeCosine`, ``--gpu-seconds``) the run ends when that window of training
    seconds is used up, if that comes before the last epoch: the ETA is the sooner of the two.

    Counted in ``on_train_batch_begin`` (no wait for the device, so steps stay asynchronous): the rate
    trails by one step, which is noise over a 5-minute epoch.
    """

    async_safe = True

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        batch_size: int,
        every: float = 60.0,
        log=print,
        window: TimeCosine | None = None,
        clock=time.monotonic,
    ):
        super().__init__()
        self.epochs, self.steps, self.batch_size, self.every, self.log = epochs, steps_per_epoch, batch_size, every, log
        self.window, self.clock = window, clock
        self.began: float | None = None
        self.done = 0
        self.epoch = 0
        self.last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step = epoch, 0

    def on_train_batch_begin(self, batch, logs=None):
        now = self.clock()
        if self.began is None:
            self.began, self.last = now, now
            self.first_epoch = self.epoch
        self.step = batch
        counted = (self.epoch - self.first_epoch) * self.steps + batch
        if now - self.last >= self.every and counted > 0:
            self.last = now
            rate = counted / (now - self.began)
            eta = ((self.epochs - self.epoch) * self.steps - batch) / rate
            until = ""
            if self.window is not None:
                window_left = max(0.0, self.window.seconds - self.window.trained_seconds())
                if window_left < eta:
                    eta, until = window_left, ", end of the time window"
            self.log(
                f"epoch {self.epoch + 1}/{self.epochs} step {batch}/{self.steps}: "
                f"{rate * self.batch_size:.1f} img/s, ETA {_clock(eta)} (validation not included{until})"
            )


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


__all__ = ["Progress", "StepTimer", "TimeCosine"]
