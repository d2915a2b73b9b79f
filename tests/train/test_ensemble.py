"""Ensembles of trained bundles (fashion/train/ensemble.py, ``fashion-train ensemble``) on tiny real models."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from fashion import HEADS
from tests.export.test_export import make_keras_bundle

CLASSES = {head: 4 for head in HEADS}


def _tiny(seed: int, height: int = 32, width: int = 24):
    from fashion.train.model import build_model

    keras.utils.set_random_seed(seed)
    return build_model(CLASSES, height, width, backbone="tiny")


def test_ensemble_averages_the_members_and_keeps_the_first_members_feature_map(tmp_path):
    from fashion.layers import load_keras_model
    from fashion.train.ensemble import cam_part, ensemble_model
    from fashion.train.model import FEATURE_LAYER

    members = [_tiny(1), _tiny(2), _tiny(3)]
    model = ensemble_model(members)
    x = np.random.default_rng(0).uniform(0, 255, (5, 32, 24, 3)).astype(np.float32)
    alone = [m.predict(x, verbose=0) for m in members]
    got = model.predict(x, verbose=0)
    for head in HEADS:
        expected = np.mean([a[head] for a in alone], axis=0)
        np.testing.assert_allclose(got[head], expected, atol=1e-6)
        assert np.abs(alone[0][head] - alone[1][head]).max() > 1e-3, "the members differ: the mean is a real test"
    # the feature map and the head weights of the class-activation maps are member 0's
    features = keras.Model(model.input, model.get_layer(FEATURE_LAYER).output).predict(x, verbose=0)
    first = keras.Model(members[0].input, members[0].get_layer(FEATURE_LAYER).output).predict(x, verbose=0)
    np.testing.assert_allclose(features, first, atol=1e-6)
    for head in HEADS:
        for a, b in zip(cam_part(model).get_layer(head).get_weights(), members[0].get_layer(head).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert cam_part(members[1]) is members[1]
    # saved and loaded like any model (safe mode), same outputs
    model.save(tmp_path / "ensemble.keras")
    again = load_keras_model(tmp_path / "ensemble.keras").predict(x, verbose=0)
    for head in HEADS:
        np.testing.assert_allclose(again[head], got[head], atol=1e-6)


def test_a_flipped_member_contributes_the_mean_of_the_photo_and_its_mirror(tmp_path):
    from fashion.layers import load_keras_model
    from fashion.train.ensemble import ensemble_model

    members = [_tiny(1), _tiny(2)]
    model = ensemble_model(members, flip=[1])
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 24, 3)).astype(np.float32)
    mirrored = x[:, :, ::-1, :].copy()
    first, second, second_mirrored = (
        members[0].predict(x, verbose=0),
        members[1].predict(x, verbose=0),
        members[1].predict(mirrored, verbose=0),
    )
    got = model.predict(x, verbose=0)
    for head in HEADS:
        expected = (first[head] + (second[head] + second_mirrored[head]) / 2) / 2
        np.testing.assert_allclose(got[head], expected, atol=1e-6)
        assert np.abs(second[head] - second_mirrored[head]).max() > 1e-4, "the mirror changes the tiny model"
    one = model.predict(x[:1], verbose=0)  # batch 1 (the 2N batch inside is 2)
    np.testing.assert_allclose(one["gender"], got["gender"][:1], atol=1e-6)
    model.save(tmp_path / "flip.keras")
    again = load_keras_model(tmp_path / "flip.keras").predict(x, verbose=0)
    np.testing.assert_allclose(again["season"], got["season"], atol=1e-6)


def test_every_member_flipped_keeps_the_photos_own_feature_map():
    from fashion.train.ensemble import ensemble_model
    from fashion.train.model import FEATURE_LAYER

    members = [_tiny(1), _tiny(2)]
    model = ensemble_model(members, flip=[0, 1])
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 24, 3)).astype(np.float32)
    mirrored = x[:, :, ::-1, :].copy()
    views = [[m.predict(v, verbose=0) for v in (x, mirrored)] for m in members]
    got = model.predict(x, verbose=0)
    for head in HEADS:
        expected = np.mean([(a[head] + b[head]) / 2 for a, b in views], axis=0)
        np.testing.assert_allclose(got[head], expected, atol=1e-6)
    features = keras.Model(model.input, model.get_layer(FEATURE_LAYER).output).predict(x, verbose=0)
    own = keras.Model(members[0].input, members[0].get_layer(FEATURE_LAYER).output).predict(x, verbose=0)
    np.testing.assert_allclose(features, own, atol=1e-6)


def test_ensemble_refuses_what_cannot_be_averaged():
    from fashion.train.ensemble import ensemble_model
    from fashion.train.errors import TrainError

    with pytest.raises(TrainError, match="at least two"):
        ensemble_model([_tiny(1)])
    with pytest.raises(TrainError, match="same input size"):
        ensemble_model([_tiny(1), _tiny(2, 40, 32)])
    with pytest.raises(TrainError, match="ensemble already"):
        ensemble_model([ensemble_model([_tiny(1), _tiny(2)]), _tiny(3)])
    with pytest.raises(TrainError, match="not one of members"):
        ensemble_model([_tiny(1), _tiny(2)], flip=[2])


def test_cli_writes_an_ensemble_bundle_that_records_its_members(tmp_path, sample_dir):
    from fashion.runtime.bundle import load_manifest
    from fashion.train.bundle_io import load_keras_model
    from fashion.train.cli import main

    a = make_keras_bundle(tmp_path / "a", sample_dir, seed=1)
    b = make_keras_bundle(tmp_path / "b", sample_dir, seed=2)
    out = tmp_path / "both"
    result = CliRunner().invoke(main, ["ensemble", str(a), str(b), "--data", str(sample_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    manifest = json.loads((out / "bundle.json").read_text())
    training = manifest["training"]
    assert training["recipe"] == "ensemble"
    assert manifest["name"] == "both", "named after its folder (fashion-serve serves bundles by name)"
    sha = [json.loads((p / "bundle.json").read_text())["artifacts"]["keras"]["sha256"] for p in (a, b)]
    assert [m["name"] for m in training["members"]] == ["a", "b"]
    assert [m["keras"]["sha256"] for m in training["members"]] == sha
    assert manifest["metrics"]["val"]["heads"]["gender"]["n"] > 0
    load_manifest(out)
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 24, 3)).astype(np.float32)
    got = load_keras_model(out).predict(x, verbose=0)
    parts = [load_keras_model(p).predict(x, verbose=0) for p in (a, b)]
    for head in HEADS:
        np.testing.assert_allclose(got[head], (parts[0][head] + parts[1][head]) / 2, atol=1e-6)
    heads = np.load(out / "head_weights.npz")
    first = np.load(a / "head_weights.npz")
    for key in first.files:
        np.testing.assert_array_equal(heads[key], first[key])

    refused = CliRunner().invoke(main, ["ensemble", str(a), "--data", str(sample_dir), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "at least two" in refused.output


def test_an_ensemble_bundle_exports_through_the_gates(tmp_path, shared_data, monkeypatch):
    """fashion-export converts the two-member graph, the second with flip (FP32 and INT8, parity-gated), and the
    runtime serves it."""
    from fashion.export.cli import main as export
    from fashion.runtime import Classifier
    from fashion.train.cli import main
    from tests.export.test_export import FAST

    a = make_keras_bundle(tmp_path / "a", shared_data, seed=1)
    b = make_keras_bundle(tmp_path / "b", shared_data, seed=2)
    out = tmp_path / "both"
    result = CliRunner().invoke(
        main, ["ensemble", str(a), str(b), "--flip", "2", "--data", str(shared_data), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output[-3000:]
    assert [m["flip"] for m in json.loads((out / "bundle.json").read_text())["training"]["members"]] == [False, True]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # INT8 pre-processing leaves nothing in the working directory
    result = CliRunner().invoke(export, [str(out), "--int8", "--data", str(shared_data), "--max-drop", "100", *FAST])
    assert result.exit_code == 0, result.output[-3000:]
    artifacts = json.loads((out / "bundle.json").read_text())["artifacts"]
    assert {"onnx_fp32", "onnx_int8"} <= set(artifacts)
    assert not list(cwd.iterdir())
    photo = sorted((shared_data / "images").glob("*.jpg"))[0]
    prediction = Classifier.load(out, precision="fp32").predict(photo)
    assert set(prediction.heads) == set(HEADS)
