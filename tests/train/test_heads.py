"""Head refinement (colour branch, hierarchy conditioning, logit adjustment) on a tiny real model and real images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from fashion import HEADS  # noqa: E402
from fashion.runtime.preprocess import preprocess, to_batch  # noqa: E402
from fashion.train import heads as refine_heads  # noqa: E402

SIZE = (32, 24)


@pytest.fixture(scope="module")
def sample_split(tmp_path_factory, sample_dir):
    ids = pd.read_csv(sample_dir / "styles.csv", usecols=["id"])["id"].sort_values().to_numpy()
    split = np.where(np.random.default_rng(0).random(len(ids)) < 0.8, "train", "val")
    path = tmp_path_factory.mktemp("split") / "split.csv"
    pd.DataFrame({"id": ids, "split": split}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def train_data(sample_dir, sample_split):
    from fashion.train.cli import build_train_data

    return build_train_data(str(sample_dir), str(sample_split))


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory, train_data, sample_split):
    """A tiny-backbone bundle whose heads learned a little (so the fine heads are not all equal)."""
    from fashion.train.bundle_io import write_bundle
    from fashion.train.model import build_model, compile_model

    keras.utils.set_random_seed(0)
    model = build_model(train_data.num_classes, *SIZE, backbone="tiny", dropout=0.0)
    compile_model(model, 3e-3)
    decoded = train_data.decoded("train", *SIZE)
    model.fit(decoded.images.astype(np.float32), decoded.labels, epochs=3, batch_size=32, verbose=0)
    out = tmp_path_factory.mktemp("tiny") / "bundle"
    write_bundle(out, model, train_data.vocabularies, train_data.hierarchy, {"recipe": "cpu"}, {}, sample_split)
    return out, model


def _features(model, train_data):
    return refine_heads.part_features(model, train_data.val, mirrored=False)


def test_every_variant_starts_from_the_bundles_own_fine_heads(tiny_trained, train_data):
    _, model = tiny_trained
    features = _features(model, train_data)
    for name, variant in refine_heads.VARIANTS.items():
        heads = refine_heads.heads_model(model, features.colour.shape[1], variant, refine_heads.HeadsConfig())
        probs = heads.predict(refine_heads._head_inputs(features, heads), verbose=0)
        for head in refine_heads.FINE_HEADS:
            kernel, bias = model.get_layer(head).get_weights()
            expected = refine_heads._softmax(features.pooled @ kernel + bias)
            np.testing.assert_allclose(np.asarray(probs[head]), expected, atol=1e-5, err_msg=f"{name}/{head}")


def test_residual_variants_keep_the_pooled_rows(tiny_trained, train_data):
    _, model = tiny_trained
    features = _features(model, train_data)
    variant = refine_heads.VARIANTS["colour+hierarchy-residual"]
    heads, _ = refine_heads.fit_variant(
        model, features, features, variant, refine_heads.HeadsConfig(epochs=2), train_data.num_classes
    )
    pooled = features.pooled.shape[1]
    for head in refine_heads.FINE_HEADS:
        kernel = heads.get_layer(head).get_weights()[0]
        np.testing.assert_array_equal(kernel[:pooled], model.get_layer(head).get_weights()[0])
        assert np.abs(kernel[pooled:]).max() > 0  # the new inputs learned


def test_mirrored_features_double_the_rows_with_the_same_colour(tiny_trained, train_data):
    _, model = tiny_trained
    features = refine_heads.part_features(model, train_data.train, mirrored=True)
    half = len(features.pooled) // 2
    np.testing.assert_array_equal(features.colour[:half], features.colour[half:])
    np.testing.assert_array_equal(features.labels["articleType"][:half], features.labels["articleType"][half:])
    assert not np.allclose(features.pooled[:half], features.pooled[half:])  # the trunk sees the mirror


def test_logit_adjustment_keeps_accuracy_within_the_allowance():
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=400, p=[0.6, 0.2, 0.1, 0.06, 0.04])
    logits = rng.normal(size=(400, 5)) + 2.5 * np.eye(5)[labels] + np.log([0.6, 0.2, 0.1, 0.06, 0.04])
    probs = refine_heads._softmax(logits)
    prior = refine_heads.log_prior(labels, 5)
    tau, scan = refine_heads.choose_tau(probs, labels, prior)
    assert str(tau) in scan and scan["0.0"]["accuracy"] - scan[str(tau)]["accuracy"] <= 0.002 + 1e-9
    assert scan[str(tau)]["macro_f1"] >= scan["0.0"]["macro_f1"]


def test_refined_bundle_keeps_the_coarse_heads_and_exports_with_parity(tiny_trained, train_data, sample_dir, tmp_path):
    from fashion.train.bundle_io import load_keras_model, write_bundle

    bundle, model = tiny_trained
    refined, report = refine_heads.refine(
        model, train_data, ["refit", "colour+hierarchy"], "colour+hierarchy", refine_heads.HeadsConfig(epochs=2)
    )
    assert report["shipped_variant"] == "colour+hierarchy"
    assert set(report["variants"]) == {"bundle", "refit", "colour+hierarchy"}
    assert "family_accuracy" in report["variants"]["refit"]["heads"]["baseColour"]
    json.dumps(report)  # the report is stored as JSON
    assert refined.get_layer("colour_statistics") is not None
    out = write_bundle(tmp_path / "refined", refined, train_data.vocabularies, train_data.hierarchy, {}, {}, None)
    again = load_keras_model(out)
    images = to_batch([preprocess(p, *SIZE) for p in sorted((sample_dir / "images").glob("*.jpg"))[:16]])
    before = model(images, training=False)
    after = again(images, training=False)
    for head in HEADS:
        if head not in refine_heads.FINE_HEADS:
            np.testing.assert_allclose(np.asarray(after[head]), np.asarray(before[head]), atol=1e-6)
    weights = np.load(out / "head_weights.npz", allow_pickle=False)
    features = int(model.get_layer("avg_pool").output.shape[-1])
    assert weights["articleType/kernel"].shape == (features, len(train_data.vocabularies["articleType"]))
    assert weights["baseColour/kernel"].shape == (features, len(train_data.vocabularies["baseColour"]))

    from fashion.export.pipeline import ExportOptions, run_export  # the product's export path, parity gate included

    result = run_export(out, ExportOptions(data_dir=sample_dir, timings=False, progress=False), log=lambda *a: None)
    assert "onnx_fp32" in result.written and not result.refused
    from fashion.runtime import Classifier

    with Classifier.load(out, backend="onnxruntime") as classifier:
        prediction = classifier.predict(sorted((sample_dir / "images").glob("*.jpg"))[0])
        assert set(prediction.heads) == set(HEADS)
        assert classifier.cam(sorted((sample_dir / "images").glob("*.jpg"))[0]).shape == SIZE


def test_refine_command_refuses_bad_options(tiny_trained, sample_dir, sample_split):
    from click.testing import CliRunner

    from fashion.train.cli import main

    bundle, _ = tiny_trained
    runner = CliRunner()
    common = ["refine", str(bundle), "--data", str(sample_dir), "--split-file", str(sample_split)]
    result = runner.invoke(main, [*common, "--out", str(bundle)])
    assert result.exit_code == 2 and "new bundle directory" in result.output
    result = runner.invoke(main, [*common, "--out", str(bundle) + "-x", "--variants", "refit,sparkles"])
    assert result.exit_code == 2 and "sparkles" in result.output


def test_refine_command_caches_features_and_can_ship_the_bundles_own_heads(
    tiny_trained, sample_dir, sample_split, tmp_path
):
    from click.testing import CliRunner

    from fashion.train.bundle_io import load_keras_model
    from fashion.train.cli import main

    bundle, model = tiny_trained
    args = ["refine", str(bundle), "--data", str(sample_dir), "--split-file", str(sample_split), "--epochs", "1"]
    args += ["--variants", "refit", "--cache-dir", str(tmp_path / "cache")]
    first = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--ship", "bundle"])
    assert first.exit_code == 0, first.output
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and all(name.endswith(("_train.npz", "_val.npz")) for name in cached)
    report = json.loads((tmp_path / "a.refine.json").read_text())
    assert report["shipped_variant"] == "bundle" and "logit_adjusted" in report["variants"]["bundle"]
    taus = report["logit_adjust_taus"]
    refined = load_keras_model(tmp_path / "a")
    for head in refine_heads.FINE_HEADS:
        kernel, bias = refined.get_layer(head).get_weights()
        np.testing.assert_array_equal(kernel, model.get_layer(head).get_weights()[0])
        assert taus[head] in refine_heads.LOGIT_ADJUST_TAUS
        assert (bias == model.get_layer(head).get_weights()[1]).all() == (taus[head] == 0.0)
    second = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached  # read back, not recomputed
