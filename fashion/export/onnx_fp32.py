"""Keras -> ONNX FP32 with tf2onnx (the parity gate against Keras is in gates.py, run by the FP32 stage).

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

from fashion.runtime.bundle import Bundle

from .errors import ExportError

INPUT = "image"
FEATURE_MAP = "feature_map"
FEATURE_LAYER = "top_activation"
BATCH_DIM = "batch"


def load_keras_model(path: Path):
    from fashion.layers import load_keras_model as load

    if not path.is_file():
        raise ExportError(f"{path}: no Keras model to export")
    try:
        return load(path)
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError for unreadable archives
        raise ExportError(f"{path}: Keras cannot load this model ({type(exc).__name__}: {exc})") from None


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

    captured = {
        inner.name: outer for outer, inner in serve.get_concrete_function().graph.captures if outer.dtype != tf.resource
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises ValueError, RuntimeError, its own errors, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(
            f"tf2onnx could not convert the model at opset {opset}: {type(exc).__name__}: {first}"
        ) from None
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


def add_metadata(proto, bundle: Bundle, outputs: dict[str, str]) -> None:
    """Labels, heads, input and preprocessing travel inside the ONNX file too (metadata_props)."""
    import onnx

    manifest = bundle.manifest
    onnx.helper.set_model_props(
        proto,
        {
            "name": manifest.name,
            "heads": json.dumps(bundle.heads),
            "labels": json.dumps(bundle.labels),
            "input": json.dumps(manifest.input.to_dict()),
            "preprocessing": json.dumps(manifest.preprocessing.to_dict()),
            "outputs": json.dumps(outputs),
            "feature_map": FEATURE_MAP,
        },
    )
    proto.doc_string = f"fashion-edge {manifest.name}: six-attribute fashion product classifier"


def tool_versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def build_onnx_fp32(bundle, keras_path: Path, target: Path, opset: int = 17) -> dict:
    """Convert ``keras_path`` to ONNX, drop tf2onnx's no-op reshapes, add metadata, check and write ``target``.

    Returns the facts the stage records ({"outputs", "rewrites", "tool_versions"}); the parity gate
    runs on the written file afterwards. Any conversion failure is an ExportError naming the step.
    """
    import onnx

    from .graph import remove_noop_reshapes

    heads = bundle.heads
    height, width = bundle.input_size
    feature_layer = bundle.manifest.feature_layer or FEATURE_LAYER
    model = load_keras_model(keras_path)
    try:
        exportable = with_feature_map(model, heads, feature_layer)
    except ValueError as exc:  # a head or the feature layer is missing from the model
        raise ExportError(f"{keras_path}: cannot expose heads {heads} and {feature_layer!r} ({exc})") from None
    proto = convert(exportable, heads, height, width, opset)
    rewrites = remove_noop_reshapes(proto)
    outputs = {head: head for head in heads}
    add_metadata(proto, bundle, outputs)
    onnx.save_model(proto, target)
    try:
        onnx.checker.check_model(str(target), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        raise ExportError(f"the converted ONNX model is invalid: {exc}") from None
    return {"outputs": outputs, "rewrites": rewrites, "tool_versions": tool_versions()}
