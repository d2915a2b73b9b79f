"""ONNX FP32 -> FP16 (weights and activations), inputs and outputs kept FP32.

Gate against the FP32 ONNX on the parity images: argmax agreement per head >= 99%; the max abs
difference is reported. If plain conversion fails the gate, it is retried with the numerically
sensitive ops (softmax, pooling/reductions, the heads' matrix products) kept in FP32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import GateError

MIN_AGREEMENT = 0.99
SENSITIVE_OPS = ["Softmax", "GlobalAveragePool", "ReduceMean", "MatMul", "Gemm"]


def to_fp16(proto, op_block_list: list[str] | None = None):
    from onnxconverter_common import float16

    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(op_block_list or []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one "truncated to 1e-07" warning per tiny weight
        return float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked)


def export_onnx_fp16(fp32_path: Path, fp32_entry: dict, batch: np.ndarray, reference: dict[str, np.ndarray],
                     heads: list[str], target: Path, min_agreement: float = MIN_AGREEMENT) -> dict:
    """Write the FP16 model to ``target`` if it passes; return its manifest fields, or raise GateError."""
    import onnx
    import onnxconverter_common

    from .artifacts import staged_file
    from .checks import compare, run_onnx

    source = onnx.load_model(str(fp32_path))
    outputs = fp32_entry["outputs"]
    attempts = []
    for extra_blocked in ([], SENSITIVE_OPS):
        try:
            with staged_file(target) as staged:
                onnx.save_model(to_fp16(source, extra_blocked), staged)
                onnx.checker.check_model(str(staged))
                report = compare(reference, run_onnx(staged, batch, outputs), heads)
                worst = min(r["argmax_agreement"] for r in report.values())
                attempts.append({"kept_fp32_ops": extra_blocked, "min_argmax_agreement": worst})
                if worst < min_agreement:
                    raise _Retry()
        except _Retry:
            continue
        return {
            "format": "onnx", "precision": "fp16", "opset": fp32_entry["opset"],
            "input": fp32_entry.get("input", "image"), "outputs": outputs,
            "feature_map": fp32_entry.get("feature_map"), "io_precision": "fp32", "kept_fp32_ops": extra_blocked,
            "tool_versions": {**fp32_entry.get("tool_versions", {}),
                              "onnxconverter_common": onnxconverter_common.__version__},
            "parity": {"reference": "onnx_fp32", "images": int(len(batch)), "min_argmax_agreement": min_agreement,
                       "heads": report},
        }
    raise GateError(f"ONNX FP16 refused by the parity gate (argmax agreement below {min_agreement:.0%} "
                    f"vs FP32 on {len(batch)} images): {attempts}")


class _Retry(Exception):
    """Internal: this attempt failed its gate; the staged file is discarded and the next attempt runs."""
