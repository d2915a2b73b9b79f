"""The backend registry: built-ins, ``fashion.backends`` entry points found lazily, clear errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fashion.runtime.backends import available_backends, base, get_backend, refresh_backends, register_backend
from fashion.runtime.errors import EXIT_UNAVAILABLE, EXIT_USAGE, BackendUnavailableError, UnknownBackendError

PLUGIN = '''
import numpy as np
from fashion.runtime.backends import Backend


class DoublingBackend(Backend):
    """A real (if silly) backend: every head is the batch mean times two."""

    name = "doubling"
    providers = ["numpy"]

    @classmethod
    def open(cls, path, artifact, **options):
        return cls()

    def output_sizes(self):
        return {"only": 1}

    def infer(self, batch, feature_map=False):
        return {"only": batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) * 2}
'''


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An installed distribution (dist-info on sys.path) advertising backends through the entry-point group."""
    dist = tmp_path / "fashion_plugin_example-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fashion-plugin-example\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [fashion.backends]
        doubling = fashion_plugin_example:DoublingBackend
        needs_missing = fashion_plugin_example_missing_dependency:Backend
        not_a_backend = fashion_plugin_example:np
    """)
    )
    (tmp_path / "fashion_plugin_example.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh_backends()
    yield tmp_path
    sys.modules.pop("fashion_plugin_example", None)
    refresh_backends()


def test_builtins_are_listed_without_importing_them() -> None:
    assert {"onnxruntime", "tensorrt"} <= set(available_backends())
    assert get_backend("onnxruntime").__name__ == "OnnxRuntimeBackend"


def test_entry_point_plugin_is_discovered_and_runs(plugin_dist: Path) -> None:
    assert "doubling" in available_backends()
    assert "fashion_plugin_example" not in sys.modules  # listing imports nothing
    backend = get_backend("doubling").open(plugin_dist / "unused", {})
    out = backend.infer(np.full((2, 4, 4, 3), 3.0, dtype=np.float32))
    assert out["only"].tolist() == [[6.0], [6.0]]


def test_missing_packages_raise_backend_unavailable(plugin_dist: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="backend 'needs_missing' is not available here") as info:
        get_backend("needs_missing")
    assert info.value.exit_code == EXIT_UNAVAILABLE


def test_an_entry_point_that_is_not_a_backend_is_refused(plugin_dist: Path) -> None:
    with pytest.raises(UnknownBackendError, match="is not a Backend subclass"):
        get_backend("not_a_backend")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'nope' \(choose from .*onnxruntime") as info:
        get_backend("nope")
    assert isinstance(info.value, ValueError) and info.value.exit_code == EXIT_USAGE


def test_keras_without_the_train_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a runtime-only install sees: the module behind "keras" cannot be imported.
    monkeypatch.setitem(base._registered, "keras", "fashion_train_extra_not_installed.keras_backend:KerasBackend")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'fashion-edge\[train\]'"):
        get_backend("keras")


def test_register_backend_takes_precedence_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_registered", {})
    register_backend("onnx-again", "fashion.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend")
    assert get_backend("onnx-again") is get_backend("onnxruntime")
    with pytest.raises(ValueError, match="package.module:Class"):
        register_backend("bad", "no_colon_here")


def test_keras_backend_is_declared_as_an_entry_point_not_imported_by_the_runtime() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    group = pyproject["project"]["entry-points"]["fashion.backends"]
    assert group["keras"] == "fashion.train.keras_backend:KerasBackend"
    assert "keras" not in base.BUILTIN_BACKENDS and base.BACKEND_FOR_FORMAT["keras"] == "keras"
