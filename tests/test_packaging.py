"""The package path is its import name: the wheel holds one ``fashion`` package and a plain checkout imports it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCE_FOLDERS = ("fashion",)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a clean copy of the sources so stale build/ output in the checkout cannot leak in."""
    tree = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, tree / name)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("fashion_edge-*.whl")
    return built


def test_wheel_has_one_fashion_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert packages == {"fashion"}, f"top-level entries besides fashion/: {sorted(packages)}"
    for module in (
        "fashion/__init__.py",
        "fashion/runtime/__init__.py",
        "fashion/runtime/preprocess.py",
        "fashion/runtime/py.typed",
        "fashion/data/dataset.py",
        "fashion/data/split.py",
        "fashion/train/pipeline.py",
        "fashion/data/eda_cli.py",
        "fashion/export/__init__.py",
        "fashion/data/images.py",
        "fashion/data/paths.py",
        "fashion/data/py.typed",
        "fashion/metrics/compare.py",
        "fashion/metrics/py.typed",
    ):
        assert module in names, f"{module} missing from the wheel"
    assert not any(n.startswith(("runtime/", "export/", "train/", "tests/", "demo/", "benchmarks/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "fashion-eda = fashion.data.eda_cli:main" in text


def test_unpacked_wheel_imports_the_runtime(wheel, tmp_path):
    """A normal (non-editable) install imports: load the runtime from the unpacked wheel alone."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "import fashion.runtime, fashion.data.split; print(fashion.runtime.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(tmp_path / "site")


def test_plain_checkout_imports_without_install(tmp_path):
    """No package-dir remapping: the folder tree alone on ``PYTHONPATH`` imports every layer's package."""
    shutil.copytree(ROOT / "fashion", tmp_path / "fashion", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    code = "import fashion.runtime, fashion.export, fashion.benchmarks, fashion.train; print(fashion.export.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(tmp_path / "fashion")


def test_no_package_dir_remapping():
    assert "package-dir" not in (ROOT / "pyproject.toml").read_text()
