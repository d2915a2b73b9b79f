"""The Triton model repository parses with Triton's own model-config schema and matches the ONNX graph."""

from __future__ import annotations

import json

import pytest

from fashion import HEADS
from tests.export.test_export import export_data, exported  # noqa: F401  (module fixtures: one tiny exported bundle)
from tests.export.triton_schema import parse_config


def test_repository_config_is_valid_triton_model_config(exported):  # noqa: F811 (fixture)
    import onnx

    root, repo, result = exported
    assert result.exit_code == 0, result.output
    models = sorted(p.name for p in repo.iterdir() if not p.name.startswith("."))
    # no TensorRT engine here, so no tensorrt_plan model; the bytes-in ensemble is tested in test_triton_ensemble.py
    assert models == ["export-test", "fashion_ensemble", "fashion_preprocess"]
    model_dir = repo / "export-test"
    config, schema = parse_config(model_dir / "config.pbtxt")

    assert config.name == "export-test" and config.backend == "onnxruntime"
    assert config.max_batch_size == 32
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds > 0
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    [image] = config.input
    assert image.name == "image" and image.data_type == schema.TYPE_FP32 and list(image.dims) == [32, 24, 3]

    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    onnx_dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim[1:]] for o in graph.output}
    by_name = {o.name: o for o in config.output}
    assert set(by_name) == set(HEADS) | {"feature_map"} == set(onnx_dims)
    labels = json.loads((root / "labels.json").read_text())
    for name, output in by_name.items():
        assert output.data_type == schema.TYPE_FP32 and list(output.dims) == onnx_dims[name]
        if name in HEADS:
            assert list(output.dims) == [len(labels[name])]
            assert (model_dir / output.label_filename).read_text().splitlines() == labels[name]
    assert (model_dir / "1" / "model.onnx").read_bytes() == (root / "model_fp32.onnx").read_bytes()


def test_tensorrt_plan_model_config_parses(tmp_path, exported):  # noqa: F811 (fixture)
    """A bundle with an engine entry gets a tensorrt_plan model (the plan bytes are copied as-is)."""
    import shutil

    from fashion.export.triton import write_repository
    from fashion.runtime.bundle import load_manifest, record_artifact

    root, _, _ = exported
    copy = tmp_path / "bundle"
    shutil.copytree(root, copy)
    (copy / "model_fp16.sm90.trt10.3.engine").write_bytes(b"engine bytes stand-in")
    record_artifact(
        copy,
        "tensorrt_fp16",
        "model_fp16.sm90.trt10.3.engine",
        format="tensorrt",
        precision="fp16",
        max_batch=16,
        compute_capability="9.0",
        tensorrt_version="10.3.0",
    )
    written = write_repository(load_manifest(copy), tmp_path / "repo", max_batch=32)
    assert [p.name for p in written] == [
        "export-test",
        "export-test_tensorrt_fp16",
        "fashion_preprocess",
        "fashion_ensemble",
    ]
    config, _ = parse_config(tmp_path / "repo" / "export-test_tensorrt_fp16" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 16
    assert (tmp_path / "repo" / "export-test_tensorrt_fp16" / "1" / "model.plan").is_file()


def test_a_broken_config_is_rejected_by_the_schema(tmp_path):
    from google.protobuf import text_format

    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nbackend: "onnxruntime"\nmax_batch: 8\n')  # the field is max_batch_size
    with pytest.raises(text_format.ParseError):
        parse_config(bad)
