"""The standalone model: decoded RGB pixels of any size in, the six heads' probabilities out.

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

Gate: on the test split, and on the same photos upscaled to 1080x1440 (where resize filters differ),
the standalone model's top-1 must agree with the Python runtime (Pillow preprocessing + FP32 ONNX) on
at least 99.5% of photos per head, and its accuracy must stay within 0.1 pp of the runtime's.

The ``.ort`` file for ONNX Runtime Mobile and the operator list of a minimal build come from ONNX
Runtime's own converter (``python -m onnxruntime.tools.convert_onnx_models_to_ort``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.bundle import Bundle, load_manifest, sha256_file

from .errors import ExportError, GateError

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
UPSCALED_IMAGES = 1000
PREFIX = "pixels_to_image/"

# Gate thresholds (per head).
MIN_AGREEMENT = 0.995
MAX_ACCURACY_DELTA_PP = 0.1
BATCH = 32


# -- the graph ----------------------------------------------------------------------------------


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
        _const("pad_value", PAD_VALUE, np.uint8),
        _const("size", [height, width], np.int64),
    ]
    node("Shape", [INPUT], ["shape"])
    node("Gather", ["shape", "axis_h"], ["h"], axis=0)
    node("Gather", ["shape", "axis_w"], ["w"], axis=0)
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
        "name": bundle.manifest.get("name", bundle.root.name),
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
    merged.graph.name = f"{bundle.manifest.get('name', 'fashion')}-standalone"
    del merged.metadata_props[:]
    helper.set_model_props(merged, {METADATA_KEY: json.dumps(standalone_metadata(bundle, source_sha256))})
    merged.producer_name, merged.doc_string = "fashion-edge", "decoded RGB uint8 pixels (any size) -> six heads"
    onnx.checker.check_model(merged)
    return merged


# -- ONNX Runtime Mobile ------------------------------------------------------------------------


def convert_to_ort(model_path: Path, out_dir: Path) -> tuple[Path, Path]:
    """The ``.ort`` file and the minimal-build operator config, by ONNX Runtime's own converter.

    Returns (ort_file, required_operators_config), both renamed to this module's FILE names in ``out_dir``.
    """
    with tempfile.TemporaryDirectory(prefix=".ort-", dir=out_dir) as tmp:
        work = Path(tmp)
        shutil.copyfile(model_path, work / "model.onnx")
        command = [
            sys.executable,
            "-m",
            "onnxruntime.tools.convert_onnx_models_to_ort",
            str(work / "model.onnx"),
            "--output_dir",
            str(work / "out"),
            "--optimization_style",
            "Fixed",
            "--enable_type_reduction",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        ort_files = sorted((work / "out").glob("*.ort"))
        configs = sorted((work / "out").glob("*.config"))
        if done.returncode != 0 or not ort_files or not configs:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise ExportError(f"onnxruntime's ORT converter failed (exit {done.returncode}): {' | '.join(tail)}")
        ort_path, ops_path = out_dir / ORT_FILE, out_dir / OPS_FILE
        shutil.move(str(ort_files[0]), ort_path)
        # The converter names its temporary input in a comment; name the shipped file instead.
        lines = [
            f"# - {ORT_FILE}" if line.startswith("# - ") else line
            for line in configs[0].read_text(encoding="utf-8").splitlines()
        ]
        ops_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ort_path, ops_path


# -- the gate -----------------------------------------------------------------------------------


@dataclass
class GateSet:
    """Photos of one gate set: their files, labels per head (-1 unknown) and an optional upscale size."""

    name: str
    paths: list[Path]
    labels: dict[str, np.ndarray]
    upscale: tuple[int, int] | None = None  # (width, height)
    note: str = ""


def open_standalone(path: str | Path, heads: list[str], threads: int | None = None) -> Any:
    """The standalone model opened with the runtime's ONNX Runtime backend (CPU); ``infer(pixels)`` takes uint8."""
    from fashion.runtime.backends import get_backend

    entry = {"format": FORMAT, "input": INPUT, "outputs": {head: head for head in heads}, "feature_map": FEATURE_MAP}
    return get_backend("onnxruntime").open(Path(path), entry, providers=["cpu"], threads=threads)


