"""The model's arithmetic, counted from its ONNX graph, and the latency floor it implies on this CPU.

MACs of Conv, ConvTranspose, MatMul and Gemm nodes at batch 1 (everything else in EfficientNet
(activations, squeeze-excite scaling, pooling) is a small fraction). Shapes are read by running the
graph once with every counted node's output exposed, so dynamic reshapes cannot hide a node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def count_macs(onnx_path: str | Path, height: int, width: int, channels: int = 3) -> dict:
    """{"macs", "flops" (2 x MACs), "by_op": {op: MACs}, "nodes"} for one NHWC image."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {init.name: tuple(init.dims) for init in graph.initializer}
    counted = [node for node in graph.node if node.op_type in COUNTED]
    existing = {output.name for output in graph.output}
    wanted = {
        name
        for node in counted
        for name in list(node.input) + [node.output[0]]
        if name and name not in initializers and name not in existing
    }
    for name in sorted(wanted):
        graph.output.append(onnx.helper.make_empty_tensor_value_info(name))

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed_input = session.get_inputs()[0]
    dtype = np.float16 if feed_input.type == "tensor(float16)" else np.float32
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {feed_input.name: np.full((1, height, width, channels), 128, dtype=dtype)})
    shapes = {**initializers, **{name: tuple(value.shape) for name, value in zip(names, values)}}

    by_op: dict[str, int] = {}
    for node in counted:
        out = shapes[node.output[0]]
        if node.op_type in ("Conv", "ConvTranspose"):
            kernel = shapes[node.input[1]]
            per_output = int(np.prod(kernel[1:]))  # (Cin / groups) x kh x kw
            macs = (
                int(np.prod(out)) * per_output
                if node.op_type == "Conv"
                else int(np.prod(shapes[node.input[0]])) * int(np.prod(kernel[1:]))
            )
        elif node.op_type == "Gemm":
            a = shapes[node.input[0]]
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            macs = int(np.prod(out)) * int(a[0] if trans_a else a[-1])
        else:  # MatMul
            macs = int(np.prod(out)) * int(shapes[node.input[0]][-1])
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    total = sum(by_op.values())
    return {
        "macs": total,
        "flops": 2 * total,
        "by_op": by_op,
        "nodes": len(counted),
        "input": [1, height, width, channels],
    }


def compute_floor(macs: int, peak_gflops: float | None) -> dict:
    """The batch-1 latency the arithmetic alone needs at the CPU's theoretical peak."""
    if not peak_gflops:
        return {"floor_ms": None}
    return {"floor_ms": 2.0 * macs / (peak_gflops * 1e9) * 1000.0, "peak_gflops": peak_gflops}
