"""Keras -> ONNX FP32 with tf2onnx, plus the parity gate against Keras.

The graph has one input ``image`` (float32 [batch, H, W, 3], raw 0..255) and one softmax output
per head named after the head, plus ``feature_map`` (the ``top_activation`` output, NHWC) so the
runtime can draw class-activation maps without TensorFlow.

Why ``tf.function`` + ``from_function`` and not ``from_keras``: ``from_keras`` names outputs after
layers (``top_activation``), and Keras 3's EfficientNet keeps its normalisation mean/variance as
captured eager tensors that tf2onnx turns into extra graph inputs; here they are folded back into
constants, so ``image`` is the only input.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .errors import ExportError, GateError

INPUT = "image"
FEATURE_MAP = "feature_map"
FEATURE_LAYER = "top_activation"
BATCH_DIM = "batch"
DEFAULT_ATOL = 1e-4


def load_keras_model(path: Path):
    import keras

    if not path.is_file():
        raise ExportError(f"{path}: no Keras model to export")
    return keras.saving.load_model(path, compile=False)


def with_feature_map(model, heads: list[str], feature_layer: str = FEATURE_LAYER):
    """The same model with dict outputs {head: softmax, "feature_map": last conv activation}."""
    import keras

    outputs = {head: model.get_layer(head).output for head in heads}
    outputs[FEATURE_MAP] = model.get_layer(feature_layer).output
    return keras.Model(model.inputs, outputs, name=f"{model.name}_export")


def convert(model, heads: list[str], height: int, width: int, opset: int):
    """tf2onnx conversion of ``model`` (dict outputs) with a dynamic batch dimension named ``batch``."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec([None, height, width, 3], tf.float32, name=INPUT),)

    @tf.function(input_signature=spec)
    def serve(image):
        return model(image, training=False)

    captured = {inner.name: outer for outer, inner in serve.get_concrete_function().graph.captures
                if outer.dtype != tf.resource}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    _fold_captured_inputs(proto, captured)
    _name_batch_dim(proto)
    expected = sorted(list(heads) + [FEATURE_MAP])
    got = sorted(output.name for output in proto.graph.output)
    if got != expected:
        raise ExportError(f"tf2onnx produced outputs {got}, expected {expected}")
    return proto


def _fold_captured_inputs(proto, captured: dict) -> None:
    """Turn graph inputs that came from captured constants into initializers (or drop them if unused)."""
    from onnx import numpy_helper

    used = {name for node in proto.graph.node for name in node.input}
    for graph_input in list(proto.graph.input):
        if graph_input.name == INPUT:
            continue
        if graph_input.name in used:
            if graph_input.name not in captured:
                raise ExportError(f"tf2onnx left an unexpected graph input {graph_input.name!r}")
            value = np.asarray(captured[graph_input.name].numpy())
            proto.graph.initializer.append(numpy_helper.from_array(value, graph_input.name))
        proto.graph.input.remove(graph_input)


def _name_batch_dim(proto) -> None:
    for value in list(proto.graph.input) + list(proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = BATCH_DIM


def add_metadata(proto, bundle, outputs: dict[str, str]) -> None:
    """Labels, heads, input and preprocessing travel inside the ONNX file too (metadata_props)."""
    import onnx

    manifest = bundle.manifest
    onnx.helper.set_model_props(proto, {
        "name": str(manifest.get("name", "")),
        "heads": json.dumps(bundle.heads),
        "labels": json.dumps(bundle.labels),
        "input": json.dumps(manifest["input"]),
        "preprocessing": json.dumps(manifest["preprocessing"]),
        "outputs": json.dumps(outputs),
        "feature_map": FEATURE_MAP,
    })
    proto.doc_string = f"fashion-edge {manifest.get('name', '')}: six-attribute fashion product classifier"


def parity_gate(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], heads: list[str],
                atol: float = DEFAULT_ATOL, min_agreement: float = 1.0, what: str = "ONNX FP32") -> dict:
    """Per-head max abs diff <= atol and argmax agreement >= min_agreement, or GateError with the numbers."""
    from .checks import compare

    report = compare(reference, candidate, heads)
    failures = [f"{head}: max abs diff {r['max_abs_diff']:.3g} (limit {atol:g}), "
                f"argmax agreement {r['argmax_agreement']:.2%} (need {min_agreement:.2%})"
                for head, r in report.items()
                if not (r["max_abs_diff"] <= atol and r["argmax_agreement"] >= min_agreement)]
    if failures:
        raise GateError(f"{what} refused by the parity gate on {len(next(iter(reference.values())))} images: "
                        + "; ".join(failures))
    return report


def tool_versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_onnx_fp32(bundle, keras_model, batch: np.ndarray, reference: dict[str, np.ndarray], target: Path,
                     opset: int = 17, atol: float = DEFAULT_ATOL) -> dict:
    """Convert, check, gate and write ``target``; return the manifest fields (parity numbers included).

    ``reference`` holds Keras's probabilities for ``batch``. Raises GateError (nothing written) on failure.
    """
    import onnx

    from .artifacts import staged_file
    from .checks import run_onnx

    heads = bundle.heads
    height, width = bundle.input_size
    feature_layer = bundle.manifest.get("feature_layer", FEATURE_LAYER)
    proto = convert(with_feature_map(keras_model, heads, feature_layer), heads, height, width, opset)
    outputs = {head: head for head in heads}
    add_metadata(proto, bundle, outputs)
    with staged_file(target) as staged:
        onnx.save_model(proto, staged)
        onnx.checker.check_model(str(staged), full_check=True)
        candidate = run_onnx(staged, batch, outputs)
        report = parity_gate(reference, candidate, heads, atol=atol)
    return {
        "format": "onnx", "precision": "fp32", "opset": opset, "input": INPUT, "outputs": outputs,
        "feature_map": FEATURE_MAP, "tool_versions": tool_versions(),
        "parity": {"reference": "keras", "images": int(len(batch)), "atol": atol, "heads": report},
    }
