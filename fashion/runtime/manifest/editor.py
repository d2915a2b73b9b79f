"""Reading bundle.json and the one editor (one load, one validated atomic write, a lock per bundle).

with edit_manifest(bundle_dir) as draft:
    draft.put_artifact("onnx_fp32", {"file": "model_fp32.onnx", "format": "onnx", ...})
    draft.put_metrics("test", scores)
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import BundleError
from .files import MANIFEST, atomic_write_json, read_json, sha256_file
from .migration import DEFAULT_NOTE
from .schema import ArtifactEntry, Manifest, Timing


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Parse and validate ``<bundle_dir>/bundle.json`` (migrating schema 1)."""
    path = Path(bundle_dir) / MANIFEST
    return Manifest.from_dict(read_json(path), source=path)


class ManifestDraft:
    """The manifest being edited inside :func:`edit_manifest`; every change is validated when made."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self._data = manifest.to_dict()
        self._manifest = manifest

    @property
    def manifest(self) -> Manifest:
        """The current typed view (already validated)."""
        return self._manifest

    def _apply(self, data: dict[str, Any]) -> None:
        self._manifest = Manifest.from_dict(data, source=self.root / MANIFEST)
        self._data = self._manifest.to_dict()

    def _entry_from(self, entry: ArtifactEntry | Mapping[str, Any], key: str) -> dict[str, Any]:
        if isinstance(entry, ArtifactEntry):
            return entry.to_dict()
        fields = dict(entry)
        if "file" not in fields:
            raise BundleError(f"{self.root / MANIFEST}: artifact '{key}' has no 'file' entry")
        path = self.root / str(fields["file"])
        if "sha256" not in fields or "bytes" not in fields:
            if not path.is_file():
                raise BundleError(f"{path}: artifact '{key}' names a file that does not exist")
            fields.setdefault("sha256", sha256_file(path))
            fields.setdefault("bytes", path.stat().st_size)
        ordered = {"file": fields.pop("file"), "sha256": fields.pop("sha256"), "bytes": fields.pop("bytes")}
        return {**ordered, **fields}

    def put_artifact(self, key: str, entry: ArtifactEntry | Mapping[str, Any]) -> ArtifactEntry:
        """Add or replace an artifact; a mapping without sha256/bytes gets them from the file."""
        data = copy.deepcopy(self._data)
        data["artifacts"][key] = self._entry_from(entry, key)
        self._apply(data)
        return self._manifest.artifacts[key]

    def update_artifact(self, key: str, **fields: Any) -> ArtifactEntry:
        """Merge ``fields`` into an existing artifact entry (e.g. accuracy measured after it was recorded)."""
        data = copy.deepcopy(self._data)
        if key not in data["artifacts"]:
            raise BundleError(
                f"{self.root / MANIFEST}: no artifact {key!r} (known: {', '.join(data['artifacts']) or 'none'})"
            )
        data["artifacts"][key].update(copy.deepcopy(fields))
        self._apply(data)
        return self._manifest.artifacts[key]

    def put_timings(self, key: str, timings: list[Timing]) -> ArtifactEntry:
        """Replace the timing facts of an existing artifact."""
        return self.update_artifact(key, timings=[timing.to_dict() for timing in timings])

    def add_timing(self, key: str, timing: Timing) -> None:
        """Append a timing fact to an artifact."""
        self.put_timings(key, [*self._manifest.artifact(key).timings, timing])

    def drop_artifact(self, key: str) -> None:
        """Remove an artifact entry (and any fact or pin naming it); no error if absent."""
        data = copy.deepcopy(self._data)
        data["artifacts"].pop(key, None)
        facts = data.get("facts") or {}
        fact = facts.get("default_artifact")
        if fact == key or (isinstance(fact, dict) and fact.get("artifact") == key):
            facts.pop("default_artifact")
        if data.get("pinned_artifact") == key:
            data.pop("pinned_artifact")
        self._apply(data)

    def put_metrics(self, key: str, metrics: Mapping[str, Any]) -> None:
        data = copy.deepcopy(self._data)
        data.setdefault("metrics", {})[key] = copy.deepcopy(dict(metrics))
        self._apply(data)

    def put_file(self, name: str) -> None:
        """(Re)compute the sha256 of a plain bundle file (labels.json, hierarchy.json, ...) in ``files``."""
        path = self.root / name
        if not path.is_file():
            raise BundleError(f"{path}: cannot record a file that does not exist")
        data = copy.deepcopy(self._data)
        data.setdefault("files", {})[name] = sha256_file(path)
        self._apply(data)

    def put(self, section: str, value: Any) -> None:
        """Set a top-level section (``"training"``, ``"versions"``, ``"facts"``, ...).

        ``"default_artifact"`` is accepted for old callers but recorded as the fact
        ``facts["default_artifact"]``: it never becomes a shared choice again. ``None`` removes a section.
        """
        data = copy.deepcopy(self._data)
        if section == "schema_version":
            raise BundleError("schema_version is set by the editor, not by callers")
        if section == "default_artifact":
            facts = data.setdefault("facts", {})
            if value is None:
                facts.pop("default_artifact", None)
            else:
                facts["default_artifact"] = {"artifact": value, "note": DEFAULT_NOTE}
        elif value is None:
            data.pop(section, None)
        else:
            data[section] = copy.deepcopy(value)
        self._apply(data)


_open_here = threading.local()


@contextmanager
def _bundle_lock(root: Path) -> Iterator[None]:
    """Serialise editors of one bundle across threads and processes (flock on the directory; no lock file).

    Opening a second editor on the same bundle inside the first (same thread) would either deadlock or
    lose the outer block's changes, so it is refused with a message instead.
    """
    key = str(root.resolve())
    held: set[str] = getattr(_open_here, "roots", set())
    if key in held:
        raise BundleError(f"{root}: edit_manifest is already open for this bundle; make the change on that draft")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: single writer assumed
        fcntl = None  # type: ignore[assignment]
    fd = os.open(root, os.O_RDONLY)
    held.add(key)
    _open_here.roots = held
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        held.discard(key)
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def edit_manifest(bundle_dir: str | os.PathLike[str]) -> Iterator[ManifestDraft]:
    """Load bundle.json once, yield a draft, write it atomically once when the block succeeds.

    A schema-1 manifest is written back as schema 2. Nothing is written if the block raises; two
    editors of the same bundle (threads or processes) take turns instead of losing each other's changes.
    """
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    with _bundle_lock(root):
        path = root / MANIFEST
        draft = ManifestDraft(root, Manifest.from_dict(read_json(path), source=path))
        yield draft
        atomic_write_json(path, draft.manifest.to_dict())
