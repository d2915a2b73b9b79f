"""The bundle manifest (bundle.json), typed: parsed and validated once, edited through one editor.

One job per module:

* ``schema.py``: the frozen dataclasses ``Manifest`` and ``ArtifactEntry`` and their validation, with
  messages that name the field; ``sections.py``: the small sections (``InputSpec``, ``PreprocessSpec``,
  ``Timing``, ``SplitRecord``) and the field checks;
* ``migration.py``: schema 1 -> 2 and the portable training record (no machine paths);
* ``editor.py``: ``read_manifest`` and the one editor, ``edit_manifest`` (lock, validate, one atomic write);
* ``files.py``: sha256 of a file, atomic writes, JSON reads.

Writers never touch bundle.json directly; they use the one editor, which loads the manifest once,
lets the block change it, validates the result and writes it atomically once (nothing is written
when the block raises)::

    with edit_manifest(bundle_dir) as draft:
        draft.put_artifact("onnx_fp32", {"file": "model_fp32.onnx", "format": "onnx", ...})
        draft.put_metrics("test", scores)
"""

from .editor import ManifestDraft, edit_manifest, read_manifest
from .files import MANIFEST, atomic_write_bytes, atomic_write_json, read_json, sha256_file
from .migration import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMAS,
    absolute_paths,
    describe_data,
    describe_weights,
    migrate,
    portable_path,
    portable_training,
)
from .schema import ArtifactEntry, InputSpec, Manifest, PreprocessSpec, SplitRecord, Timing

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMAS",
    "ArtifactEntry",
    "InputSpec",
    "Manifest",
    "ManifestDraft",
    "PreprocessSpec",
    "SplitRecord",
    "Timing",
    "absolute_paths",
    "atomic_write_bytes",
    "atomic_write_json",
    "describe_data",
    "describe_weights",
    "edit_manifest",
    "migrate",
    "portable_path",
    "portable_training",
    "read_json",
    "read_manifest",
    "sha256_file",
]
