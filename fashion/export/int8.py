"""ONNX Runtime static INT8 quantization (QDQ, per-channel weights), tried plan by plan.

Calibration reads real TRAIN images through the shared preprocessing. The INT8 stage gates each
plan on per-head val accuracy against the FP32 ONNX (``gates.INT8_MAX_DROP_PP``); the first plan
that passes is kept. EfficientNet loses accuracy under naive post-training INT8 (SiLU and the
squeeze-excite gates multiply activations of very different ranges), so only convolutions are
quantized and the plans keep progressively more of them in float (see ``PLANS``).

What each plan did on a given model is not written here: the manifest's ``onnx_int8`` entry records
the plan that passed, the nodes kept in float and every attempt's per-head drop
(``accuracy_gate.attempts``); results/ has the measured speed.

Why no plan quantizes more (results/fashion-effnetb0-int8-ab.md, an AVX-512 VNNI + AMX Xeon,
ONNX Runtime 1.32): quantizing every convolution, SiLU, squeeze-excite and residual add (U8S8, per-channel)
is only about 1.2x faster than FP32 at batch 1, because ONNX Runtime's int8 SiLU (QLinearSigmoid +
QLinearMul) and squeeze-excite scaling cost as much as FP32's fused kernels, and it loses up to 10 pp
(baseColour) on val; convolutions alone in int8, with float activations between them, are slower than FP32
(a Q/DQ pair and a layout change around every float island); signed int8 activations have no fast kernel
(about 3x slower). Keeping the early blocks in float brings the loss to about 2 pp and the speed back to FP32's.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

CALIB_BATCH = 16


@dataclass(frozen=True)
class QuantPlan:
    name: str
    op_types: tuple[str, ...]
    keep_float: tuple[str, ...] = field(default=("first_conv",))
    calibration: str = "minmax"  # or "percentile": clips rare activation outliers that MinMax stretches to


CALIBRATION_METHODS = {
    "minmax": lambda m: m.MinMax,
    "minmax-avg": lambda m: m.MinMax,  # per-batch ranges averaged instead of the extreme over all batches
    "percentile": lambda m: m.Percentile,
    "entropy": lambda m: m.Entropy,
}

# Fastest first: each plan keeps more convolutions in float than the one before (depthwise
# convolutions are the classic post-training failure of MobileNet/EfficientNet; projection and
# early expand convolutions next). Which plan passed, and each attempt's drops, are in the manifest.
PLANS = (
    QuantPlan("pointwise/entropy", ("Conv",), ("first_conv", "squeeze_excite", "depthwise", "last_conv"), "entropy"),
    QuantPlan(
        "expand/minmax-avg",
        ("Conv",),
        ("first_conv", "squeeze_excite", "depthwise", "project", "last_conv"),
        "minmax-avg",
    ),
    QuantPlan(
        "late-expand/minmax-avg",
        ("Conv",),
        ("first_conv", "squeeze_excite", "depthwise", "project", "last_conv", "early_expand"),
        "minmax-avg",
    ),
)


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds calibration batches to ORT's calibrator, with a progress bar.

    ``__len__``/``set_range`` let ORT collect in strides (``CalibStridedMinMax``), so histogram
    calibration holds a few batches of activations at a time instead of the whole set.
    """

    def __init__(self, batch: np.ndarray, batch_size: int = CALIB_BATCH, progress: bool = True):
        self.batch, self.batch_size = batch, batch_size
        self.starts = list(range(0, len(batch), batch_size))
        self._bar = tqdm(total=len(batch), desc="INT8 calibration", unit="img", disable=not progress, leave=False)
        self.set_range(0, len(self.starts))

    def __len__(self) -> int:
        return len(self.starts)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._queue = iter(self.starts[start_index:end_index])

    def stride(self, most: int = 4) -> int:
        """Batches per collection step: the largest divisor of the batch count up to ``most``."""
        return next(s for s in range(min(most, len(self)), 0, -1) if len(self) % s == 0)

    def get_next(self):
        start = next(self._queue, None)
        if start is None:
            return None
        chunk = self.batch[start : start + self.batch_size]
        self._bar.update(len(chunk))
        if self._bar.n >= len(self.batch):
            self._bar.close()
        return {"image": chunk}


def nodes_kept_float(proto, keep: tuple[str, ...]) -> list[str]:
    """Names of the nodes that ``keep`` asks to leave unquantized, found by role in the graph."""
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    names: list[str] = []
    if "first_conv" in keep and convs:
        names.append(convs[0].name)
    if "last_conv" in keep and convs:
        names.append(convs[-1].name)
    if "depthwise" in keep:
        # per-tensor activation ranges of depthwise convolutions are the classic PTQ failure of
        # MobileNet/EfficientNet (BN-folded channels of very different scales); they are cheap anyway
        names += [node.name for node in convs if any(a.name == "group" and a.i > 1 for a in node.attribute)]
    if "project" in keep:
        # MBConv projection convs read the squeeze-excited tensor (a Mul) and write the residual stream
        producers = {out: node for node in proto.graph.node for out in node.output}
        names += [
            node.name
            for node in convs
            if getattr(producers.get(node.input[0]), "op_type", None) == "Mul"
            and not any(a.name == "group" and a.i > 1 for a in node.attribute)
        ]
    if "squeeze_excite" in keep:
        # squeeze-excite convolutions run on the globally pooled 1x1 map; tf2onnx keeps Keras's layer names
        names += [node.name for node in convs if "_se_" in node.name]
    if "early_expand" in keep:
        # the remaining (expand) convolutions of the first half of the network, in graph order
        expand = [node.name for node in convs if node.name not in set(names)]
        names += expand[: len(expand) // 2]
    return sorted(set(names))


def quantize(source: Path, target: Path, calibration: np.ndarray, plan: QuantPlan, progress: bool = True) -> dict:
    """Quantize ``source`` into ``target`` following ``plan``; return what was done."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="fashion-int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        try:
            # symbolic shape inference, when it gives up, saves its partial graph into the working directory
            # ("sym_shape_infer_temp.onnx" + data): let it write into the scratch folder, not the user's
            with contextlib.chdir(work):
                quant_pre_process(str(Path(source).resolve()), str(prepared), skip_symbolic_shape=False)
            preprocessed = True
        except Exception:  # pre-processing is an optimisation; quantizing the plain graph still works
            prepared, preprocessed = source, False
        excluded = nodes_kept_float(onnx.load_model(str(prepared)), plan.keep_float)

        reader = ImageCalibrationReader(calibration, progress=progress)
        quantize_static(
            str(prepared),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(plan.op_types),
            nodes_to_exclude=excluded,
            calibrate_method=CALIBRATION_METHODS[plan.calibration](CalibrationMethod),
            extra_options={
                "CalibStridedMinMax": reader.stride(),
                "CalibPercentile": 99.999,
                "CalibMovingAverage": plan.calibration == "minmax-avg",
            },
        )
    return {
        "plan": plan.name,
        "op_types_quantized": list(plan.op_types),
        "nodes_kept_float": excluded,
        "calibration_method": plan.calibration,
        "quant_pre_process": preprocessed,
        "calibration_images": int(len(calibration)),
        "format": "QDQ",
        "per_channel": True,
        "activations": "uint8",
        "weights": "int8",
    }
