"""TensorRT 10 engines (FP16, INT8) built from the FP32 ONNX.

Needs the ``gpu`` extra (tensorrt, cuda-python) and an NVIDIA GPU. ``tensorrt_status()`` says
plainly what is missing so the driver can skip (implicit request) or fail (``--tensorrt``, exit 4).
Device memory and the CUDA calls go through ``fashion.runtime.backends._cuda``, the helpers the
runtime's TensorRT backend uses; the TensorRT stage gates each engine by opening it with that backend.

Engines are specific to a GPU architecture and a TensorRT version, so both are in the file name
(``model_fp16.sm89.trt10.3.engine``) and in the manifest entry (``compute_capability``,
``tensorrt_version``), which the runtime's TensorRT backend checks before loading.

- One optimisation profile on ``image``: min batch 1, opt ``max_batch // 2``, max ``max_batch``.
- A timing cache is loaded before and saved after each build, so rebuilds are fast.
- FP16: if the engine disagrees with FP32 ONNX beyond the gate, it is rebuilt with the numerically
  sensitive layers (softmax, reductions/pooling, matrix products, sigmoid gates) pinned to FP32
  (layer precision + OBEY_PRECISION_CONSTRAINTS).
- INT8: entropy calibration on training images, with a calibration cache beside the timing cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.backends import _cuda
from fashion.runtime.errors import BackendUnavailableError

from .errors import ExportError, TensorRTUnavailable

INPUT = "image"
FP32_FALLBACK_LAYER_TYPES = ("SOFTMAX", "REDUCE", "POOLING", "MATRIX_MULTIPLY", "ACTIVATION")


def _import() -> Any:
    """tensorrt, after checking cuda-python too; TensorRTUnavailable (exit 4) naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not installed ({exc}); install fashion-edge[gpu] on a machine with an NVIDIA GPU"
        ) from None
    try:
        _cuda.cudart()
    except BackendUnavailableError as exc:
        raise TensorRTUnavailable(str(exc)) from None
    return trt


def tensorrt_status() -> tuple[bool, str]:
    """(available, reason): TensorRT and cuda-python import and a CUDA GPU is visible."""
    try:
        trt = _import()
        count = _cuda.device_count()
    except TensorRTUnavailable as exc:
        return False, str(exc)
    except Exception as exc:  # driver missing, no device, ...
        return False, f"no usable CUDA GPU ({exc})"
    if count < 1:
        return False, "no CUDA GPU visible"
    return True, f"TensorRT {trt.__version__}, {count} GPU(s), compute capability {_cuda.compute_capability()}"


def engine_facts() -> dict[str, str]:
    """What an engine built here is tied to: {"compute_capability", "tensorrt_version"}."""
    return {"compute_capability": _cuda.compute_capability(), "tensorrt_version": _import().__version__}


def engine_file_name(precision: str, capability: str | None = None, trt_version: str | None = None) -> str:
    """model_fp16.sm89.trt10.3.engine (this GPU and TensorRT unless given)."""
    if capability is None or trt_version is None:
        facts = engine_facts()
        capability, trt_version = facts["compute_capability"], facts["tensorrt_version"]
    major_minor = ".".join(trt_version.split(".")[:2])
    return f"model_{precision}.sm{capability.replace('.', '')}.trt{major_minor}.engine"


def _calibrator(trt, images: np.ndarray, batch_size: int, cache_path: Path):
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.buffers = _cuda.DeviceBuffers()
            self.device = self.buffers.get("calibration", batch_size * images[0].nbytes)

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            if self.position + batch_size > len(images):
                return None
            chunk = np.ascontiguousarray(images[self.position : self.position + batch_size], dtype=np.float32)
            self.position += batch_size
            _cuda.copy_to_device(self.device, chunk)
            return [self.device]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed after 10.x)")
    return EntropyCalibrator()


def build_engine(
    onnx_path: Path,
    precision: str,
    height: int,
    width: int,
    max_batch: int,
    cache_dir: Path,
    calibration: np.ndarray | None = None,
    fp32_fallback: bool = False,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine; caches live in ``cache_dir``."""
    trt = _import()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    opt = max(1, max_batch // 2)
    profile.set_shape(INPUT, (1, height, width, 3), (opt, height, width, 3), (max_batch, height, width, 3))
    config.add_optimization_profile(profile)

    tag = f"sm{_cuda.compute_capability().replace('.', '')}.trt{trt.__version__}"
    timing_path = cache_dir / f"timing.{tag}.cache"
    timing_cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    buffers = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _calibrator(trt, calibration, min(16, len(calibration)), cache_dir / f"calibration.{tag}.cache")
        buffers = calibrator.buffers
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    if fp32_fallback:
        sensitive = {getattr(trt.LayerType, name) for name in FP32_FALLBACK_LAYER_TYPES if hasattr(trt.LayerType, name)}
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if layer.type in sensitive:
                layer.precision = trt.float32
                for output in range(layer.num_outputs):
                    layer.set_output_type(output, trt.float32)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if buffers is not None:
            buffers.free()
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_path} (see the log above)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)
