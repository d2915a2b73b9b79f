"""The model bundle: a directory that describes itself.

    bundle.json      manifest (typed in fashion.runtime.manifest): heads, input, preprocessing, artifacts,
                     metrics, versions, sha256 of every file
    labels.json      {head: [class names in index order]}
    hierarchy.json   [[masterCategory, subCategory, articleType], ...] seen in training
    model.keras      the trained Keras model (training side only)
    model_*.onnx     exported artifacts, each listed under manifest["artifacts"] with its sha256

Everything is JSON; nothing is pickled. ``load_manifest`` validates the manifest (migrating schema 1),
checks that every listed file exists with its recorded sha256 and that the vocabularies match the
heads; ``check_bundle`` lists every problem of a bundle instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError
from .manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    ArtifactEntry,
    Manifest,
    absolute_paths,
    atomic_write_bytes,
    atomic_write_json,
    edit_manifest,
    read_json,
    sha256_file,
)
from .preprocess import Preprocessor, build_preprocessor

LABELS = "labels.json"
HIERARCHY = "hierarchy.json"

__all__ = [
    "HIERARCHY",
    "LABELS",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Bundle",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_bundle",
    "load_manifest",
    "record_artifact",
    "record_file",
    "remove_artifact",
    "sha256_file",
    "verify_files",
]


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: its directory, typed manifest, vocabularies and hierarchy."""

    root: Path
    manifest: Manifest
    labels: dict[str, list[str]]
    hierarchy: list[tuple[str, str, str]]

    @property
    def heads(self) -> list[str]:
        return list(self.manifest.heads)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.manifest.input_size

    @property
    def artifacts(self) -> dict[str, ArtifactEntry]:
        return self.manifest.artifacts

    def preprocessor(self, fast: bool | None = None) -> Preprocessor:
        """The preprocessing this bundle's spec describes, at its input size (BundleError if unsupported)."""
        return build_preprocessor(self.manifest.preprocessing, *self.input_size, fast=fast)

    def artifact_path(self, key: str) -> Path:
        if key not in self.artifacts:
            raise BundleError(
                f"{self.root / MANIFEST}: no artifact '{key}' (known: {', '.join(self.artifacts) or 'none'})"
            )
        return self.root / self.artifacts[key].file


def _check_file(root: Path, name: str, expected_sha: str) -> None:
    path = root / name
    if not path.is_file():
        raise BundleError(f"{path}: listed in {MANIFEST} but missing")
    if sha256_file(path) != expected_sha:
        raise BundleError(f"{path}: sha256 does not match {MANIFEST} (file changed, truncated or replaced)")


def _labels(root: Path, manifest: Manifest) -> dict[str, list[str]]:
    """labels.json as {head: [unique names]} matching the manifest's heads (and num_classes when recorded)."""
    path = root / LABELS
    labels = read_json(path)
    heads = manifest.heads
    if not isinstance(labels, dict) or sorted(labels) != sorted(heads):
        found = sorted(labels) if isinstance(labels, dict) else type(labels).__name__
        raise BundleError(f"{path}: heads {found} do not match {MANIFEST} heads {sorted(heads)}")
    for head in heads:
        names = labels[head]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BundleError(f"{path}: '{head}' must be a list of class names, got {type(names).__name__}")
        if not names or len(set(names)) != len(names):
            raise BundleError(f"{path}: vocabulary of '{head}' is empty or has duplicates")
        if manifest.num_classes is not None and manifest.num_classes[head] != len(names):
            raise BundleError(
                f"{path}: '{head}' lists {len(names)} classes but {MANIFEST} num_classes says "
                f"{manifest.num_classes[head]}"
            )
    return {head: list(labels[head]) for head in heads}


def _hierarchy(root: Path) -> list[tuple[str, str, str]]:
    path = root / HIERARCHY
    if not path.exists():
        return []
    rows = read_json(path)
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and len(row) == 3 and all(isinstance(x, str) for x in row) for row in rows
    ):
        raise BundleError(f"{path}: expected a list of [masterCategory, subCategory, articleType] rows")
    return [(row[0], row[1], row[2]) for row in rows]


def load_bundle(root: str | os.PathLike[str], verify_hashes: bool = True) -> Bundle:
    """Read and validate a bundle directory; raise BundleError naming the file and the problem."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    manifest = Manifest.from_dict(read_json(root / MANIFEST), source=root / MANIFEST)
    if verify_hashes:
        _verify(root, manifest, artifacts=None)
    return Bundle(root=root, manifest=manifest, labels=_labels(root, manifest), hierarchy=_hierarchy(root))


#: The former name of :func:`load_bundle` (it returns a Bundle, not a manifest), kept for its ~100 callers.
load_manifest = load_bundle


def _verify(root: Path, manifest: Manifest, artifacts: list[str] | None) -> None:
    for name, digest in manifest.files.items():
        _check_file(root, name, digest)
    for key, entry in manifest.artifacts.items():
        if artifacts is None or key in artifacts:
            _check_file(root, entry.file, entry.sha256)
    unknown = [key for key in artifacts or [] if key not in manifest.artifacts]
    if unknown:
        raise BundleError(f"{root / MANIFEST}: no artifact {unknown[0]!r} (known: {', '.join(manifest.artifacts)})")


def verify_files(bundle: Bundle, artifacts: list[str] | None = None) -> None:
    """Check the sha256 of every plain file and of ``artifacts`` (all when None).

    The runtime loads with ``verify_hashes=False`` and then verifies only the artifact it will
    run, so a bundle carrying a large Keras model or several exports still starts fast.
    """
    _verify(bundle.root, bundle.manifest, artifacts)


# -- writers kept for existing callers; each is one edit_manifest transaction -------------------------------


def record_file(root: str | os.PathLike[str], name: str) -> None:
    """(Re)compute the sha256 of a plain bundle file in the manifest's ``files`` table."""
    with edit_manifest(root) as draft:
        draft.put_file(name)


