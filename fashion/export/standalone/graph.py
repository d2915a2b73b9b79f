"""The standalone model's graph: pad + antialiased resize in ONNX, composed with the FP32 network, labels inside.

Apps that are not Python (Android, iOS, web pages, Node or Java back ends) should not have to
re-implement the preprocessing or read ``labels.json``: this artifact carries both.

    input   pixels   uint8 [batch, height, width, 3], RGB, NHWC: the decoded photo as it is (any size;
                     every photo of one batch has the same size). EXIF orientation and alpha (composite on
                     white) are the decoder's job, as in fashion.runtime.preprocess.load_image.
    graph   pad with white (255) to the model's aspect, centred exactly as fashion.runtime.preprocess does
            (Python's round-half-even for the canvas, floor for the left/top offset), then a bilinear
            ``Resize`` on uint8 with ``antialias=1`` and ``exclude_outside=1`` (opset 18): ONNX Runtime then
            reproduces Pillow's filter pixel for pixel, rounding to uint8 included; then the FP32 network.
    output  one softmax per head, named after the head, in head order, then ``feature_map``.

``metadata_props["fashion_edge"]`` is JSON with the head order, the class names per head, the input
contract and the sha256 of the FP32 model and labels it was built from, so an app reads its labels from
the model file alone.

A photo with no pixels (height or width 0, e.g. ``1x0x96x3``) is refused with an error from the node
``pixels_to_image/refuse_empty_photo`` instead of a prediction.

Agreement with the runtime, exactly: the graph reproduces ``fashion.runtime.preprocess.fit_to_input`` (the
runtime's exact path, ``Classifier.load(..., fast_decode=False)``) pixel for pixel at any size, thin
photos (600x1, 10000x1, 10000x3) and 4000x3000 included. The runtime's default fast path first reduces
a photo whose padded canvas is at least ``2 * FAST_DECODE_GAP`` (6) times the model input on each side
(768x576 for a 128x96 model; a 600x1 photo pads to 600x800), so such photos differ from it: up to 0.014
in probability on 4000x3000 photos, and on thin photos, which are a line of pixels on white, enough to
change 2-4 heads (tests/export/test_standalone.py pins both limits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.bundle import Bundle, sha256_file
from fashion.runtime.manifest import ArtifactEntry

from .. import gates
from ..errors import ExportError

KEY = "onnx_standalone"
FILE = "model_standalone.onnx"
ORT_KEY = "ort_standalone"
ORT_FILE = "model_standalone.ort"
OPS_FILE = "model_standalone.required_operators.config"
FORMAT = "onnx_standalone"  # not "onnx": its input is uint8 pixels, so the float-batch backends must not pick it
INPUT = "pixels"
NETWORK_INPUT = "image"
FEATURE_MAP = "feature_map"
OPSET = 18  # Resize's antialias attribute needs opset 18
METADATA_KEY = "fashion_edge"
METADATA_SCHEMA = 1
PAD_VALUE = 255
UPSCALED_SIZE = (1080, 1440)  # width, height of the "large photo" gate set
#: Default size of the upscaled gate set: a seeded subset of the test photos (each is a 1.5-megapixel decode).
UPSCALED_IMAGES = gates.STANDALONE_UPSCALED_IMAGES
PREFIX = "pixels_to_image/"

#: Photos per standalone call in the gate (photos of one size per call).
BATCH = 32


def _const(name: str, value: Any, dtype: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=dtype), PREFIX + name)


def preprocessing_graph(height: int, width: int, output: str = NETWORK_INPUT) -> Any:
    """ONNX graph ``pixels`` (uint8 NHWC, any size) -> ``output`` (float32 NHWC height x width, 0-255).

    Mirrors fashion.runtime.preprocess.fit_to_input: the canvas is the smallest one with the model's aspect
    that holds the photo (Python ``round`` is half-to-even, as ONNX ``Round``), the photo sits at offset
    floor(pad / 2), white around it; then Pillow-style bilinear resampling (antialiased when shrinking).
    """
    from onnx import TensorProto, helper

    p = PREFIX
    nodes = []

    def node(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        names = [name if name in ("", INPUT) else p + name for name in inputs]
        nodes.append(helper.make_node(op, names, [p + o for o in outputs], name=p + outputs[0], **attrs))

    initializers = [
        _const("height", [height], np.int64),
        _const("width", [width], np.int64),
        _const("height_f", [height], np.float64),
        _const("width_f", [width], np.float64),
        _const("two", [2], np.int64),
        _const("zero", [0], np.int64),
        _const("axis_h", [1], np.int64),
        _const("axis_w", [2], np.int64),
        _const("one", [1], np.int64),
        _const("scalar", np.zeros(0), np.int64),
        _const("pad_value_1", [PAD_VALUE], np.uint8),
        _const("size", [height, width], np.int64),
    ]
    node("Shape", [INPUT], ["shape"])
    node("Gather", ["shape", "axis_h"], ["h"], axis=0)
    node("Gather", ["shape", "axis_w"], ["w"], axis=0)
    # A photo with no pixels must fail, not yield a prediction of an all-white canvas. ONNX has no assert:
    # the pad value goes through a Reshape to shape [min(h, w, 1)], which holds its one element only when
    # the photo has pixels; otherwise ONNX Runtime fails in this node, whose name says why.
    node("Min", ["h", "w", "one"], ["has_pixels"])
    node("Reshape", ["pad_value_1", "has_pixels"], ["refuse_empty_photo"], allowzero=1)  # 0 means 0 here
    node("Reshape", ["refuse_empty_photo", "scalar"], ["pad_value"])
    # Wider than the model's aspect (w * H > h * W): keep the width, grow the height; else the reverse.
    node("Mul", ["w", "height"], ["w_H"])
    node("Mul", ["h", "width"], ["h_W"])
    node("Greater", ["w_H", "h_W"], ["wide"])
    node("Cast", ["w"], ["w_f"], to=TensorProto.DOUBLE)
    node("Cast", ["h"], ["h_f"], to=TensorProto.DOUBLE)
    node("Mul", ["w_f", "height_f"], ["w_H_f"])
    node("Div", ["w_H_f", "width_f"], ["h_for_w"])
    node("Round", ["h_for_w"], ["h_for_w_r"])
    node("Cast", ["h_for_w_r"], ["h_for_w_i"], to=TensorProto.INT64)
    node("Max", ["h", "h_for_w_i"], ["canvas_h_wide"])
    node("Mul", ["h_f", "width_f"], ["h_W_f"])
    node("Div", ["h_W_f", "height_f"], ["w_for_h"])
    node("Round", ["w_for_h"], ["w_for_h_r"])
    node("Cast", ["w_for_h_r"], ["w_for_h_i"], to=TensorProto.INT64)
    node("Max", ["w", "w_for_h_i"], ["canvas_w_tall"])
    node("Where", ["wide", "canvas_h_wide", "h"], ["canvas_h"])
    node("Where", ["wide", "w", "canvas_w_tall"], ["canvas_w"])
    node("Sub", ["canvas_h", "h"], ["pad_h"])
    node("Div", ["pad_h", "two"], ["top"])  # non-negative, so integer Div is floor as in Python's //
    node("Sub", ["pad_h", "top"], ["bottom"])
    node("Sub", ["canvas_w", "w"], ["pad_w"])
    node("Div", ["pad_w", "two"], ["left"])
    node("Sub", ["pad_w", "left"], ["right"])
    node("Concat", ["zero", "top", "left", "zero", "zero", "bottom", "right", "zero"], ["pads"], axis=0)
    node("Pad", [INPUT, "pads", "pad_value"], ["padded"], mode="constant")
    # uint8 in, uint8 out, antialias with exclude_outside=1 (taps outside the photo dropped and the rest
    # renormalised): ONNX Runtime's resize then gives Pillow's bilinear result pixel for pixel, rounding included.
    node(
        "Resize",
        ["padded", "", "", "size"],
        ["resized"],
        mode="linear",
        antialias=1,
        exclude_outside=1,
        axes=[1, 2],
        coordinate_transformation_mode="half_pixel",
    )
    nodes.append(helper.make_node("Cast", [p + "resized"], [output], name=p + "to_float", to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "pixels_to_image",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", height, width, 3])],
        initializers,
    )
    return graph


def standalone_metadata(bundle: Bundle, source_sha256: str) -> dict[str, Any]:
    """What an app needs besides the graph: head order, class names, the input contract, provenance."""
    height, width = bundle.input_size
    return {
        "schema": METADATA_SCHEMA,
        "name": bundle.manifest.name or bundle.root.name,
        "heads": bundle.heads,
        "labels": {head: list(bundle.labels[head]) for head in bundle.heads},
        "outputs": {head: head for head in bundle.heads},
        "feature_map": FEATURE_MAP,
        "input": {
            "name": INPUT,
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": ["batch", "height", "width", 3],
            "color": "RGB",
            "range": [0, 255],
            "before": "decode the photo, apply its EXIF orientation, composite transparency on white",
            "inside": {
                "fit": "pad_to_aspect_then_resize",
                "pad_value": PAD_VALUE,
                "resample": "bilinear",
                "antialias": True,
                "model_height": height,
                "model_width": width,
            },
        },
        "output": "softmax probabilities per head, (batch, classes), classes in the order of labels[head]",
        "source": {
            "artifact": "onnx_fp32",
            "sha256": source_sha256,
            "labels_sha256": sha256_file(bundle.root / "labels.json"),
        },
    }


def read_metadata(model: str | Path | Any) -> dict[str, Any]:
    """The ``fashion_edge`` metadata JSON of a standalone model (a path or an onnx.ModelProto)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False) if isinstance(model, (str, Path)) else model
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return dict(json.loads(prop.value))
    raise ExportError(f"{model if isinstance(model, (str, Path)) else 'model'}: no '{METADATA_KEY}' metadata")