def _photos(gate_set: GateSet) -> Iterator[tuple[int, np.ndarray]]:
    """(index, decoded RGB uint8 array) of every readable photo, upscaled when the set asks for it."""
    from PIL import Image

    from fashion.runtime.errors import InvalidImageError
    from fashion.runtime.preprocess import load_image

    for index, path in enumerate(gate_set.paths):
        try:
            image = load_image(path)
        except InvalidImageError:
            continue
        if gate_set.upscale:
            image = image.resize(gate_set.upscale, Image.Resampling.BICUBIC)
        yield index, np.asarray(image, dtype=np.uint8)


def _batches(gate_set: GateSet, size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """Photos grouped by pixel size (one standalone call takes photos of one size)."""
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for index, array in _photos(gate_set):
        group = pending.setdefault(array.shape, [])
        group.append((index, array))
        if len(group) == size:
            yield [i for i, _ in group], np.stack([a for _, a in group])
            del pending[array.shape]
    for group in pending.values():
        yield [i for i, _ in group], np.stack([a for _, a in group])


def measure(classifier: Any, standalone: Any, gate_set: GateSet, heads: list[str]) -> dict[str, Any]:
    """Top-1 agreement and accuracy of the ``standalone`` backend vs the runtime ``classifier`` on one set.

    Both see the same decoded photo: the runtime pads and resizes it with Pillow, the standalone model
    inside its graph.
    """
    from PIL import Image

    from fashion.metrics import compare_outputs
    from fashion.runtime.preprocess import fit_to_input, to_batch

    from .gates import head_accuracy

    height, width = classifier.input_size
    reference: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    candidate: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    kept: list[int] = []
    for indices, pixels in _batches(gate_set, BATCH):
        expected = classifier.infer(to_batch([fit_to_input(Image.fromarray(p), height, width) for p in pixels]))
        got = standalone.infer(pixels)
        for head in heads:
            reference[head].append(expected[head])
            candidate[head].append(got[head])
        kept += indices
    if not kept:
        raise ExportError(f"standalone gate set {gate_set.name}: no readable photos")
    ref = {head: np.concatenate(chunks) for head, chunks in reference.items()}
    cand = {head: np.concatenate(chunks) for head, chunks in candidate.items()}
    labels = {head: np.asarray(gate_set.labels[head])[kept] for head in heads}
    agreement = compare_outputs(ref, cand, heads)
    acc_ref, acc_cand = head_accuracy(ref, labels, heads), head_accuracy(cand, labels, heads)
    rows = {}
    for head in heads:
        a, b = acc_ref[head]["accuracy"], acc_cand[head]["accuracy"]
        rows[head] = {
            "top1_agreement": agreement[head].top1_agreement,
            "max_abs_diff": agreement[head].max_abs_diff,
            "accuracy_runtime": a,
            "accuracy_standalone": b,
            "labelled": acc_ref[head]["n"],
            "accuracy_delta_pp": None if a is None or b is None else round((b - a) * 100, 4),
        }
    result: dict[str, Any] = {"images": len(kept), "heads": rows}
    if gate_set.upscale:
        result["upscaled_to"] = f"{gate_set.upscale[0]}x{gate_set.upscale[1]}"
    if gate_set.note:
        result["note"] = gate_set.note
    return result


def judge(
    sets: dict[str, dict[str, Any]], min_agreement: float | None = None, max_delta_pp: float | None = None
) -> Any:
    """The gate's verdict over every measured set (thresholds from fashion.export.gates by default)."""
    from . import gates

    min_agreement = gates.STANDALONE_MIN_AGREEMENT if min_agreement is None else min_agreement
    max_delta_pp = gates.STANDALONE_MAX_ACCURACY_DELTA_PP if max_delta_pp is None else max_delta_pp
    problems = []
    for name, measured in sets.items():
        for head, row in measured["heads"].items():
            if row["top1_agreement"] < min_agreement:
                problems.append(f"{name}/{head}: top-1 agreement {row['top1_agreement']:.2%} < {min_agreement:.2%}")
            delta = row["accuracy_delta_pp"]
            if delta is not None and abs(delta) > max_delta_pp:
                problems.append(f"{name}/{head}: accuracy differs by {delta:+.2f} pp (limit {max_delta_pp:g} pp)")
    record = {
        "reference": "Python runtime (fashion.runtime preprocessing with Pillow + onnx_fp32)",
        "min_top1_agreement": min_agreement,
        "max_accuracy_delta_pp": max_delta_pp,
        "sets": sets,
    }
    lowest = min((r["top1_agreement"] for m in sets.values() for r in m["heads"].values()), default=1.0)
    summary = (
        "; ".join(problems)
        if problems
        else (
            f"top-1 agreement with the runtime >= {lowest:.2%} on "
            + ", ".join(f"{name} ({m['images']} photos)" for name, m in sets.items())
        )
    )
    return gates.Verdict(not problems, record, summary)


def run_gate(
    bundle_dir: Path,
    model_path: Path,
    sets: list[GateSet],
    log: Callable[[str], None] = print,
    threads: int | None = None,
) -> Any:
    """Measure every set against the runtime and judge; returns a fashion.export.gates.Verdict."""
    from fashion.runtime import Classifier

    measured = {}
    with Classifier.load(bundle_dir, precision="fp32", threads=threads) as classifier:
        standalone = open_standalone(model_path, list(classifier.heads), threads)
        try:
            for gate_set in sets:
                size = f" upscaled to {gate_set.upscale[0]}x{gate_set.upscale[1]}" if gate_set.upscale else ""
                log(f"standalone gate: {gate_set.name}: {len(gate_set.paths)} photos{size}")
                measured[gate_set.name] = measure(classifier, standalone, gate_set, list(classifier.heads))
        finally:
            standalone.close()
    return judge(measured)


def gate_sets(
    bundle: Bundle,
    data_dir: str | Path | None = None,
    split_file: str | Path | None = None,
    subset: str = "test",
    limit: int = 0,
    upscaled_limit: int = 0,
) -> list[GateSet]:
    """The photos of ``subset`` as they are, and (a seeded subset of) the same photos upscaled to 1080x1440."""
    from fashion.data.images import LabelledData, seeded_subset
    from fashion.data.paths import resolve_data_dir, resolve_split_file

    recorded = (bundle.manifest.get("split") or {}).get("file")
    split = resolve_split_file(split_file, recorded, bases=[bundle.root])
    data = LabelledData.open(resolve_data_dir(data_dir), split, bundle.labels, bundle.input_size)
    positions = data.select(subset, limit or None)
    if not len(positions):
        raise ExportError(f"no {subset} photos in {split}")
    paths = [Path(p) for p in data.frame["path"].to_numpy()[positions]]
    labels = {head: values[positions] for head, values in data.labels.items()}
    note = "" if not limit or data.count(subset) <= limit else f"seeded subset of {len(positions)} {subset} photos"
    original = GateSet(subset, paths, labels, note=note)
    chosen = np.flatnonzero(np.isin(positions, seeded_subset(positions, upscaled_limit or None)))
    note = "" if len(chosen) == len(positions) else f"seeded subset of {len(chosen)} of the {len(positions)} photos"
    upscaled = GateSet(
        f"{subset}_{UPSCALED_SIZE[0]}x{UPSCALED_SIZE[1]}",
        [paths[i] for i in chosen],
        {head: values[chosen] for head, values in labels.items()},
        upscale=UPSCALED_SIZE,
        note=note,
    )
    return [original, upscaled]


# -- the export step ----------------------------------------------------------------------------


@dataclass
class StandaloneOptions:
    data_dir: Path | None = None
    split_file: Path | None = None
    subset: str = "test"
    limit: int = 0  # photos of the subset for the gate; 0 = all
    upscaled_limit: int = UPSCALED_IMAGES  # of those, how many also go through the 1080x1440 set; 0 = all
    gate: bool = True
    ort: bool = True
    threads: int | None = None


def build_file(bundle: Bundle, fp32_entry: dict[str, Any], target: Path) -> dict[str, Any]:
    """Write the standalone model built from the bundle's FP32 ONNX to ``target``; returns build facts."""
    import onnx

    network = onnx.load(str(bundle.root / fp32_entry["file"]))
    onnx.save(build_standalone(network, bundle, fp32_entry["sha256"]), str(target))
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


def write_ort(
    root: Path, standalone_sha: str, fp32_sha: str, heads: list[str], log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Convert the recorded standalone model to ``.ort`` and record it; returns its manifest entry."""
    from fashion.runtime.manifest import edit_manifest

    ort_path, ops_path = convert_to_ort(root / FILE, root)
    log(f"ORT Mobile: {ort_path} (+ {ops_path.name}, the operators of a minimal build)")
    with edit_manifest(root) as draft:
        entry = draft.put_artifact(
            ORT_KEY,
            {
                "file": ORT_FILE,
                "format": "ort",
                "precision": "fp32",
                "opset": OPSET,
                "input": INPUT,
                "outputs": {head: head for head in heads},
                "feature_map": FEATURE_MAP,
                "required_operators": {"file": OPS_FILE, "sha256": sha256_file(ops_path)},
                # Derived from the FP32 ONNX like the standalone model, so a new FP32 makes both stale at once.
                "source": {
                    "artifact": "onnx_fp32",
                    "sha256": fp32_sha,
                    "converted_from": {"artifact": KEY, "sha256": standalone_sha},
                },
            },
        )
    return dict(entry.to_dict())


def export_standalone(
    bundle_dir: str | Path, options: StandaloneOptions | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Build, gate and record the standalone model (and its ORT Mobile files); returns its manifest entry.

    Raises GateError when the gate refuses it: nothing is written and older standalone files are removed.
    """
    from fashion.runtime.manifest import edit_manifest

    from .artifacts import staged_file

    options = options or StandaloneOptions()
    root = Path(bundle_dir)
    bundle = load_manifest(root)
    fp32 = bundle.artifacts.get("onnx_fp32")
    if not fp32:
        raise ExportError(f"{root}: no onnx_fp32 artifact to build the standalone model from (run fashion-export)")
    sets = (
        gate_sets(bundle, options.data_dir, options.split_file, options.subset, options.limit, options.upscaled_limit)
        if options.gate
        else []
    )
    with staged_file(root / FILE) as staged:
        build_file(bundle, dict(fp32), staged)
        gate: dict[str, Any] = {"skipped": "no gate asked for"}
        if sets:
            verdict = run_gate(root, staged, sets, log, threads=options.threads)
            if not verdict.passed:
                discard(root)
                raise GateError(f"standalone model refused: {verdict.summary}")
            gate = verdict.record
            log(f"standalone gate: passed, {verdict.summary}")
    with edit_manifest(root) as draft:
        entry = dict(draft.put_artifact(KEY, entry_fields(bundle, fp32["sha256"], gate)).to_dict())
    log(f"standalone model: {root / FILE} ({entry['bytes'] / 1e6:.1f} MB)")
    if options.ort:
        write_ort(root, entry["sha256"], fp32["sha256"], bundle.heads, log)
    return entry


def discard(root: Path) -> None:
    """Remove the standalone files and entries (a refused or stale model must not stay listed)."""
    from fashion.runtime.manifest import edit_manifest

    with edit_manifest(root) as draft:
        for key in (KEY, ORT_KEY):
            draft.drop_artifact(key)
    for name in (FILE, ORT_FILE, OPS_FILE):
        (root / name).unlink(missing_ok=True)


# -- the export stage ---------------------------------------------------------------------------


class StandaloneStage:
    """``fashion-export --standalone``: the pixels-in model as a stage of the export driver.

    Same shape as the stages in fashion.export.stages (attempts / build / gate / entry / accepted); it does
    not subclass ``Stage`` so that importing this module never pulls in the driver.
    """

    key, title, fatal, records_artifact = KEY, "Standalone ONNX (pixels in)", False, True

    def wanted(self, ctx: Any) -> bool:
        return bool(getattr(ctx.options, "standalone", True))

    def skip_reason(self, ctx: Any) -> str | None:
        return None

    def target(self, ctx: Any) -> Path:
        return Path(ctx.root) / FILE

    def staging(self, ctx: Any, target: Path) -> Any:
        from .artifacts import staged_file

        return staged_file(target)

    def attempts(self, ctx: Any) -> list[Any]:
        return [None]

    def describe(self, attempt: Any) -> str:
        return "composing pad + antialiased resize with the FP32 network"

    def build(self, ctx: Any, attempt: Any, staged: Path) -> dict[str, Any]:
        return build_file(ctx.bundle, dict(ctx.fp32_entry), staged)

    def gate(self, ctx: Any, attempt: Any, staged: Path, built: dict[str, Any]) -> Any:
        options = ctx.options
        sets = gate_sets(
            ctx.bundle,
            getattr(options, "data_dir", None),
            getattr(options, "split_file", None),
            limit=getattr(options, "standalone_images", 0),
            upscaled_limit=getattr(options, "standalone_upscaled_images", UPSCALED_IMAGES),
        )
        return run_gate(Path(ctx.root), staged, sets, getattr(ctx, "log", print))

    def entry(self, ctx: Any, attempt: Any, built: dict[str, Any], verdict: Any) -> dict[str, Any]:
        fields = entry_fields(ctx.bundle, ctx.fp32_entry["sha256"], verdict.record)
        fields.pop("file")
        return fields

    def accepted(self, ctx: Any, entry: dict[str, Any]) -> None:
        if getattr(ctx.options, "standalone_ort", True):
            write_ort(
                Path(ctx.root), entry["sha256"], ctx.fp32_entry["sha256"], list(ctx.heads), getattr(ctx, "log", print)
            )


# -- report and command line --------------------------------------------------------------------


def measure_latency(
    bundle_dir: Path, paths: list[Path], sizes: list[tuple[int, int] | None], threads: int = 1, rounds: int = 3
) -> dict[str, Any]:
    """Batch-1 median latency from a decoded photo to probabilities: runtime vs standalone, per photo size.

    Runtime: Pillow pad + resize (fashion.runtime.preprocess) then the FP32 ONNX; standalone: the pixels as
    they are. Decoding is left out of both. The two take turns photo by photo, so load from other processes
    on a shared machine slows both alike.
    """
    import time

    from PIL import Image

    from fashion.runtime import Classifier
    from fashion.runtime.preprocess import fit_to_input, load_image

    table: dict[str, Any] = {"threads": threads, "rounds": rounds, "photos": len(paths), "sizes": {}}
    with Classifier.load(bundle_dir, precision="fp32", threads=threads) as classifier:
        height, width = classifier.input_size
        standalone = open_standalone(Path(bundle_dir) / FILE, list(classifier.heads), threads)
        for size in sizes:
            photos = [load_image(p) for p in paths]
            if size:
                photos = [photo.resize(size, Image.Resampling.BICUBIC) for photo in photos]
            arrays = [np.asarray(photo)[None] for photo in photos]
            times: dict[str, list[float]] = {"runtime": [], "standalone": []}
            for _ in range(rounds):
                for photo, array in zip(photos, arrays):
                    start = time.perf_counter()
                    classifier.infer(fit_to_input(photo, height, width)[None].astype(np.float32))
                    times["runtime"].append((time.perf_counter() - start) * 1000)
                    start = time.perf_counter()
                    standalone.infer(array)
                    times["standalone"].append((time.perf_counter() - start) * 1000)
            label = "as is" if size is None else f"{size[0]}x{size[1]}"
            table["sizes"][label] = {key: round(float(np.median(values)), 3) for key, values in times.items()}
        standalone.close()
    return table


def write_report(
    entry: dict[str, Any], out_dir: Path, command: str, latency: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """docs/eval/standalone.{json,md}: the gate's agreement/accuracy table for photos as they are and upscaled."""
    from fashion.runtime.bundle import atomic_write_json

    gate = entry["gate"]
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "standalone.json", out_dir / "standalone.md"
    atomic_write_json(
        json_path,
        {
            "command": command,
            "artifact": {k: entry[k] for k in ("file", "sha256", "bytes")},
            "source": entry["source"],
            "gate": gate,
            "latency_ms_batch1": latency,
        },
    )
    lines = [
        "# Standalone model vs the Python runtime",
        "",
        f"`{entry['file']}` ({entry['bytes'] / 1e6:.1f} MB, sha256 `{entry['sha256'][:16]}…`): uint8 pixels of the "
        "decoded photo in, pad + antialiased resize inside the graph, then the FP32 network. Reference: "
        f"{gate['reference']}, on the same decoded photos.",
        "",
        f"Gate: per head, top-1 agreement >= {gate['min_top1_agreement']:.1%} and accuracy within "
        f"{gate['max_accuracy_delta_pp']:g} pp, on every set. Result: **passed** (a refused model is not written).",
        "",
        f"Command: `{command}`",
        "",
    ]
    for name, measured in gate["sets"].items():
        size = f", upscaled to {measured['upscaled_to']} (Pillow bicubic)" if measured.get("upscaled_to") else ""
        note = f"; {measured['note']}" if measured.get("note") else ""
        lines += [
            f"## {name}: {measured['images']} photos{size}{note}",
            "",
            "| head | top-1 agreement | accuracy (runtime) | accuracy (standalone) | difference (pp) | "
            "max abs diff (prob.) |",
            "|---|---|---|---|---|---|",
        ]
        for head, row in measured["heads"].items():
            a, b, delta = row["accuracy_runtime"], row["accuracy_standalone"], row["accuracy_delta_pp"]
            shown_delta = "n/a" if delta is None else f"{delta:+.2f}"
            lines.append(
                f"| {head} | {row['top1_agreement']:.2%} | {_pct(a)} | {_pct(b)} | {shown_delta} | "
                f"{row['max_abs_diff']:.2e} |"
            )
        lines.append("")
    if latency:
        lines += [
            f"## Batch-1 latency, decoded photo to probabilities ({latency['threads']} thread(s), median of "
            f"{latency['photos']} photos x {latency['rounds']})",
            "",
            "Runtime: Pillow pad + resize, then the FP32 ONNX; standalone: the photo's pixels as they are. "
            "Both in ONNX Runtime on this machine's CPU, taking turns photo by photo.",
            "",
            "| photo size | runtime (ms) | standalone (ms) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {size} | {row['runtime']:.2f} | {row['standalone']:.2f} |" for size, row in latency["sizes"].items()
        ]
        lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return json_path, md_path


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def main(argv: list[str] | None = None) -> None:
    """``python -m fashion.export.standalone BUNDLE``: build, gate and record the standalone model on its own."""
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option(
        "--data",
        "data_dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help="Labelled photos (Kaggle layout); default: $FASHION_SHARED_DATA or ../shared.",
    )
    @click.option("--split", "split_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
    @click.option(
        "--images",
        type=click.IntRange(0),
        default=0,
        show_default=True,
        help="Test photos for the gate (seeded subset); 0 = all.",
    )
    @click.option(
        "--upscaled-images",
        type=click.IntRange(0),
        default=UPSCALED_IMAGES,
        show_default=True,
        help="Of those, how many also run upscaled to 1080x1440; 0 = all.",
    )
    @click.option("--no-ort", is_flag=True, help="Skip the .ort file for ONNX Runtime Mobile.")
    @click.option(
        "--report",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also write the agreement/accuracy table to DIR/standalone.{json,md}.",
    )
    @click.option(
        "--latency-images",
        type=click.IntRange(0),
        default=30,
        show_default=True,
        help="With --report: photos timed at batch 1 (as they are and at 1080x1440); 0 = no timing.",
    )
    @click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="ONNX Runtime threads.")
    def command(
        bundle: Path,
        data_dir: Path | None,
        split_file: Path | None,
        images: int,
        upscaled_images: int,
        no_ort: bool,
        report: Path | None,
        latency_images: int,
        threads: int,
    ) -> None:
        options = StandaloneOptions(
            data_dir=data_dir,
            split_file=split_file,
            limit=images,
            upscaled_limit=upscaled_images,
            ort=not no_ort,
            threads=threads,
        )
        try:
            entry = export_standalone(bundle, options, log=click.echo)
        except GateError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(3)
        except Exception as exc:  # FashionError and data errors: one line, no traceback
            from fashion.runtime.errors import FashionError

            if not isinstance(exc, FashionError):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        if report:
            shown = " ".join(["python -m fashion.export.standalone", *(argv if argv is not None else sys.argv[1:])])
            latency = None
            if latency_images:
                bundle_info = load_manifest(bundle, verify_hashes=False)
                photos = gate_sets(bundle_info, data_dir, split_file, limit=latency_images, upscaled_limit=1)[0].paths
                latency = measure_latency(bundle, photos, [None, UPSCALED_SIZE], threads=threads)
            for path in write_report(entry, report, shown, latency):
                click.echo(f"report: {path}")

    command.main(args=argv, standalone_mode=True)


if __name__ == "__main__":
    main()
