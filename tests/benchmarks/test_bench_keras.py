"""The Keras row of fashion-bench, opened through the ``keras`` backend, with a tiny real Keras model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from fashion import HEADS  # noqa: E402
from fashion.benchmarks.cli import main  # noqa: E402
from fashion.benchmarks.rows import ROWS, open_runner  # noqa: E402
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


def test_keras_row_runs_the_model_through_the_keras_backend(keras_bundle):
    root, model = keras_bundle
    batch = np.random.default_rng(0).uniform(0, 255, (5, *model.input_shape[1:])).astype(np.float32)
    expected = {head: np.asarray(value) for head, value in model(batch, training=False).items()}
    runner = open_runner(ROWS["keras"], load_manifest(root), threads=1)
    try:
        assert type(runner.backend).__name__ == "KerasBackend"
        outputs = runner.infer(batch)
        assert set(outputs) >= set(HEADS)
        for head in HEADS:
            np.testing.assert_allclose(outputs[head], expected[head], rtol=1e-5, atol=1e-6)
        single = runner.infer(batch[:1])  # any batch size after the first
        np.testing.assert_allclose(single["gender"], expected["gender"][:1], rtol=1e-5, atol=1e-6)
    finally:
        runner.close()


def test_bench_runs_the_keras_row_and_computes_speedups(keras_bundle, sample_dir, tmp_path):
    root, _ = keras_bundle
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            str(root),
            "--data",
            str(sample_dir),
            "--limit",
            "48",
            "--iters",
            "5",
            "--warmup",
            "1",
            "--batch-sizes",
            "1,8",
            "--threads",
            "1",
            "--quiet",
            "--backends",
            "keras,onnx-fp32",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    for name in ("keras", "onnx-fp32"):
        assert rows[name]["status"] == "ok", rows[name].get("reason")
        assert rows[name]["info"]["threads"] == 1
        assert all(0 <= rows[name]["accuracy"][h]["accuracy"] <= 1 for h in HEADS)
    assert rows["keras"]["info"]["backend"].startswith("keras: keras ")
    assert rows["keras"]["speedup_vs_keras"]["p50"] == pytest.approx(1.0)
    speedup = rows["onnx-fp32"]["speedup_vs_keras"]["p50"]
    assert speedup == pytest.approx(rows["keras"]["latency_ms"]["p50"] / rows["onnx-fp32"]["latency_ms"]["p50"])
    assert rows["keras"]["cold_start_s"] > rows["onnx-fp32"]["cold_start_s"]  # TensorFlow's import counts
    # agreement columns come from fashion.metrics.compare_outputs: the reference agrees with itself exactly
    fp32 = rows["onnx-fp32"]["vs_fp32"]
    assert fp32["reference"] == "onnx-fp32"
    assert all(v == 1.0 for v in fp32["top1_agreement"].values()) and all(
        v == 0.0 for v in fp32["max_abs_diff"].values()
    )
    keras_vs = rows["keras"]["vs_fp32"]  # two different untrained models: real, finite differences
    assert set(keras_vs["max_abs_diff"]) == set(HEADS)
    assert all(0.0 <= v <= 1.0 for v in keras_vs["top1_agreement"].values())
