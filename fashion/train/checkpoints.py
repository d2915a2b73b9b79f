"""Checkpoints as plain .npz files (no pickle, no h5py): model variables by path, optimizer state by position.

Every write goes to a temporary file first and is renamed into place, so a kill never leaves half a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TrainError


def save_weights_npz(model, path: Path) -> None:
    """Every variable of ``model`` by its path, as a plain .npz (no pickle, no h5py), written atomically."""
    arrays = {v.path: np.asarray(v.numpy()) for v in model.weights}
    if len(arrays) != len(model.weights):
        raise TrainError(f"{path}: variable paths are not unique in {model.name}; cannot checkpoint by name")
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_weights_npz(model, path: Path) -> None:
    if not path.is_file():
        raise TrainError(f"{path}: checkpoint missing; start a new --work-dir or drop --resume")
    with np.load(path, allow_pickle=False) as saved:
        missing = [v.path for v in model.weights if v.path not in saved.files]
        if missing:
            raise TrainError(
                f"{path}: no values for {len(missing)} variables (e.g. {missing[0]}); start a new --work-dir"
            )
        for variable in model.weights:
            variable.assign(saved[variable.path])


def save_optimizer_state(optimizer, path: Path) -> None:
    """Optimizer variables (iterations, learning rate, Adam moments) as a plain .npz keyed by position."""
    arrays = {f"{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_optimizer_state(optimizer, path: Path) -> None:
    with np.load(path, allow_pickle=False) as saved:
        if len(saved.files) != len(optimizer.variables):
            raise TrainError(
                f"{path}: {len(saved.files)} optimizer variables saved, the model has "
                f"{len(optimizer.variables)}; start a new --work-dir"
            )
        for i, variable in enumerate(optimizer.variables):
            variable.assign(saved[f"{i:05d}"])


__all__ = ["load_optimizer_state", "load_weights_npz", "save_optimizer_state", "save_weights_npz"]
