"""ONNX FP32 -> FP16 (weights and activations), inputs and outputs kept FP32.

The FP16 stage gates the result against the FP32 ONNX on the parity images (per-head top-1
agreement, ``gates.FP16_MIN_AGREEMENT``; the max abs difference is recorded). If plain conversion
fails the gate, it is retried with the numerically sensitive ops (softmax, pooling/reductions,
the heads' matrix products) kept in FP32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

SENSITIVE_OPS = ["Softmax", "GlobalAveragePool", "ReduceMean", "MatMul", "Gemm"]


def to_fp16(proto, op_block_list: list[str] | None = None):
    from onnxconverter_common import float16

    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(op_block_list or []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one "truncated to 1e-07" warning per tiny weight
        return float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked)


def write_fp16(fp32_path: Path, target: Path, kept_fp32_ops: list[str]) -> dict[str, str]:
    """Write the FP16 conversion of ``fp32_path`` to ``target``; return the converter's version."""
    import onnx
    import onnxconverter_common

    onnx.save_model(to_fp16(onnx.load_model(str(fp32_path)), kept_fp32_ops), target)
    onnx.checker.check_model(str(target))
    return {"onnxconverter_common": onnxconverter_common.__version__}
