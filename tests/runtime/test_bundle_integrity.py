"""Bundles that lie: labels reordered with their sha256 "fixed", files reached through links out of the folder.

Uses a copy of the shipped bundle (its ONNX files carry the class names in ``metadata_props``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.runtime import BundleError, Classifier, check_bundle, load_manifest
from fashion.runtime.bundle import onnx_metadata, record_file
from fashion.runtime.cli import main


@pytest.fixture
def bundle(shipped_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(shipped_bundle, tmp_path / "bundle"))


def test_the_onnx_files_carry_the_labels(shipped_bundle):
    labels = json.loads((shipped_bundle / "labels.json").read_text())
    assert json.loads(onnx_metadata(shipped_bundle / "model_fp32.onnx")["labels"]) == labels
    assert json.loads(onnx_metadata(shipped_bundle / "model_int8.onnx")["labels"]) == labels


def test_a_relabelled_bundle_is_refused_by_check_and_load(bundle, sample_dir):
    """Reversed articleType names with a recomputed sha256 passed --check and named shorts 'Face Moisturisers'."""
    labels = json.loads((bundle / "labels.json").read_text())
    labels["articleType"].reverse()
    (bundle / "labels.json").write_text(json.dumps(labels))
    record_file(bundle, "labels.json")  # the sha256 "fixed"
    problems = check_bundle(bundle)
    assert len(problems) == 2 and all("other 'articleType' labels than labels.json" in p for p in problems)
    assert "class 0 is 'Accessory Gift Set' in the model" in problems[0]
    with pytest.raises(BundleError, match="other 'articleType' labels"):
        Classifier.load(bundle, precision="fp32")
    with pytest.raises(BundleError, match="other 'articleType' labels"):
        load_manifest(bundle)
    result = CliRunner().invoke(main, ["--check", str(bundle)])
    assert result.exit_code == 2 and "other 'articleType' labels" in result.stderr
    result = CliRunner().invoke(main, [str(bundle), str(next((sample_dir / "images").glob("*.jpg")))])
    assert result.exit_code == 2 and result.stdout == ""


def test_one_rule_for_files_outside_the_bundle(bundle, tmp_path):
    """A link out of the folder loaded and passed --check while '../' was refused: now both are refused."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (bundle / "model_fp32.onnx").rename(outside / "model_fp32.onnx")
    (bundle / "model_fp32.onnx").symlink_to(outside / "model_fp32.onnx")
    problems = check_bundle(bundle)
    assert any("model_fp32.onnx: a symbolic link to" in p and "outside the bundle" in p for p in problems)
    with pytest.raises(BundleError, match="outside the bundle"):
        Classifier.load(bundle, precision="fp32")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["artifacts"]["onnx_fp32"]["file"] = "../elsewhere/model_fp32.onnx"
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="inside the bundle"):
        Classifier.load(bundle, precision="fp32")


def test_links_inside_the_bundle_are_fine(bundle):
    (bundle / "models").mkdir()
    (bundle / "model_fp32.onnx").rename(bundle / "models" / "model_fp32.onnx")
    (bundle / "model_fp32.onnx").symlink_to(Path("models") / "model_fp32.onnx")
    assert check_bundle(bundle) == []
    with Classifier.load(bundle, precision="fp32") as clf:
        assert clf.artifact == "onnx_fp32"
