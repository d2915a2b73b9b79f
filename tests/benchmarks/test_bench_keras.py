"""The Keras rows of fashion-bench, with a tiny real Keras model (TensorFlow required)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from fashion import HEADS  # noqa: E402
from fashion.benchmarks.cli import main  # noqa: E402
from fashion.benchmarks.keras_row import KerasCallRunner, KerasPredictRunner  # noqa: E402
from fashion.runtime.bundle import load_manifest, record_artifact  # noqa: E402
from fashion.train.model import build_model  # noqa: E402


@pytest.fixture(scope="module")
def keras_bundle(tiny_bundle, tmp_path_factory):
    """The tiny ONNX bundle plus a tiny Keras model with the same heads and input size."""
    root = tmp_path_factory.mktemp("keras_bundle") / "bundle"
    shutil.copytree(tiny_bundle, root)
    bundle = load_manifest(root)
    model = build_model({h: len(bundle.labels[h]) for h in HEADS}, *bundle.input_size, backbone="tiny")
    model.save(root / "model.keras")
    record_artifact(root, "keras", "model.keras", format="keras", precision="fp32")
    return root, model


def test_compiled_call_and_predict_match_the_model(keras_bundle):
    _, model = keras_bundle
    batch = np.random.default_rng(0).uniform(0, 255, (5, *model.input_shape[1:])).astype(np.float32)
    expected = {head: np.asarray(value) for head, value in model(batch, training=False).items()}
    for runner in (KerasCallRunner(model, list(HEADS)), KerasPredictRunner(model, list(HEADS))):
        outputs = runner.infer(batch)
        assert set(outputs) == set(HEADS)
        for head in HEADS:
            np.testing.assert_allclose(outputs[head], expected[head], rtol=1e-5, atol=1e-6)
        single = runner.infer(batch[:1])  # the compiled call is traced once for any batch size
        np.testing.assert_allclose(single["gender"], expected["gender"][:1], rtol=1e-5, atol=1e-6)


def test_bench_runs_keras_rows_and_computes_speedups(keras_bundle, sample_dir, tmp_path):
    root, _ = keras_bundle
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, [str(root), "--data", str(sample_dir), "--limit", "48", "--iters", "5",
                                       "--warmup", "1", "--batch-sizes", "1,8", "--threads", "1", "--quiet",
                                       "--backends", "keras,keras-predict,onnx-fp32", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    for name in ("keras", "keras-predict", "onnx-fp32"):
        assert rows[name]["status"] == "ok", rows[name].get("reason")
        assert rows[name]["info"]["threads"] == 1
        assert all(0 <= rows[name]["accuracy"][h]["accuracy"] <= 1 for h in HEADS)
    assert "compiled call" in rows["keras"]["info"]["backend"]
    assert "model.predict" in rows["keras-predict"]["info"]["backend"]
    assert rows["keras"]["speedup_vs_keras"]["p50"] == pytest.approx(1.0)
    speedup = rows["onnx-fp32"]["speedup_vs_keras"]["p50"]
    assert speedup == pytest.approx(rows["keras"]["latency_ms"]["p50"] / rows["onnx-fp32"]["latency_ms"]["p50"])
    # both Keras paths run the same weights: identical predictions
    assert rows["keras-predict"]["accuracy"] == rows["keras"]["accuracy"]
    assert rows["keras"]["cold_start_s"] > rows["onnx-fp32"]["cold_start_s"]  # TensorFlow's import counts
