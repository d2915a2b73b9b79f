"""The model bundle: a directory that describes itself.

    bundle.json      manifest: heads, input size, preprocessing, artifacts, metrics, versions, sha256s
    labels.json      {head: [class names in index order]}
    hierarchy.json   [[masterCategory, subCategory, articleType], ...] seen in training
    model.keras      the trained Keras model (training side only)
    model.onnx, ...  exported artifacts, each listed under manifest["artifacts"]

Everything is JSON; nothing is pickled. ``load_manifest`` checks the schema version, that every
listed file exists with its recorded sha256, and that the vocabularies match the heads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "bundle.json"
LABELS = "labels.json"
HIERARCHY = "hierarchy.json"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; bundle files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: its directory, manifest, vocabularies and hierarchy."""

    root: Path
    manifest: dict[str, Any]
    labels: dict[str, list[str]]
    hierarchy: list[tuple[str, str, str]]

    @property
    def heads(self) -> list[str]:
        return list(self.manifest["heads"])

    @property
    def input_size(self) -> tuple[int, int]:
        spec = self.manifest["input"]
        return int(spec["height"]), int(spec["width"])

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("artifacts", {})

    def artifact_path(self, key: str) -> Path:
        if key not in self.artifacts:
            raise BundleError(f"{self.root / MANIFEST}: no artifact '{key}' (have: {', '.join(self.artifacts) or 'none'})")
        return self.root / self.artifacts[key]["file"]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise BundleError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None


def _check_file(root: Path, name: str, expected_sha: str | None) -> None:
    path = root / name
    if not path.is_file():
        raise BundleError(f"{path}: listed in {MANIFEST} but missing")
    if expected_sha and sha256_file(path) != expected_sha:
        raise BundleError(f"{path}: sha256 does not match {MANIFEST} (file changed, truncated or replaced)")


def load_manifest(root: str | os.PathLike, verify_hashes: bool = True) -> Bundle:
    """Read and validate a bundle directory; raise BundleError naming the file and the problem."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    manifest = _read_json(root / MANIFEST)
    if not isinstance(manifest, dict):
        raise BundleError(f"{root / MANIFEST}: expected a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{root / MANIFEST}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
    for key in ("heads", "input", "preprocessing"):
        if key not in manifest:
            raise BundleError(f"{root / MANIFEST}: missing required key '{key}'")

    if verify_hashes:
        _verify(root, manifest, artifacts=None)

    labels = _read_json(root / LABELS)
    heads = list(manifest["heads"])
    if not isinstance(labels, dict) or sorted(labels) != sorted(heads):
        raise BundleError(f"{root / LABELS}: heads {sorted(labels) if isinstance(labels, dict) else labels!r} "
                          f"do not match {MANIFEST} heads {sorted(heads)}")
    for head in heads:
        if not labels[head] or len(set(labels[head])) != len(labels[head]):
            raise BundleError(f"{root / LABELS}: vocabulary of '{head}' is empty or has duplicates")
    hierarchy_path = root / HIERARCHY
    hierarchy = [tuple(row) for row in _read_json(hierarchy_path)] if hierarchy_path.exists() else []
    return Bundle(root=root, manifest=manifest, labels=labels, hierarchy=hierarchy)


def _verify(root: Path, manifest: dict[str, Any], artifacts: list[str] | None) -> None:
    for name, digest in manifest.get("files", {}).items():
        _check_file(root, name, digest)
    for key, artifact in manifest.get("artifacts", {}).items():
        if artifacts is None or key in artifacts:
            if not isinstance(artifact, dict) or "file" not in artifact:
                raise BundleError(f"{root / MANIFEST}: artifact '{key}' has no 'file' entry")
            _check_file(root, artifact["file"], artifact.get("sha256"))


def verify_files(bundle: Bundle, artifacts: list[str] | None = None) -> None:
    """Check the sha256 of every plain file and of ``artifacts`` (all when None).

    The runtime loads with ``verify_hashes=False`` and then verifies only the artifact it will
    run, so a bundle carrying a large Keras model or several exports still starts fast.
    """
    _verify(bundle.root, bundle.manifest, artifacts)


def record_file(root: str | os.PathLike, name: str) -> None:
    """(Re)compute the sha256 of a plain bundle file in the manifest's ``files`` table."""
    root = Path(root)
    manifest = _read_json(root / MANIFEST)
    manifest.setdefault("files", {})[name] = sha256_file(root / name)
    atomic_write_json(root / MANIFEST, manifest)


def record_artifact(root: str | os.PathLike, key: str, file: str, **meta: Any) -> dict[str, Any]:
    """Add or replace an artifact entry (file, sha256, size and any metadata) in the manifest."""
    root = Path(root)
    manifest = _read_json(root / MANIFEST)
    entry = {"file": file, "sha256": sha256_file(root / file), "bytes": (root / file).stat().st_size, **meta}
    manifest.setdefault("artifacts", {})[key] = entry
    atomic_write_json(root / MANIFEST, manifest)
    return entry


def remove_artifact(root: str | os.PathLike, key: str) -> None:
    root = Path(root)
    manifest = _read_json(root / MANIFEST)
    manifest.get("artifacts", {}).pop(key, None)
    atomic_write_json(root / MANIFEST, manifest)
