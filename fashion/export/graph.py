"""Exact clean-ups of the graph tf2onnx writes, applied before the FP32 parity gate.

tf2onnx writes every squeeze-excite block of EfficientNet as

    GlobalAveragePool [N,C,1,1] -> Squeeze(axes 2,3) [N,C] -> Reshape([-1,C,1,1]) -> Conv (se_reduce)
    ... Mul [N,c,1,1] -> Reshape([-1,c,1,1]) -> Conv (se_expand)

Both reshapes give back the shape their input already had, so removing them (consumers read the
reshape's input instead) changes no number: the rewrite is exact, and the parity gate against
Keras still runs on the result. A reshape is removed only when its input's shape is known from
shape inference, the target is a constant, and every dimension but a leading -1 matches.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

#: Recorded on the FP32 entry so a re-export knows whether its graph came from this recipe.
RECIPE = "tf2onnx, no-op Squeeze/Reshape removed"


def _static_shapes(proto: Any) -> dict[str, list[int | str | None]]:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(proto)
    shapes: dict[str, list[int | str | None]] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    return shapes


def _constant(proto: Any, name: str) -> list[int] | None:
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name == name:
            return [int(v) for v in numpy_helper.to_array(init).reshape(-1)]
    return None


def _squeezed_axes(proto: Any, node: Any) -> list[int] | None:
    if len(node.input) > 1:
        return _constant(proto, node.input[1])
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    return None


def _restores(shape: list[int | str | None] | None, target: list[int] | None) -> bool:
    """True when Reshape(target) of a tensor of ``shape`` is that same shape (leading -1 = the batch)."""
    if shape is None or target is None or len(shape) != len(target) or not target:
        return False
    if target[0] != -1 and target[0] != shape[0]:
        return False
    return all(isinstance(dim, int) and dim > 0 and dim == want for dim, want in zip(shape[1:], target[1:]))


def remove_noop_reshapes(proto: Any) -> dict[str, int]:
    """Drop identity Reshapes and Squeeze->Reshape round trips in place; return how many of each went.

    Graph outputs are never rewired, so output names stay as the manifest records them.
    """
    shapes = _static_shapes(proto)
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {value.name for value in graph.output}
    rename: dict[str, str] = {}
    removed: list[Any] = []
    counts = {"identity_reshape": 0, "squeeze_reshape_pair": 0}
    for node in graph.node:
        if node.op_type != "Reshape" or node.output[0] in outputs:
            continue
        target = _constant(proto, node.input[1])
        source = node.input[0]
        if _restores(shapes.get(source), target):
            rename[node.output[0]] = source
            removed.append(node)
            counts["identity_reshape"] += 1
            continue
        squeeze = producers.get(source)
        if squeeze is None or squeeze.op_type != "Squeeze" or len(consumers[source]) != 1 or source in outputs:
            continue
        before = shapes.get(squeeze.input[0])
        axes = _squeezed_axes(proto, squeeze)
        if before is None or axes is None or any(before[a] != 1 for a in axes if -len(before) <= a < len(before)):
            continue
        if _restores(before, target):
            rename[node.output[0]] = squeeze.input[0]
            removed += [squeeze, node]
            counts["squeeze_reshape_pair"] += 1
    for node in removed:
        graph.node.remove(node)
    for node in graph.node:
        for index, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[index] = name
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return counts
