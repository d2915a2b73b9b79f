"""Write a trained Keras model as a self-describing bundle (see fashion.runtime.bundle for the format)."""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fashion import HEADS
from fashion.runtime.bundle import (
    HIERARCHY,
    LABELS,
    MANIFEST,
    SCHEMA_VERSION,
    atomic_write_json,
    load_manifest,
    record_artifact,
    sha256_file,
)
from fashion.runtime.manifest import edit_manifest, portable_path, portable_training
from fashion.runtime.preprocess import PREPROCESSING_SPEC

KERAS_FILE = "model.keras"
HEAD_WEIGHTS = "head_weights.npz"


def tool_versions(*names: str) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names or ("keras", "tensorflow-cpu", "tensorflow", "jax", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def save_head_weights(model, path: Path) -> None:
    """Dense kernels/biases per head: the runtime builds class-activation maps from them without Keras.

    A head whose input is more than the pooled trunk features (a colour branch, coarse-head
    probabilities) has the pooled features first; only those kernel rows map the feature map.
    """
    from .ensemble import cam_part

    part = cam_part(model)  # an ensemble's maps are its first member's
    features = int(part.get_layer("avg_pool").output.shape[-1])
    arrays = {}
    for head in HEADS:
        kernel, bias = part.get_layer(head).get_weights()
        kernel = kernel[:features]
        arrays[f"{head}/kernel"], arrays[f"{head}/bias"] = kernel.astype(np.float32), bias.astype(np.float32)
    np.savez(path, **arrays)


def write_bundle(
    out_dir: str | Path,
    model,
    vocabularies: dict[str, list[str]],
    hierarchy: list[list[str]],
    training: dict[str, Any],
    metrics: dict[str, Any],
    split_file: str | Path | None,
    name: str = "fashion-effnetb0",
) -> Path:
    """Write model.keras, labels, hierarchy, head weights and bundle.json into a fresh ``out_dir``.

    The bundle is assembled in a temporary sibling directory and renamed into place, so an
    interrupted write never leaves a half bundle behind.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    height, width = (int(d) for d in model.input_shape[1:3])
    model.save(staging / KERAS_FILE)
    (staging / LABELS).write_text(json.dumps(vocabularies, indent=1) + "\n")
    (staging / HIERARCHY).write_text(json.dumps(hierarchy, indent=1) + "\n")
    save_head_weights(model, staging / HEAD_WEIGHTS)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "heads": list(HEADS),
        "num_classes": {h: len(vocabularies[h]) for h in HEADS},
        "input": {
            "name": "image",
            "height": height,
            "width": width,
            "channels": 3,
            "layout": "NHWC",
            "dtype": "float32",
        },
        "preprocessing": PREPROCESSING_SPEC,
        "feature_layer": "top_activation",
        "training": portable_training(training),  # names, sizes and digests; no machine paths
        "metrics": metrics,
        "split": ({"file": portable_path(split_file), "sha256": sha256_file(split_file)} if split_file else None),
        "versions": tool_versions(),
        "files": {f: sha256_file(staging / f) for f in (LABELS, HIERARCHY, HEAD_WEIGHTS)},
        "artifacts": {},
    }
    atomic_write_json(staging / MANIFEST, manifest)
    record_artifact(staging, "keras", KERAS_FILE, format="keras", precision="fp32")
    load_manifest(staging)  # refuse to publish a bundle the runtime would refuse
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def load_keras_model(bundle_dir: str | Path):
    """Load the bundle's Keras model (safe mode; the custom loss/metric are not needed for inference)."""
    from fashion.layers import load_keras_model as load

    bundle = load_manifest(bundle_dir)
    return load(bundle.artifact_path("keras"))


def update_metrics(bundle_dir: str | Path, key: str, metrics: dict[str, Any]) -> None:
    """Record ``metrics`` under ``manifest["metrics"][key]`` through the one manifest editor."""
    with edit_manifest(bundle_dir) as draft:
        draft.put_metrics(key, metrics)
