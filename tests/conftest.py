"""Shared fixtures: the committed sample, the shared data (skip when absent), a tiny real bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data" / "sample"
SHARED_DATA = Path(
    os.environ.get("FASHION_SHARED_DATA", ROOT.parent / "shared" / "datasets" / "fashion-product-images")
)
SPLIT_FILE = ROOT / "data" / "splits" / "fashion-product-images.csv"
SHIPPED_BUNDLE = ROOT / "models" / "fashion-effnetb0"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "styles.csv").is_file():
        pytest.skip("committed sample data/sample is missing")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "styles.csv").is_file():
        pytest.skip(f"shared dataset not found at {SHARED_DATA} (CI and developer machines have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shipped_bundle() -> Path:
    if not (SHIPPED_BUNDLE / "bundle.json").is_file():
        pytest.skip(f"no shipped bundle at {SHIPPED_BUNDLE}")
    return SHIPPED_BUNDLE


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, sample_dir) -> Path:
    """A tiny real ONNX bundle (no TensorFlow) with the shipped model's input/output contract."""
    from tests.fixtures.tiny_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle"), sample_dir)
