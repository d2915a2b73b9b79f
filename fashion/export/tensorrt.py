"""TensorRT 10 engines (FP16, INT8) built from the FP32 ONNX, with parity/accuracy gates.

Needs the ``gpu`` extra (tensorrt, cuda-python) and an NVIDIA GPU. ``tensorrt_status()`` says
plainly what is missing so the caller can skip (implicit request) or fail (``--tensorrt``).

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

import numpy as np

from .errors import GateError, TensorRTUnavailable

INPUT = "image"
FP32_FALLBACK_LAYER_TYPES = ("SOFTMAX", "REDUCE", "POOLING", "MATRIX_MULTIPLY", "ACTIVATION")


def _import():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not installed ({exc}); install fashion-edge[gpu] on a machine with an NVIDIA GPU") from None
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError as exc:
            raise TensorRTUnavailable(f"cuda-python is not installed ({exc}); install fashion-edge[gpu]") from None
    return trt, cudart


def _check(result):
    """cuda-python returns (error, value...); raise on error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA call failed: {error}")
    return values[0] if len(values) == 1 else tuple(values)


def tensorrt_status() -> tuple[bool, str]:
    """(available, reason): TensorRT and cuda-python import and a CUDA GPU is visible."""
    try:
        trt, cudart = _import()
        count = _check(cudart.cudaGetDeviceCount())
    except TensorRTUnavailable as exc:
        return False, str(exc)
    except Exception as exc:  # driver missing, no device, ...
        return False, f"no usable CUDA GPU ({exc})"
    if count < 1:
        return False, "no CUDA GPU visible"
    return True, f"TensorRT {trt.__version__}, {count} GPU(s), compute capability {compute_capability()}"


def compute_capability(device: int = 0) -> str:
    _, cudart = _import()
    attr = cudart.cudaDeviceAttr
    major = _check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device))
    minor = _check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device))
    return f"{major}.{minor}"


def engine_file_name(precision: str, capability: str, trt_version: str) -> str:
    """model_fp16.sm89.trt10.3.engine"""
    major_minor = ".".join(trt_version.split(".")[:2])
    return f"model_{precision}.sm{capability.replace('.', '')}.trt{major_minor}.engine"


class _DeviceBuffers:
    """Device allocations freed together."""

    def __init__(self, cudart):
        self.cudart, self.pointers = cudart, []

    def alloc(self, nbytes: int) -> int:
        pointer = _check(self.cudart.cudaMalloc(max(int(nbytes), 1)))
        self.pointers.append(pointer)
        return int(pointer)

    def free(self) -> None:
        for pointer in self.pointers:
            self.cudart.cudaFree(pointer)
        self.pointers = []


