"""The exact graph rewrite applied at FP32 export: no-op Squeeze/Reshape of squeeze-excite blocks go, numbers stay."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fashion.export.graph import remove_noop_reshapes


def _se_block(channels: int = 8, reduced: int = 2, seed: int = 0) -> onnx.ModelProto:
    """A squeeze-excite block written the way tf2onnx writes it (NCHW inside, dynamic batch)."""
    rng = np.random.default_rng(seed)
    init = [
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, channels, 1, 1], np.int64), "shape_c"),
        numpy_helper.from_array(np.array([-1, reduced, 1, 1], np.int64), "shape_r"),
        numpy_helper.from_array(rng.normal(size=(reduced, channels, 1, 1)).astype(np.float32), "w_reduce"),
        numpy_helper.from_array(rng.normal(size=(channels, reduced, 1, 1)).astype(np.float32), "w_expand"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Squeeze", ["pooled", "axes"], ["squeezed"]),
        helper.make_node("Reshape", ["squeezed", "shape_c"], ["restored"]),
        helper.make_node("Conv", ["restored", "w_reduce"], ["reduced"]),
        helper.make_node("Sigmoid", ["reduced"], ["gate"]),
        helper.make_node("Mul", ["reduced", "gate"], ["silu"]),
        helper.make_node("Reshape", ["silu", "shape_r"], ["silu_again"]),  # identity reshape
        helper.make_node("Conv", ["silu_again", "w_expand"], ["expanded"]),
        helper.make_node("Sigmoid", ["expanded"], ["scale"]),
        helper.make_node("Mul", ["x", "scale"], ["y"]),
        helper.make_node("Reshape", ["y", "shape_flat"], ["flat"]),  # a real reshape: must stay
    ]
    init.append(numpy_helper.from_array(np.array([-1, channels * 4 * 3], np.int64), "shape_flat"))
    graph = helper.make_graph(
        nodes,
        "se",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, 4, 3])],
        [helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["batch", channels * 12])],
        init,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compare the graphs as written
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_removes_the_noop_pair_and_the_identity_reshape_and_keeps_the_numbers():
    model = _se_block()
    x = np.random.default_rng(1).normal(size=(5, 8, 4, 3)).astype(np.float32)
    before = _run(model, x)
    counts = remove_noop_reshapes(model)
    assert counts == {"identity_reshape": 1, "squeeze_reshape_pair": 1}
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert "Squeeze" not in ops and ops.count("Reshape") == 1  # only the real reshape is left
    assert {i.name for i in model.graph.initializer} == {"w_reduce", "w_expand", "shape_flat"}  # unused constants go
    np.testing.assert_array_equal(_run(model, x), before)  # exact


def test_a_squeeze_with_another_reader_is_kept():
    model = _se_block()
    model.graph.node.append(helper.make_node("Identity", ["squeezed"], ["also"]))
    model.graph.output.append(helper.make_tensor_value_info("also", TensorProto.FLOAT, ["batch", 8]))
    counts = remove_noop_reshapes(model)
    assert counts["squeeze_reshape_pair"] == 0 and counts["identity_reshape"] == 1
    onnx.checker.check_model(model, full_check=True)


def test_shipped_model_loses_every_se_noop_and_nothing_else(shipped_bundle):
    path = shipped_bundle / "model_fp32.onnx"
    if not path.is_file():
        pytest.skip("shipped bundle has no FP32 ONNX")
    model = onnx.load(str(path))
    counts = remove_noop_reshapes(model)
    if counts == {"identity_reshape": 0, "squeeze_reshape_pair": 0}:  # exported with the rewrite already applied
        from fashion.runtime.bundle import load_manifest

        recorded = load_manifest(shipped_bundle).artifacts["onnx_fp32"].extra["graph_rewrites"]
        assert recorded == {"identity_reshape": 16, "squeeze_reshape_pair": 16}
        ops = [node.op_type for node in model.graph.node]
        assert ops.count("Squeeze") == 1 and "Reshape" not in ops
        return
    assert counts == {"identity_reshape": 16, "squeeze_reshape_pair": 16}  # one of each per squeeze-excite block
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Squeeze") == 1 and "Reshape" not in ops  # the head's pooling squeeze stays
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 96, 3)).astype(np.float32)
    original = onnx.load(str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    names = [o.name for o in original.graph.output]
    a = ort.InferenceSession(original.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        names, {"image": x}
    )
    b = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        names, {"image": x}
    )
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