def record_artifact(root: str | os.PathLike[str], key: str, file: str, **meta: Any) -> dict[str, Any]:
    """Add or replace an artifact entry (file, sha256, size and any metadata) in the manifest."""
    path = Path(root) / file
    if not path.is_file():
        raise BundleError(f"{path}: artifact '{key}' names a file that does not exist")
    fields: Mapping[str, Any] = {"file": file, "sha256": sha256_file(path), "bytes": path.stat().st_size, **meta}
    with edit_manifest(root) as draft:
        return draft.put_artifact(key, fields).to_dict()


def remove_artifact(root: str | os.PathLike[str], key: str) -> None:
    with edit_manifest(root) as draft:
        draft.drop_artifact(key)


# -- the bundle check: every problem, not just the first -----------------------------------------------------


def check_bundle(root: str | os.PathLike[str], open_artifacts: bool = True) -> list[str]:
    """Every problem of the bundle at ``root``, one line each naming the file (empty: the bundle is sound).

    Checks the manifest (schema, fields, no absolute machine paths), every listed file (present, sha256
    recorded and matching, size), the vocabularies against the heads and ``num_classes``, the hierarchy
    against the vocabularies, and opens each ONNX artifact to compare its outputs with the manifest
    (every head present with as many classes as labels.json lists). Artifacts whose backend is not
    installed here (TensorRT, Keras) are checked as files only.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a bundle directory"]
    path = root / MANIFEST
    try:
        raw = read_json(path)
        manifest = Manifest.from_dict(raw, source=path)
    except BundleError as exc:
        return [str(exc)]
    problems = [
        f"{path}: {where} (an absolute machine path; a bundle records names, sizes and sha256 instead)"
        for where in absolute_paths(raw)
    ]
    file_problems, damaged = _file_problems(root, manifest)
    problems += file_problems
    labels, label_problems = _label_problems(root, manifest)
    problems += label_problems
    if labels is not None:
        problems += _hierarchy_problems(root, labels)
        if open_artifacts:
            problems += _artifact_output_problems(root, manifest, labels, skip=damaged)
    return problems


def _file_problems(root: Path, manifest: Manifest) -> tuple[list[str], set[str]]:
    """Problems of the listed files, and the names of those that are missing or damaged."""
    problems: list[str] = []
    damaged: set[str] = set()
    for name in (LABELS, HIERARCHY):
        if (root / name).exists() and name not in manifest.files:
            problems.append(f"{root / name}: no sha256 recorded in {MANIFEST} 'files'")
    listed: list[tuple[str, str, int | None]] = [(name, digest, None) for name, digest in manifest.files.items()]
    listed += [(entry.file, entry.sha256, entry.bytes) for entry in manifest.artifacts.values()]
    for name, digest, size in listed:
        path = root / name
        damaged.add(name)
        if not path.is_file():
            problems.append(f"{path}: listed in {MANIFEST} but missing")
        elif size is not None and path.stat().st_size != size:
            problems.append(f"{path}: {path.stat().st_size} bytes, {MANIFEST} records {size} (truncated or replaced)")
        elif sha256_file(path) != digest:
            problems.append(f"{path}: sha256 does not match {MANIFEST} (file changed, truncated or replaced)")
        else:
            damaged.discard(name)
    return problems, damaged


def _label_problems(root: Path, manifest: Manifest) -> tuple[dict[str, list[str]] | None, list[str]]:
    try:
        return _labels(root, manifest), []
    except BundleError as exc:
        return None, [str(exc)]


def _hierarchy_problems(root: Path, labels: dict[str, list[str]]) -> list[str]:
    try:
        rows = _hierarchy(root)
    except BundleError as exc:
        return [str(exc)]
    levels = ("masterCategory", "subCategory", "articleType")
    if not rows or not all(level in labels for level in levels):
        return []
    known = [set(labels[level]) for level in levels]
    unknown = [row for row in rows if any(name not in names for name, names in zip(row, known))]
    if unknown:
        return [
            f"{root / HIERARCHY}: {len(unknown)} of {len(rows)} combinations name a class missing from "
            f"{LABELS}, e.g. {list(unknown[0])}"
        ]
    return []


def _artifact_output_problems(
    root: Path, manifest: Manifest, labels: dict[str, list[str]], skip: set[str]
) -> list[str]:
    """Open each intact ONNX artifact (ONNX Runtime, one thread) and compare its outputs with the manifest."""
    from .backends.base import BACKEND_FOR_FORMAT, get_backend

    problems = []
    for key, entry in manifest.artifacts.items():
        path = root / entry.file
        if entry.format != "onnx" or entry.file in skip:
            continue
        try:
            backend = get_backend(BACKEND_FOR_FORMAT["onnx"]).open(path, entry.to_dict(), threads=1)
        except Exception as exc:  # noqa: BLE001 - a check reports every failure, whatever its type
            problems.append(f"{path}: artifact '{key}' does not open ({exc})")
            continue
        try:
            sizes = backend.output_sizes()
        finally:
            backend.close()
        for head in manifest.heads:
            if head not in sizes:
                problems.append(f"{path}: artifact '{key}' has no output for head '{head}'")
            elif sizes[head] is not None and sizes[head] != len(labels[head]):
                problems.append(
                    f"{path}: artifact '{key}' head '{head}' outputs {sizes[head]} classes, "
                    f"{LABELS} lists {len(labels[head])}"
                )
    return problems
