"""Bundle integrity: a wrong, truncated or mismatched file is refused with a message naming it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fashion import HEADS
from fashion.runtime import BundleError, Classifier
from fashion.runtime.bundle import atomic_write_json, check_bundle, record_artifact, record_file


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle that a test may damage."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def rewrite_manifest(bundle, change):
    manifest = json.loads((bundle / "bundle.json").read_text())
    change(manifest)
    atomic_write_json(bundle / "bundle.json", manifest)


def test_valid_bundle_loads(bundle):
    with Classifier.load(bundle) as clf:
        assert clf.heads == ["gender", "masterCategory", "subCategory", "articleType", "baseColour", "season"]


def test_unsupported_schema_version(bundle):
    rewrite_manifest(bundle, lambda m: m.update(schema_version=3))
    with pytest.raises(BundleError, match=r"bundle\.json: schema_version 3 is not supported"):
        Classifier.load(bundle)


def test_artifact_without_sha256_is_refused_not_loaded_unverified(bundle):
    rewrite_manifest(bundle, lambda m: m["artifacts"]["onnx_fp32"].pop("sha256"))
    with pytest.raises(BundleError, match=r"artifacts\.onnx_fp32 has no sha256"):
        Classifier.load(bundle)


def test_unknown_recorded_default_is_refused_listing_known_keys(bundle):
    rewrite_manifest(bundle, lambda m: m.update(schema_version=1, default_artifact="onnx_int9"))
    with pytest.raises(BundleError, match=r"unknown artifact 'onnx_int9' \(known: onnx_fp32\)"):
        Classifier.load(bundle)


def test_labels_head_that_is_not_a_list_is_a_bundle_error(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    labels["gender"] = {"Men": 0}
    atomic_write_json(bundle / "labels.json", labels)
    record_file(bundle, "labels.json")
    with pytest.raises(BundleError, match=r"labels\.json: 'gender' must be a list of class names, got dict"):
        Classifier.load(bundle)


def test_num_classes_must_match_the_vocabularies(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    rewrite_manifest(bundle, lambda m: m.update(num_classes={h: len(v) + (h == "season") for h, v in labels.items()}))
    with pytest.raises(BundleError, match=r"'season' lists \d+ classes but bundle\.json num_classes says"):
        Classifier.load(bundle)


def test_malformed_hierarchy_is_a_bundle_error(bundle):
    atomic_write_json(bundle / "hierarchy.json", [["Apparel", "Topwear"]])
    record_file(bundle, "hierarchy.json")
    with pytest.raises(BundleError, match=r"hierarchy\.json: expected a list of"):
        Classifier.load(bundle)


def test_manifest_not_json(bundle):
    (bundle / "bundle.json").write_text('{"schema_version": 1, "heads": [')
    with pytest.raises(BundleError, match=r"bundle\.json: not valid JSON"):
        Classifier.load(bundle)


def test_missing_bundle_directory(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        Classifier.load(tmp_path / "nowhere")


def test_truncated_model_is_refused_by_sha256(bundle):
    model = bundle / "model_fp32.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: sha256 does not match"):
        Classifier.load(bundle)


def test_truncated_model_with_rewritten_hash_is_refused_by_onnxruntime(bundle):
    model = bundle / "model_fp32.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    entry = json.loads((bundle / "bundle.json").read_text())["artifacts"]["onnx_fp32"]
    meta = {k: v for k, v in entry.items() if k not in ("sha256", "bytes")}
    record_artifact(bundle, "onnx_fp32", **meta)  # someone "fixed" the hash
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: onnxruntime cannot load this model"):
        Classifier.load(bundle)


def test_missing_model_file(bundle):
    (bundle / "model_fp32.onnx").unlink()
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: listed in bundle\.json but missing"):
        Classifier.load(bundle)


def test_changed_labels_file_is_refused_by_sha256(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    labels["gender"].reverse()
    (bundle / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(BundleError, match=r"labels\.json: sha256 does not match"):
        Classifier.load(bundle)


def test_vocabulary_size_must_match_the_model_output(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    labels["articleType"] = labels["articleType"][:-1]
    atomic_write_json(bundle / "labels.json", labels)
    record_file(bundle, "labels.json")
    with pytest.raises(
        BundleError, match=r"model_fp32\.onnx: head 'articleType' outputs \d+ classes but labels\.json lists \d+"
    ):
        Classifier.load(bundle)


def test_labels_must_cover_the_heads(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    del labels["season"]
    atomic_write_json(bundle / "labels.json", labels)
    record_file(bundle, "labels.json")
    with pytest.raises(BundleError, match=r"labels\.json: heads .* do not match bundle\.json heads"):
        Classifier.load(bundle)


def test_output_names_must_exist_in_the_model(bundle):
    def rename(manifest):
        manifest["artifacts"]["onnx_fp32"]["outputs"]["gender"] = "Identity:0"

    rewrite_manifest(bundle, rename)
    with pytest.raises(
        BundleError, match=r"model_fp32\.onnx: manifest outputs \{'gender': 'Identity:0'\} are not outputs"
    ):
        Classifier.load(bundle)


def test_a_head_without_an_output_is_refused(bundle):
    rewrite_manifest(bundle, lambda m: m["artifacts"]["onnx_fp32"]["outputs"].pop("season"))
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: model has no output for head 'season'"):
        Classifier.load(bundle)


def test_swapped_output_names_are_caught_by_vocabulary_sizes(bundle):
    # Matching by position (or a wrong map) pairs heads with the wrong outputs; sizes expose it.
    def swap(manifest):
        outputs = manifest["artifacts"]["onnx_fp32"]["outputs"]
        outputs["gender"], outputs["articleType"] = outputs["articleType"], outputs["gender"]

    rewrite_manifest(bundle, swap)
    with pytest.raises(BundleError, match="head 'gender' outputs .* classes but labels.json lists"):
        Classifier.load(bundle)


def test_head_weights_with_the_wrong_shape_are_refused_by_cam(bundle, sample_dir):
    with np.load(bundle / "head_weights.npz", allow_pickle=False) as data:
        weights = {name: data[name] for name in data.files}
    weights["articleType/kernel"] = weights["articleType/kernel"][:, :-1]
    np.savez(bundle / "head_weights.npz", **weights)
    record_file(bundle, "head_weights.npz")
    photo = next((sample_dir / "images").glob("*.jpg"))
    with Classifier.load(bundle) as clf:
        clf.predict(photo)  # predictions do not need the head weights
        with pytest.raises(BundleError, match=r"head_weights\.npz: 'articleType/kernel' is missing or has shape"):
            clf.cam(photo)


def test_unverified_other_artifacts_do_not_slow_or_block_loading(bundle):
    # An extra artifact that is broken does not stop the one that is used; it is refused when chosen.
    (bundle / "model_int8.onnx").write_bytes(b"not a model")
    rewrite_manifest(
        bundle,
        lambda m: m["artifacts"].update(
            onnx_int8={
                "file": "model_int8.onnx",
                "sha256": "0" * 64,
                "format": "onnx",
                "precision": "int8",
                "outputs": m["artifacts"]["onnx_fp32"]["outputs"],
            }
        ),
    )
    with Classifier.load(bundle, precision="fp32") as clf:
        assert clf.info["artifact"] == "onnx_fp32"
    with pytest.raises(BundleError, match=r"model_int8\.onnx: sha256 does not match"):
        Classifier.load(bundle, precision="int8")


def test_consistent_decoding_without_a_hierarchy_is_an_error_not_a_no_op(bundle, sample_dir):
    (bundle / "hierarchy.json").unlink()
    rewrite_manifest(bundle, lambda m: m["files"].pop("hierarchy.json"))
    photo = next((sample_dir / "images").glob("*.jpg"))
    with Classifier.load(bundle, precision="fp32") as clf:
        assert clf.predict(photo).consistent is False
        with pytest.raises(BundleError, match=r"consistent decoding needs hierarchy\.json"):
            clf.predict(photo, consistent=True)
        with pytest.raises(BundleError, match=r"consistent decoding needs hierarchy\.json"):
            clf.predict_batch([photo], consistent=True)


# -- check_bundle: every problem listed, not just the first ---------------------------------------------------


def test_check_bundle_passes_the_tiny_and_the_shipped_bundle(tiny_bundle, shipped_bundle):
    assert check_bundle(tiny_bundle) == []
    assert check_bundle(shipped_bundle) == []


def test_check_bundle_lists_every_problem(bundle):
    model = bundle / "model_fp32.onnx"
    model.write_bytes(model.read_bytes() + b"\0")  # changed file
    (bundle / "head_weights.npz").unlink()  # missing file
    labels = json.loads((bundle / "labels.json").read_text())
    labels["season"] = labels["season"][:-1]
    atomic_write_json(bundle / "labels.json", labels)  # vocabulary no longer matches, digest not re-recorded

    def damage(manifest):
        manifest["training"]["weights"] = "/home/someone/weights.h5"
        manifest["files"].pop("hierarchy.json")

    rewrite_manifest(bundle, damage)
    problems = check_bundle(bundle)
    text = "\n".join(problems)
    assert "training.weights: /home/someone/weights.h5 (an absolute machine path" in text
    assert "hierarchy.json: no sha256 recorded" in text
    assert "model_fp32.onnx: " in text and "records" in text  # size differs: not opened, one line
    assert "head_weights.npz: listed in bundle.json but missing" in text
    assert "labels.json: sha256 does not match" in text
    assert len(problems) == 5, problems


def test_check_bundle_reports_an_unreadable_manifest_and_an_unopenable_model(bundle, tmp_path):
    assert check_bundle(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: not a bundle directory"]
    model = bundle / "model_fp32.onnx"
    model.write_bytes(model.read_bytes()[:100])
    record_artifact(
        bundle,
        "onnx_fp32",
        "model_fp32.onnx",
        format="onnx",
        precision="fp32",
        outputs={h: h for h in HEADS},
        feature_map="feature_map",
    )
    problems = check_bundle(bundle)
    assert len(problems) == 1 and "artifact 'onnx_fp32' does not open" in problems[0]
    rewrite_manifest(bundle, lambda m: m["input"].pop("height"))
    assert check_bundle(bundle) == [f"{bundle / 'bundle.json'}: input lacks 'height'"]


def test_check_bundle_finds_hierarchy_rows_with_unknown_classes(bundle):
    rows = json.loads((bundle / "hierarchy.json").read_text()) + [["Apparel", "Topwear", "Spacesuits"]]
    atomic_write_json(bundle / "hierarchy.json", rows)
    record_file(bundle, "hierarchy.json")
    (problem,) = check_bundle(bundle)
    assert "hierarchy.json: 1 of" in problem and "Spacesuits" in problem


def test_check_bundle_compares_each_onnx_output_with_the_vocabularies(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    labels["season"] = labels["season"][:-1]
    atomic_write_json(bundle / "labels.json", labels)
    record_file(bundle, "labels.json")
    (problem,) = check_bundle(bundle)
    assert "artifact 'onnx_fp32' head 'season' outputs" in problem and "labels.json lists" in problem
