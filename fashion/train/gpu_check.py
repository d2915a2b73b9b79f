"""GPU check: prove the GPU recipe on a borrowed accelerator in one command of at most 10 minutes.

Two halves, because the GPU machine receives the working tree plus about 10 MB and has no network:

* ``prepare`` (here, with the data): copy a seeded subset of 1,600 images (Kaggle small
  layout, ~4 MB) with its styles.csv rows and a split.csv (the project's split, train and val only)
  into an ignored folder; ``scripts/gpu_check.sh prepare`` also puts the wheels of Keras and its
  small pure-Python dependencies there.
* ``run_gpu_check`` (there): train the GPU recipe a fixed number of epochs at each size and write one
  JSON with, per size, compile seconds, steady img/s, the data-wait share, validation accuracy per
  head per epoch and peak device memory. The JSON is rewritten after each size, so a run cut short
  still reports what it finished.

Without ``--weights`` the EfficientNetB0 trunk starts from random weights (the check measures the
machine, not the model); accuracy then only shows that the model learns (above chance and rising).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import numpy as np

from fashion.data.cli_options import DataChoice, data_options
from fashion.data.errors import DataError
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from .errors import TrainError

SUBSET_SPLIT = "split.csv"
DEFAULT_IMAGES = 1600


def prepare_subset(
    source: str | Path,
    dest: str | Path,
    images: int = DEFAULT_IMAGES,
    split_file: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
) -> dict[str, Any]:
    """Copy ``images`` seeded images (train and val of the project's split) with their label rows into ``dest``."""
    import pandas as pd

    from fashion.data.dataset import find_layout, load_dataset

    source, dest = Path(source), Path(dest)
    frame, _ = load_dataset(source)
    if split_file and Path(split_file).is_file():
        split = pd.read_csv(split_file, dtype={"id": np.int64, "split": str})
        frame = frame.merge(split, on="id", how="inner")
        frame = frame[frame["split"].isin(["train", "val"])]
    else:
        rng = np.random.default_rng(seed)
        frame = frame.assign(split=np.where(rng.random(len(frame)) < val_fraction, "val", "train"))
    if frame.empty:
        raise TrainError(f"{source}: no images to take a subset from")
    count = min(images, len(frame))
    picked = frame.sample(n=count, random_state=seed).sort_values("id")
    styles_csv, _ = find_layout(source)
    header = pd.read_csv(styles_csv, nrows=0).columns.tolist()
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "images").mkdir(parents=True)
    for image_id, path in zip(picked["id"], picked["path"]):
        shutil.copyfile(path, dest / "images" / f"{image_id}.jpg")
    rows = picked[header].copy()
    rows.to_csv(dest / "styles.csv", index=False)
    picked[["id", "split"]].to_csv(dest / SUBSET_SPLIT, index=False)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    summary = {
        "images": int(count),
        "train": int((picked["split"] == "train").sum()),
        "val": int((picked["split"] == "val").sum()),
        "bytes": int(size),
    }
    (dest / "subset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def device_facts() -> dict[str, Any]:
    """Backend, devices and versions of what runs the check."""
    import keras

    facts: dict[str, Any] = {
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for package in ("keras", "jax", "jaxlib", "numpy"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if facts["backend"] == "jax":
        import jax

        facts["devices"] = [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in jax.devices()]
    return facts


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the first accelerator since the process started (None where not reported)."""
    try:
        import jax

        stats = jax.devices()[0].memory_stats()
    except Exception:  # no JAX, or a platform without memory statistics (CPU)
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def run_gpu_check(
    data: str | Path,
    out: str | Path,
    sizes: list[tuple[int, int]],
    epochs: int = 3,
    batch_size: int = 128,
    devices: str = "1",
    precision: str = "auto",
    work_dir: str | Path | None = None,
    weights: str | None = None,
    backbone: str = "efficientnetb0",
) -> dict[str, Any]:
    """Train the GPU recipe ``epochs`` per size on ``data`` and write the check's JSON to ``out``."""
    from .data import build_train_data
    from .gpu_recipe import GpuRecipe, GpuRecipeConfig

    started = time.time()
    data, out = Path(data), Path(out)
    split = data / SUBSET_SPLIT
    if not split.is_file():
        raise TrainError(f"{data}: no {SUBSET_SPLIT}; make the subset with `scripts/gpu_check.sh prepare`")
    weights = weights or os.environ.get("FASHION_EFFICIENTNET_WEIGHTS")
    if weights and not Path(weights).is_file():
        weights = None
    work = Path(work_dir) if work_dir else Path("runs") / "gpu-check"
    train_data = build_train_data(str(data), str(split), workers=min(16, os.cpu_count() or 1))
    report: dict[str, Any] = {
        "check": "gpu-recipe",
        "command": "fashion-train " + " ".join(sys.argv[1:]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "facts": device_facts(),
        "backbone": backbone,
        "weights": Path(weights).name if weights else "random init",
        "epochs": epochs,
        "batch_size": batch_size,
        "train_images": len(train_data.train),
        "val_images": len(train_data.val),
        "sizes": {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for height, width in sizes:
        config = GpuRecipeConfig(
            sizes=[(height, width)],
            epochs=epochs,
            batch_size=batch_size,
            devices=devices,
            mixed_precision=precision,
            backbone=backbone,
            patience=epochs + 1,
        )
        t0 = time.time()
        result = GpuRecipe(config, weights=weights).fit(train_data, work)
        size = result.training["results"]["sizes"][f"{height}x{width}"]
        report["policy"] = result.training["policy"]
        report["devices_used"] = result.training["devices"]
        report["sizes"][f"{height}x{width}"] = {
            "compile_seconds": size["compile_seconds"],
            "validation_compile_seconds": size["validation_compile_seconds"],
            "first_step_seconds": size["first_step_seconds"],
            "first_epoch_seconds": size["first_epoch_seconds"],
            "steady_epoch_seconds": size["steady_epoch_seconds"],
            "steady_img_per_s": size["steady_img_per_s"],
            "data_wait_fraction": size["data_wait_fraction"],
            "val_accuracy": size["val_accuracy"],
            "per_epoch": [_epoch_row(row, timing) for row, timing in zip(size["per_epoch"], size["epochs"])],
            "peak_memory_bytes": peak_memory_bytes(),
            "seconds": round(time.time() - t0, 1),
        }
        report["seconds"] = round(time.time() - started, 1)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _epoch_row(log: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    heads = {
        k[len("val_") : -len("_acc")]: round(float(v), 4)
        for k, v in log.items()
        if k.startswith("val_") and k.endswith("_acc") and k != "val_mean_acc"
    }
    return {
        "epoch": int(log.get("epoch", -1)) + 1,
        "loss": round(float(log.get("loss", float("nan"))), 4),
        "val_loss": round(float(log.get("val_loss", float("nan"))), 4),
        "val_accuracy": heads,
        "img_per_s": timing.get("img_per_s"),
        "train_seconds": timing.get("train_seconds"),
        "data_wait_seconds": timing.get("data_wait_seconds"),
    }


@run_cli
@click.group(context_settings=CONTEXT_SETTINGS)
def main() -> None:
    """The GPU check's helpers (scripts/gpu_check.sh runs them)."""


@main.command()
@click.option("--source", required=True, type=click.Path(file_okay=False), help="A Kaggle-layout dataset folder.")
@click.option("--dest", required=True, type=click.Path(file_okay=False), help="Where the subset is written.")
@click.option("--images", type=click.IntRange(1), default=DEFAULT_IMAGES, show_default=True)
@data_options(
    data=None,
    split_file="optional",
    split_file_help="Split CSV (id,split); default: the project's split, else a seeded random train/val split.",
)
def prepare(source: str, dest: str, images: int, data_choice: DataChoice) -> None:
    """Copy a small seeded subset of a Kaggle-layout folder; print what was copied as JSON."""
    try:
        split_file: Path | None = data_choice.resolved_split_file()
    except DataError:  # no split file here (only possible without --split-file): a seeded random split
        split_file = None
    click.echo(json.dumps(prepare_subset(source, dest, images, split_file)))


if __name__ == "__main__":
    main()
