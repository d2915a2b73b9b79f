"""The typed manifest: ``Manifest`` and ``ArtifactEntry``, built from the small sections of ``sections.py``
(``InputSpec``, ``PreprocessSpec``, ``Timing``, ``SplitRecord``, re-exported here).

``Manifest.from_dict`` checks every field the runtime relies on and raises ``BundleError`` naming the
field (``bundle.json: input lacks 'height'``), so nothing downstream meets a KeyError or TypeError; it
migrates schema 1 first (``migration.py``). Readers use the attributes (``entry.format``,
``manifest.input.height``); ``to_dict()`` is the JSON form, for writing. Keys a section does not type
are kept in its ``extra`` so a newer writer's fields survive a round trip.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError
from .files import MANIFEST, sha256_file
from .migration import SCHEMA_VERSION, SUPPORTED_SCHEMAS, migrate, portable_training
from .sections import InputSpec, PreprocessSpec, SplitRecord, Timing, _optional_text, _Where

__all__ = ["ArtifactEntry", "InputSpec", "Manifest", "PreprocessSpec", "SplitRecord", "Timing"]

#: Top-level sections in the order they are written; anything else is kept after them.
_ORDER = (
    "schema_version",
    "name",
    "heads",
    "num_classes",
    "input",
    "preprocessing",
    "feature_layer",
    "training",
    "metrics",
    "split",
    "versions",
    "files",
    "artifacts",
    "facts",
    "pinned_artifact",
)


#: Keys of an artifact entry with a typed field; every other key is kept in ``ArtifactEntry.extra``.
_ARTIFACT_KEYS = (
    "file",
    "sha256",
    "bytes",
    "format",
    "precision",
    "input",
    "outputs",
    "feature_map",
    "accuracy",
    "timings",
)


@dataclass(frozen=True)
class ArtifactEntry:
    """One runnable file of the bundle and the facts recorded about it.

    ``sha256`` is required: the runtime verifies the file it runs, and an entry without a digest is
    refused at load rather than run unverified. ``timings`` are facts tagged with the machine they were
    measured on (``{cpu, flags, threads, batch, p50_ms, measured_at}``); they never select anything by
    themselves, the host that runs the model decides.
    """

    file: str
    sha256: str
    format: str
    bytes: int | None = None
    precision: str | None = None
    input: str | None = None
    outputs: dict[str, str] | None = None
    feature_map: str | None = None
    accuracy: dict[str, Any] | None = None
    timings: list[Timing] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Key order as read, so rewriting a manifest does not shuffle its entries.
    order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any, key: str = "?", where: _Where | None = None) -> ArtifactEntry:
        where = where or _Where("artifact entry")
        name = f"artifacts.{key}"
        entry = where.mapping(data, name)
        sha = entry.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise where.error(
                f"{name} has no sha256 (got {sha!r}); an artifact is never loaded unverified: "
                "re-record it with fashion-export"
            )
        outputs = entry.get("outputs")
        if outputs is not None and (
            not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values())
        ):
            raise where.error(f"{name}.outputs must map head names to output names, got {outputs!r}")
        size = entry.get("bytes")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise where.error(f"{name}.bytes must be a non-negative integer, got {size!r}")
        accuracy = entry.get("accuracy")
        if accuracy is not None and not isinstance(accuracy, dict):
            raise where.error(f"{name}.accuracy must be a JSON object, got {type(accuracy).__name__}")
        return cls(
            file=where.relative_file(where.require(entry, "file", name), f"{name}.file"),
            sha256=sha,
            format=where.text(where.require(entry, "format", name), f"{name}.format"),
            bytes=size,
            precision=_optional_text(entry.get("precision"), f"{name}.precision", where),
            input=_optional_text(entry.get("input"), f"{name}.input", where),
            outputs=dict(outputs) if outputs is not None else None,
            feature_map=_optional_text(entry.get("feature_map"), f"{name}.feature_map", where),
            accuracy=accuracy,
            timings=_timings(entry.get("timings", []), name, where),
            extra={k: v for k, v in entry.items() if k not in _ARTIFACT_KEYS},
            order=tuple(entry),
        )

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], fields: Mapping[str, Any]) -> ArtifactEntry:
        """The entry of a file not recorded in a manifest (a staged export candidate, a bare model.keras):
        ``fields`` plus its name and sha256, validated like a recorded entry, so it opens as the runtime would."""
        path = Path(path)
        data = {**fields, "file": path.name, "sha256": sha256_file(path)}
        return cls.from_dict(data, path.name, _Where(str(path)))

    def derived_from(self, key: str) -> str | None:
        """The sha256 of artifact ``key`` this one was built from (its recorded ``source``; "" when the digest is
        missing), or None when it was not built from ``key``."""
        source = self.extra.get("source")
        if isinstance(source, dict) and source.get("artifact") == key:
            return str(source.get("sha256") or "")
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "sha256": self.sha256}
        if self.bytes is not None:
            out["bytes"] = self.bytes
        out["format"] = self.format
        for key in ("precision", "input", "outputs", "feature_map"):
            if getattr(self, key) is not None:
                out[key] = copy.deepcopy(getattr(self, key))
        out.update(copy.deepcopy(self.extra))
        if self.accuracy is not None:
            out["accuracy"] = copy.deepcopy(self.accuracy)
        if self.timings:
            out["timings"] = [timing.to_dict() for timing in self.timings]
        first = {key: out[key] for key in self.order if key in out}
        return {**first, **{key: value for key, value in out.items() if key not in first}}


def _timings(value: Any, name: str, where: _Where) -> list[Timing]:
    if not isinstance(value, list):
        raise where.error(f"{name}.timings must be a list, got {type(value).__name__}")
    return [Timing.from_dict(timing, f"{name}.timings[{index}]", where) for index, timing in enumerate(value)]


@dataclass(frozen=True)
class Manifest:
    """A validated schema-2 manifest. Build it with :meth:`from_dict` (which also migrates schema 1)."""

    heads: list[str]
    input: InputSpec
    preprocessing: PreprocessSpec
    artifacts: dict[str, ArtifactEntry] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    name: str = ""
    num_classes: dict[str, int] | None = None
    feature_layer: str | None = None
    training: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    split: SplitRecord | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    #: Measured facts that are not a choice (e.g. ``default_artifact``: fastest where it was exported).
    facts: dict[str, Any] = field(default_factory=dict)
    #: An operator's explicit pin: run this artifact whatever the host (None: the host decides).
    pinned_artifact: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    #: The schema the JSON was written in (1 when it was migrated on read).
    source_schema: int = field(default=SCHEMA_VERSION, compare=False)

    # -- parsing ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, data: Any, source: str | os.PathLike[str] = MANIFEST, weights_dir: str | os.PathLike[str] | None = None
    ) -> Manifest:
        """Validate ``data`` (schema 1 or 2) and return the schema-2 manifest; BundleError names the field."""
        where = _Where(str(source))
        if not isinstance(data, dict):
            raise where.error(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMAS or isinstance(version, bool):
            raise where.error(
                f"schema_version {version!r} is not supported (expected one of "
                f"{', '.join(map(str, SUPPORTED_SCHEMAS))})"
            )
        data = migrate(data)  # schema 1 -> 2; on schema 2 it only moves a stray legacy default_artifact
        for key in ("heads", "input", "preprocessing"):
            where.require(data, key, "manifest")
        heads = _heads(data["heads"], where)
        artifacts = {
            str(key): ArtifactEntry.from_dict(entry, str(key), where)
            for key, entry in where.mapping(data.get("artifacts") or {}, "artifacts").items()
        }
        manifest = cls(
            heads=heads,
            input=InputSpec.from_dict(data["input"], where),
            preprocessing=PreprocessSpec.from_dict(data["preprocessing"], where),
            artifacts=artifacts,
            files=_files(data.get("files") or {}, where),
            name=str(data.get("name") or ""),
            num_classes=_num_classes(data.get("num_classes"), heads, where),
            feature_layer=_optional_text(data.get("feature_layer"), "feature_layer", where),
            training=portable_training(data["training"], weights_dir) if data.get("training") is not None else None,
            metrics=where.mapping(data.get("metrics") or {}, "metrics"),
            split=SplitRecord.from_dict(data["split"], where) if data.get("split") is not None else None,
            versions=where.mapping(data.get("versions") or {}, "versions"),
            facts=where.mapping(data.get("facts") or {}, "facts"),
            pinned_artifact=_optional_text(data.get("pinned_artifact"), "pinned_artifact", where),
            extra={k: v for k, v in data.items() if k not in _ORDER},
            source_schema=int(version),
        )
        manifest._check_references(where)
        return manifest

    def _check_references(self, where: _Where) -> None:
        """An artifact named anywhere in the manifest must exist: no silent fallback to another one."""
        known = ", ".join(self.artifacts) or "none"
        recorded = self.recorded_default
        if recorded is not None and recorded not in self.artifacts:
            raise where.error(f"facts.default_artifact names unknown artifact {recorded!r} (known: {known})")
        if self.pinned_artifact is not None and self.pinned_artifact not in self.artifacts:
            raise where.error(f"pinned_artifact names unknown artifact {self.pinned_artifact!r} (known: {known})")

    # -- reading ---------------------------------------------------------------------------------

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input.height, self.input.width

    @property
    def recorded_default(self) -> str | None:
        """The artifact the exporter found fastest on its own machine (a fact, not a choice), if recorded."""
        fact = self.facts.get("default_artifact")
        if isinstance(fact, dict):
            value = fact.get("artifact")
            return value if isinstance(value, str) else None
        return fact if isinstance(fact, str) else None

    @property
    def recorded_split_file(self) -> str | None:
        """The split file recorded at training (a name to resolve, see ``fashion.data.paths``), if any."""
        return self.split.file if self.split is not None else None

    def artifact(self, key: str) -> ArtifactEntry:
        """The entry for ``key``; BundleError listing the known keys otherwise."""
        if key not in self.artifacts:
            raise BundleError(f"{MANIFEST}: no artifact {key!r} (known: {', '.join(self.artifacts) or 'none'})")
        return self.artifacts[key]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to bundle.json (always schema 2)."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "name": self.name, "heads": list(self.heads)}
        if self.num_classes is not None:
            out["num_classes"] = dict(self.num_classes)
        out["input"] = self.input.to_dict()
        out["preprocessing"] = self.preprocessing.to_dict()
        if self.feature_layer is not None:
            out["feature_layer"] = self.feature_layer
        if self.training is not None:
            out["training"] = copy.deepcopy(self.training)
        out["metrics"] = copy.deepcopy(self.metrics)
        if self.split is not None:
            out["split"] = self.split.to_dict()
        out["versions"] = copy.deepcopy(self.versions)
        out["files"] = dict(self.files)
        out["artifacts"] = {key: entry.to_dict() for key, entry in self.artifacts.items()}
        if self.facts:
            out["facts"] = copy.deepcopy(self.facts)
        if self.pinned_artifact is not None:
            out["pinned_artifact"] = self.pinned_artifact
        out.update(copy.deepcopy(self.extra))
        return out


def _heads(value: Any, where: _Where) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(h, str) and h for h in value):
        raise where.error(f"heads must be a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise where.error(f"heads has duplicates: {value!r}")
    return list(value)


def _files(value: Any, where: _Where) -> dict[str, str]:
    files = where.mapping(value, "files")
    for name, digest in files.items():
        where.relative_file(name, "files entry")
        if not isinstance(digest, str) or len(digest) != 64:
            raise where.error(f"files.{name} must be a sha256 hex digest, got {digest!r}")
    return dict(files)


def _num_classes(value: Any, heads: list[str], where: _Where) -> dict[str, int] | None:
    if value is None:
        return None
    counts = where.mapping(value, "num_classes")
    if sorted(counts) != sorted(heads):
        raise where.error(f"num_classes heads {sorted(counts)} do not match heads {sorted(heads)}")
    return {head: where.positive_int(counts[head], f"num_classes.{head}") for head in heads}
