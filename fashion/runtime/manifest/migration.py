"""Schema 1 -> 2, and the portable training record (no machine paths in a bundle).

* ``default_artifact`` stops being a shared choice: it becomes the fact ``facts["default_artifact"]``
  (what the exporter measured as fastest on *its* machine); the artifact that runs is chosen on the
  host that runs it, from each artifact's accuracy and optional ``timings``.
* no absolute machine paths: the training record keeps weights as ``{name, bytes, sha256}`` and the
  data as ``{name, layout, images, rows, ...}`` (see :func:`portable_training`).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BundleError
from .files import MANIFEST, sha256_file

SCHEMA_VERSION = 2
SUPPORTED_SCHEMAS = (1, 2)

DEFAULT_NOTE = "fastest CPU artifact that passed its gate on the machine that exported it; a fact, not a choice"


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 copy of a schema-1 manifest (the input is not changed).

    ``default_artifact`` becomes ``facts["default_artifact"]``; absolute paths in the training
    record become names (see :func:`portable_training`). Everything else is already schema 2.
    """
    out = copy.deepcopy(data)
    out["schema_version"] = SCHEMA_VERSION
    default = out.pop("default_artifact", None)
    if default is not None:
        facts: dict[str, Any] = out["facts"] if isinstance(out.get("facts"), dict) else {}
        facts["default_artifact"] = {"artifact": default, "note": DEFAULT_NOTE}
        out["facts"] = facts
    return out


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and (os.path.isabs(value) or "/" in value or "\\" in value)


def describe_weights(
    value: str | os.PathLike[str], weights_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """``{name, bytes, sha256}`` of a weights file; bytes/sha256 only when the file can be found."""
    path = Path(value)
    record: dict[str, Any] = {"name": path.name}
    candidates = [path] + ([Path(weights_dir) / path.name] if weights_dir else [])
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None:
        record["bytes"] = found.stat().st_size
        record["sha256"] = sha256_file(found)
    return record


def describe_bundle(value: str | os.PathLike[str]) -> dict[str, Any]:
    """``{name, keras: {file, sha256}}`` of a bundle a training run started from (``--init-from``): its folder
    name and the digest its manifest records for its Keras weights (name only when that manifest is unreadable)."""
    root = Path(value)
    record: dict[str, Any] = {"name": root.name}
    try:
        keras = json.loads((root / MANIFEST).read_text())["artifacts"]["keras"]
        record["keras"] = {"file": keras["file"], "sha256": keras["sha256"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return record


def describe_data(value: str | os.PathLike[str], report: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{name, layout, images, rows, ...}`` of a training data folder, paths inside it made relative."""
    root = Path(value)
    record: dict[str, Any] = {"name": root.name, "layout": "kaggle"}
    for key, item in (report or {}).items():
        record[key] = _relative_to(item, root) if isinstance(item, str) else copy.deepcopy(item)
    return record


def _relative_to(item: str, root: Path) -> str:
    """An absolute path inside ``root`` made relative to it; any other absolute path reduced to its name."""
    path = Path(item)
    if not path.is_absolute():
        return item
    if root.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.name


def portable_path(value: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """A path fit for a bundle: relative to ``base`` (default: the working directory) when inside it, else its name."""
    path = Path(value)
    if not path.is_absolute():
        return path.as_posix()
    root = Path(base or Path.cwd()).resolve()
    resolved = path.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else path.name


def portable_training(training: Any, weights_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The training record with machine paths replaced by names, sizes and digests (idempotent).

    ``weights: "/abs/efficientnetb0.h5"`` -> ``{"name": "efficientnetb0.h5", "bytes": ..., "sha256": ...}``
    (bytes/sha256 only when the file exists here); ``data: "/abs/fashion-product-images"`` plus
    ``loader_report`` -> ``{"name": "fashion-product-images", "layout": "kaggle", "images": ..., "rows": ...}``;
    ``init_from: "/abs/bundle"`` -> ``{"name": "bundle", "keras": {"file": ..., "sha256": ...}}``.
    """
    if not isinstance(training, dict):
        raise BundleError(f"{MANIFEST}: 'training' must be a JSON object, got {type(training).__name__}")
    out = copy.deepcopy(training)
    if isinstance(out.get("weights"), str) and _is_path(out["weights"]):
        out["weights"] = describe_weights(out["weights"], weights_dir)
    if isinstance(out.get("init_from"), str) and _is_path(out["init_from"]):
        out["init_from"] = describe_bundle(out["init_from"])
    report = out.get("loader_report")
    if isinstance(out.get("data"), str) and _is_path(out["data"]):
        out["data"] = describe_data(out["data"], report if isinstance(report, dict) else None)
        out.pop("loader_report", None)
    elif isinstance(report, dict):
        out["loader_report"] = {
            k: Path(v).name if isinstance(v, str) and os.path.isabs(v) else v for k, v in report.items()
        }
    return out


def absolute_paths(obj: Any, where: str = "") -> list[str]:
    """Every ``field: value`` in ``obj`` whose string value is an absolute path (a bundle must hold none)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += absolute_paths(value, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += absolute_paths(value, f"{where}[{index}]")
    elif isinstance(obj, str) and (obj.startswith("/") or (len(obj) > 2 and obj[1] == ":" and obj[2] in "\\/")):
        found.append(f"{where}: {obj}")
    return found
