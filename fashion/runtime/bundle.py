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

One rule for where files live: every file the manifest lists is inside the bundle folder. A name with
``..`` or an absolute path is refused when the manifest is read, and a symbolic link whose target lies
outside the folder is refused when the file is verified (by ``load_manifest``, ``Classifier.load`` and
``check_bundle`` alike): a bundle is copied and shipped as a folder, and a link out of it would not
travel. Links that stay inside the folder are fine.

The labels are checked twice: ``labels.json`` against its sha256, and against the class names each ONNX
artifact carries in its ``metadata_props`` (written by the exporter), so a bundle whose labels were
reordered and whose sha256 was "fixed" is refused instead of predicting the wrong names.
"""

from __future__ import annotations

import json
import mmap
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


def _outside(root: Path, name: str) -> str | None:
    """The problem when ``name`` (a listed file) resolves outside the bundle folder through a symbolic link."""
    path = root / name
    target = path.resolve()
    if target.is_relative_to(root.resolve()):
        return None
    return (
        f"{path}: a symbolic link to {target}, outside the bundle; every file a bundle lists must be inside its "
        "folder (copy the file in: a link out of the folder does not travel with the bundle)"
    )


def _check_file(root: Path, name: str, expected_sha: str) -> None:
    path = root / name
    outside = _outside(root, name)
    if outside:
        raise BundleError(outside)
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
    bundle = Bundle(root=root, manifest=manifest, labels=_labels(root, manifest), hierarchy=_hierarchy(root))
    if verify_hashes:
        _verify_embedded_labels(bundle, None)
    return bundle


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
    _verify_embedded_labels(bundle, artifacts)


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read from its protobuf without the ``onnx`` package (only the
    top-level fields are walked; the graph is skipped by its length). ValueError if it is not protobuf."""
    props: dict[str, str] = {}
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = 0
        while pos < len(data):
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                length, pos = _varint(data, pos)
                if field == 14:  # ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}
                    entry = _fields(bytes(data[pos : pos + length]))
                    props[entry.get(1, b"").decode("utf-8")] = entry.get(2, b"").decode("utf-8")
                pos += length
            else:
                raise ValueError(f"unexpected protobuf wire type {wire}")
            if pos > len(data):
                raise ValueError("truncated protobuf")
    return props


def _varint(data: Any, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a small protobuf message."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key & 7 != 2:
            raise ValueError("metadata entry with a non-string field")
        length, pos = _varint(data, pos)
        out[key >> 3] = data[pos : pos + length]
        pos += length
    return out


def embedded_label_problem(path: Path, key: str, labels: Mapping[str, list[str]]) -> str | None:
    """How the class names inside ONNX artifact ``path`` differ from labels.json (None: they agree, the file
    carries none, as artifacts from older exporters, or it is no readable ONNX, which opening it reports)."""
    try:
        meta = onnx_metadata(path)
        raw = meta.get("labels")
        embedded = json.loads(raw) if raw is not None else json.loads(meta.get("fashion_edge", "{}")).get("labels")
    except (OSError, ValueError, AttributeError):
        return None  # not readable as ONNX: opening it with its backend reports that
    if not isinstance(embedded, dict):
        return None
    for head, names in labels.items():
        inside = embedded.get(head)
        if inside is None or inside == names:
            continue
        if not isinstance(inside, list) or sorted(map(str, inside)) != sorted(names):
            detail = "other class names"
        else:
            index = next(i for i, (a, b) in enumerate(zip(inside, names)) if a != b)
            detail = f"class {index} is '{inside[index]}' in the model and '{names[index]}' in {LABELS}"
        return (
            f"{path}: artifact '{key}' was exported with other '{head}' labels than {LABELS} ({detail}); "
            f"{LABELS} was edited or belongs to another training, so every prediction would be named wrongly"
        )
    return None


def _verify_embedded_labels(bundle: Bundle, artifacts: list[str] | None) -> None:
    for key, entry in bundle.artifacts.items():
        if entry.format == "onnx" and (artifacts is None or key in artifacts):
            problem = embedded_label_problem(bundle.root / entry.file, key, bundle.labels)
            if problem:
                raise BundleError(problem)


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
        outside = _outside(root, name)
        if outside:
            problems.append(outside)
        elif not path.is_file():
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
        label_problem = embedded_label_problem(path, key, labels)
        if label_problem:
            problems.append(label_problem)
        try:
            backend = get_backend(BACKEND_FOR_FORMAT["onnx"]).open(path, entry, threads=1)
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