def _network_at_opset(network: Any, opset: int) -> Any:
    from onnx import version_converter

    current = next((o.version for o in network.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None or current > opset:
        raise ExportError(f"the FP32 ONNX has default-domain opset {current}; the standalone model needs <= {opset}")
    if current == opset:
        return network
    try:
        return version_converter.convert_version(network, opset)
    except Exception as exc:  # the converter raises bare RuntimeErrors/ValueErrors for unsupported ops
        raise ExportError(f"cannot convert the FP32 ONNX from opset {current} to {opset}: {exc}") from None


def build_standalone(network: Any, bundle: Bundle, source_sha256: str) -> Any:
    """Compose the preprocessing graph with the FP32 network; outputs in head order, metadata attached."""
    import onnx
    from onnx import compose, helper

    height, width = bundle.input_size
    inputs = [i.name for i in network.graph.input]
    if inputs != [NETWORK_INPUT]:
        raise ExportError(f"the FP32 ONNX must have the single input '{NETWORK_INPUT}', it has {inputs}")
    outputs = {o.name for o in network.graph.output}
    missing = [name for name in [*bundle.heads, FEATURE_MAP] if name not in outputs]
    if missing:
        raise ExportError(f"the FP32 ONNX lacks the outputs {missing} (has {sorted(outputs)})")
    network = _network_at_opset(network, OPSET)
    opsets = [helper.make_opsetid(o.domain, o.version) for o in network.opset_import]
    pre = helper.make_model(
        preprocessing_graph(height, width, output="pixels_to_image/image"),
        opset_imports=opsets,
        ir_version=network.ir_version,
    )
    merged = compose.merge_models(
        pre, network, io_map=[("pixels_to_image/image", NETWORK_INPUT)], outputs=[*bundle.heads, FEATURE_MAP]
    )
    order = {name: i for i, name in enumerate([*bundle.heads, FEATURE_MAP])}
    ordered = sorted(merged.graph.output, key=lambda o: order[o.name])
    del merged.graph.output[:]
    merged.graph.output.extend(ordered)
    merged.graph.name = f"{bundle.manifest.name or 'fashion'}-standalone"
    del merged.metadata_props[:]
    helper.set_model_props(merged, {METADATA_KEY: json.dumps(standalone_metadata(bundle, source_sha256))})
    merged.producer_name, merged.doc_string = "fashion-edge", "decoded RGB uint8 pixels (any size) -> six heads"
    onnx.checker.check_model(merged)
    return merged


def build_file(bundle: Bundle, fp32_entry: ArtifactEntry, target: Path) -> dict[str, Any]:
    """Write the standalone model built from the bundle's FP32 ONNX to ``target``; returns build facts."""
    import onnx

    network = onnx.load(str(bundle.root / fp32_entry.file))
    onnx.save(build_standalone(network, bundle, fp32_entry.sha256), str(target))
    return {"opset": OPSET, "onnx": onnx.__version__}


def entry_fields(bundle: Bundle, fp32_sha: str, gate: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of the standalone model (sha256 and bytes are added by the editor)."""
    import onnxruntime

    return {
        "file": FILE,
        "format": FORMAT,
        "precision": "fp32",
        "opset": OPSET,
        "input": INPUT,
        "input_contract": standalone_metadata(bundle, fp32_sha)["input"],
        "outputs": {head: head for head in bundle.heads},
        "feature_map": FEATURE_MAP,
        "metadata_key": METADATA_KEY,
        "gate": gate,
        "tool_versions": {"onnxruntime": onnxruntime.__version__},
        "source": {"artifact": "onnx_fp32", "sha256": fp32_sha},
    }
