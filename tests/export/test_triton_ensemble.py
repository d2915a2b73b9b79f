"""The bytes-in part of the Triton repository: fashion_preprocess (Python backend) and fashion_ensemble.

Configs are parsed with Triton's own model-config schema (tritonclient's model_config_pb2); the generated
model.py runs against a stand-in of the Python backend's utility module on real photos and must give the
runtime's exact tensor, and its own error for a bad image while the other requests succeed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from fashion.export.triton import ENSEMBLE_MODEL, PREPROCESS_MODEL, write_repository
from fashion.runtime import Classifier
from fashion.runtime.bundle import load_manifest
from tests.export.triton_schema import parse_config


@pytest.fixture(scope="module")
def repo(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton")
    written = write_repository(load_manifest(tiny_bundle), out, 8)
    assert {p.name for p in written} >= {PREPROCESS_MODEL, ENSEMBLE_MODEL}
    return out


def test_preprocess_and_ensemble_configs_parse_with_tritons_schema(repo, tiny_bundle):
    bundle = load_manifest(tiny_bundle)
    height, width = bundle.input_size
    pre, schema = parse_config(repo / PREPROCESS_MODEL / "config.pbtxt")
    assert pre.backend == "python" and pre.max_batch_size == 8 and pre.HasField("dynamic_batching")
    assert [(i.name, i.data_type) for i in pre.input] == [("image_bytes", schema.TYPE_STRING)]
    assert list(pre.output[0].dims) == [height, width, 3] and pre.output[0].data_type == schema.TYPE_FP32
    assert json.loads(pre.parameters["preprocessing"].string_value) is not None
    assert (repo / PREPROCESS_MODEL / "1" / "model.py").is_file()

    ens, _ = parse_config(repo / ENSEMBLE_MODEL / "config.pbtxt")
    model_name = next(p.name for p in repo.iterdir() if (p / "1" / "model.onnx").is_file())
    onnx_model, _ = parse_config(repo / model_name / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [PREPROCESS_MODEL, model_name]
    assert onnx_model.HasField("dynamic_batching")  # the models inside the ensemble batch
    # every ensemble output is a head, fed by the ONNX model's output of that head, with its dims
    by_name = {o.name: list(o.dims) for o in onnx_model.output}
    step = ens.ensemble_scheduling.step[1]
    assert {o.name for o in ens.output} == set(bundle.heads) == set(step.output_map.values())
    for model_out, head in step.output_map.items():
        assert by_name[model_out] == [len(bundle.labels[head])]
    assert dict(step.input_map) == {"image": "preprocessed_image"}


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self):
        return self.array


class _Response:
    def __init__(self, output_tensors=None, error=None):
        self.output_tensors, self.error = output_tensors, error


def _fake_backend_utils() -> types.ModuleType:
    """The few names of triton_python_backend_utils that model.py uses, with the same behaviour."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor
    module.InferenceResponse = _Response
    module.TritonError = lambda message: message
    module.get_input_tensor_by_name = lambda request, name: request[name]
    return module


def test_generated_model_py_preprocesses_like_the_runtime(repo, tiny_bundle, sample_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_backend_utils())
    spec = importlib.util.spec_from_file_location(
        "fashion_preprocess_model", repo / PREPROCESS_MODEL / "1" / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    parsed, _ = parse_config(repo / PREPROCESS_MODEL / "config.pbtxt")
    model.initialize(
        {
            "model_config": json.dumps(
                {"parameters": {key: {"string_value": value.string_value} for key, value in parsed.parameters.items()}}
            )
        }
    )
    photos = [p.read_bytes() for p in sorted((sample_dir / "images").iterdir())[:3]]
    requests = [
        {"image_bytes": _Tensor("image_bytes", np.array([[photos[0]], [photos[1]]], dtype=object))},
        {"image_bytes": _Tensor("image_bytes", np.array([[b"broken"]], dtype=object))},
        {"image_bytes": _Tensor("image_bytes", np.array([[photos[2]]], dtype=object))},
    ]
    first, bad, last = model.execute(requests)
    assert "not a recognised image format" in bad.error and bad.output_tensors is None
    with Classifier.load(tiny_bundle) as clf:
        expected = np.stack([clf.preprocess(p) for p in photos]).astype(np.float32)
    np.testing.assert_array_equal(first.output_tensors[0].as_numpy(), expected[:2])
    np.testing.assert_array_equal(last.output_tensors[0].as_numpy(), expected[2:])