def _calibrator(trt, cudart, images: np.ndarray, batch_size: int, cache_path: Path):
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.buffers = _DeviceBuffers(cudart)
            self.device = self.buffers.alloc(batch_size * images[0].nbytes)

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            if self.position + batch_size > len(images):
                return None
            chunk = np.ascontiguousarray(images[self.position : self.position + batch_size], dtype=np.float32)
            self.position += batch_size
            _check(cudart.cudaMemcpy(self.device, chunk.ctypes.data, chunk.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [self.device]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed after 10.x)")
    return EntropyCalibrator()


def build_engine(onnx_path: Path, precision: str, height: int, width: int, max_batch: int, cache_dir: Path,
                 calibration: np.ndarray | None = None, fp32_fallback: bool = False) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine; caches live in ``cache_dir``."""
    trt, cudart = _import()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    opt = max(1, max_batch // 2)
    profile.set_shape(INPUT, (1, height, width, 3), (opt, height, width, 3), (max_batch, height, width, 3))
    config.add_optimization_profile(profile)

    tag = f"sm{compute_capability().replace('.', '')}.trt{trt.__version__}"
    timing_path = cache_dir / f"timing.{tag}.cache"
    timing_cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    buffers = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _calibrator(trt, cudart, calibration, min(16, len(calibration)),
                                 cache_dir / f"calibration.{tag}.cache")
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
        raise RuntimeError(f"TensorRT failed to build a {precision} engine from {onnx_path} (see the log above)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def run_engine(engine_bytes: bytes, batch: np.ndarray, outputs: dict[str, str], max_batch: int) -> dict[str, np.ndarray]:
    """Run a serialized engine over ``batch`` in chunks of ``max_batch``; outputs keyed like ``outputs``."""
    trt, cudart = _import()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    stream = _check(cudart.cudaStreamCreate())
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    results: dict[str, list[np.ndarray]] = {key: [] for key in outputs}
    try:
        for start in range(0, len(batch), max_batch):
            chunk = np.ascontiguousarray(batch[start : start + max_batch], dtype=np.float32)
            context.set_input_shape(INPUT, chunk.shape)
            buffers, host = _DeviceBuffers(cudart), {}
            try:
                for name in names:
                    if name == INPUT:
                        pointer = buffers.alloc(chunk.nbytes)
                        _check(cudart.cudaMemcpy(pointer, chunk.ctypes.data, chunk.nbytes,
                                                 cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
                    else:
                        shape = tuple(context.get_tensor_shape(name))
                        array = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
                        pointer = buffers.alloc(array.nbytes)
                        host[name] = (array, pointer)
                    context.set_tensor_address(name, pointer)
                if not context.execute_async_v3(int(stream)):
                    raise RuntimeError("TensorRT execution failed")
                _check(cudart.cudaStreamSynchronize(stream))
                for key, name in outputs.items():
                    array, pointer = host[name]
                    _check(cudart.cudaMemcpy(array.ctypes.data, pointer, array.nbytes,
                                             cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
                    results[key].append(array.astype(np.float32))
            finally:
                buffers.free()
    finally:
        cudart.cudaStreamDestroy(stream)
    return {key: np.concatenate(chunks) for key, chunks in results.items()}


def export_engine(root: Path, fp32_path: Path, fp32_entry: dict, precision: str, heads: list[str],
                  height: int, width: int, max_batch: int, cache_dir: Path, parity_batch: np.ndarray,
                  reference: dict[str, np.ndarray], calibration: np.ndarray | None = None,
                  val_batch: np.ndarray | None = None, val_labels: dict | None = None,
                  max_drop_pp: float = 1.0, min_agreement: float = 0.99) -> tuple[str, dict]:
    """Build, gate and write one engine into the bundle; return (file name, manifest fields)."""
    import tensorrt as trt

    from .artifacts import staged_file
    from .checks import accuracy, compare, run_onnx
    from .int8 import accuracy_gate

    outputs = fp32_entry["outputs"]
    capability = compute_capability()
    name = engine_file_name(precision, capability, trt.__version__)
    attempts = []
    for fp32_fallback in (False, True):
        engine = build_engine(fp32_path, precision, height, width, max_batch, cache_dir, calibration, fp32_fallback)
        if precision == "fp16":
            report = compare(reference, run_engine(engine, parity_batch, outputs, max_batch), heads)
            worst = min(r["argmax_agreement"] for r in report.values())
            attempts.append({"fp32_fallback": fp32_fallback, "min_argmax_agreement": worst})
            gate = {"reference": "onnx_fp32", "images": int(len(parity_batch)), "heads": report}
            passed = worst >= min_agreement
        else:
            fp32_accuracy = accuracy(run_onnx(fp32_path, val_batch, outputs), val_labels, heads)
            engine_accuracy = accuracy(run_engine(engine, val_batch, outputs, max_batch), val_labels, heads)
            passed, drops = accuracy_gate(fp32_accuracy, engine_accuracy, max_drop_pp)
            attempts.append({"fp32_fallback": fp32_fallback, "drop_pp": drops})
            gate = {"split": "val", "images": int(len(val_batch)), "max_drop_pp": max_drop_pp,
                    "fp32": fp32_accuracy, "int8": engine_accuracy, "drop_pp": drops}
        if passed:
            with staged_file(root / name) as staged:
                staged.write_bytes(engine)
            return name, {
                "format": "tensorrt", "precision": precision, "opset": fp32_entry["opset"], "input": INPUT,
                "outputs": outputs, "feature_map": fp32_entry.get("feature_map"),
                "compute_capability": capability, "tensorrt_version": trt.__version__,
                "max_batch": max_batch, "profile": {"min": 1, "opt": max(1, max_batch // 2), "max": max_batch},
                "fp32_fallback_layers": list(FP32_FALLBACK_LAYER_TYPES) if fp32_fallback else [],
                "tool_versions": {**fp32_entry.get("tool_versions", {}), "tensorrt": trt.__version__},
                "gate": gate, "attempts": attempts,
            }
    raise GateError(f"TensorRT {precision} engine refused by its gate: {attempts}")

