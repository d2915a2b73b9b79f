"""Native TensorRT backend (TensorRT 10 name-based tensor API, device memory through cuda-python).

An engine only runs on the GPU architecture and TensorRT version it was built with, so the
manifest entry written by ``fashion-export`` records both ("compute_capability", e.g. "8.9", and
"tensorrt_version") and this backend refuses a mismatch with a message saying how to rebuild.
The batch dimension is dynamic within the engine's optimisation profile; larger batches are split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, BundleError
from ..manifest import ArtifactEntry
from . import _cuda
from ._cuda import INSTALL_HINT
from .base import FEATURE_MAP, Backend

trt: Any = None


def _require_gpu_packages() -> None:
    """Import tensorrt and cuda-python on first use, so this module imports (and its checks test) anywhere."""
    global trt
    if trt is None:
        try:
            import tensorrt
        except ImportError:
            raise BackendUnavailableError(
                f"the tensorrt backend needs the 'tensorrt' package; {INSTALL_HINT}"
            ) from None
        trt = tensorrt
    _cuda.cudart()  # raises BackendUnavailableError naming cuda-python when it is missing


def current_compute_capability(device: int = 0) -> str:
    return _cuda.compute_capability(device)


def tensorrt_version() -> str:
    """The installed TensorRT's version (imports it; BackendUnavailableError when missing)."""
    _require_gpu_packages()
    return str(trt.__version__)


def check_engine_compatibility(
    path: Path, entry: ArtifactEntry, compute_capability: str, tensorrt_version: str
) -> None:
    """Refuse an engine recorded as built for another GPU architecture or TensorRT version.

    Both are facts the exporter records beside the engine (``compute_capability``, ``tensorrt_version`` or
    ``tool_versions.tensorrt``), kept in the entry's ``extra``.
    """
    built_cc = entry.extra.get("compute_capability")
    built_trt = entry.extra.get("tensorrt_version") or (entry.extra.get("tool_versions") or {}).get("tensorrt")
    if built_cc is not None and str(built_cc) != compute_capability:
        raise BundleError(
            f"{path}: engine was built for GPU compute capability {built_cc}, this GPU is {compute_capability}; "
            "rebuild it here with fashion-export --tensorrt (or use the ONNX artifact)"
        )
    if built_trt is not None and str(built_trt) != tensorrt_version:
        raise BundleError(
            f"{path}: engine was built with TensorRT {built_trt}, this machine has {tensorrt_version}; "
            "engines are not portable across TensorRT versions, rebuild it with fashion-export --tensorrt"
        )


class TensorRTBackend(Backend):
    name = "tensorrt"
    thread_safe = False  # one execution context, one set of device buffers: calls are serialised

    def __init__(self, engine: trt.ICudaEngine, path: Path, outputs: dict[str, str], feature_map: str | None):
        self.path = path
        self.engine = engine
        self.context = engine.create_execution_context()
        self.outputs = outputs
        self.feature_map_name = feature_map
        self.providers = [f"TensorRT {trt.__version__}"]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise BundleError(f"{path}: expected one input tensor, engine has {inputs}")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n != self.input_name]
        # get_tensor_profile_shape returns (min, opt, max) for profile 0.
        self.max_batch = int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.stream = _cuda.create_stream()
        self._runtime: Any = None  # the TensorRT runtime that deserialized the engine must outlive it
        self.buffers = _cuda.DeviceBuffers()

    @classmethod
    def open(
        cls,
        path: Path,
        entry: ArtifactEntry,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        allow_fallback: bool = False,
        device: int = 0,
        **_: Any,
    ) -> TensorRTBackend:
        _require_gpu_packages()
        if not trt.__version__.startswith("10."):
            raise BackendUnavailableError(f"TensorRT {trt.__version__} found; this backend needs TensorRT 10")
        try:
            _cuda.set_device(device)
            compute_capability = current_compute_capability(device)
        except RuntimeError as exc:
            raise BackendUnavailableError(f"no usable CUDA GPU ({exc}); {INSTALL_HINT}") from None
        check_engine_compatibility(Path(path), entry, compute_capability, trt.__version__)

        logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise BundleError(
                f"{path}: TensorRT {trt.__version__} could not deserialize this engine "
                f"(corrupt, or built for another GPU/TensorRT version)"
            )
        outputs = dict(entry.outputs or {})
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        unknown = {head: name for head, name in outputs.items() if name not in names}
        if not outputs or unknown:
            raise BundleError(
                f"{path}: manifest outputs {unknown or '(none recorded)'} are not tensors of this "
                f"engine (tensors: {sorted(names)})"
            )
        feature_map = entry.feature_map
        backend = cls(engine, Path(path), outputs, feature_map if feature_map in names else None)
        backend._runtime = runtime  # the runtime must outlive the engine
        return backend

    def output_sizes(self) -> dict[str, int | None]:
        sizes = {}
        for head, name in self.outputs.items():
            last = int(self.engine.get_tensor_shape(name)[-1])
            sizes[head] = last if last > 0 else None
        return sizes

    def _run(self, batch: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
        host_input = np.ascontiguousarray(batch, dtype=self.dtypes[self.input_name])
        self.context.set_input_shape(self.input_name, host_input.shape)
        pointer = self.buffers.get(self.input_name, host_input.nbytes)
        _cuda.copy_to_device(pointer, host_input, self.stream)
        self.context.set_tensor_address(self.input_name, pointer)
        results = {}
        for name in self.output_names:  # every output needs an address, even the ones not wanted
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=self.dtypes[name])
            self.context.set_tensor_address(name, self.buffers.get(name, results[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        for name in wanted:
            _cuda.copy_to_host(results[name], self.buffers.pointer(name), self.stream)
        _cuda.synchronize(self.stream)
        return {name: results[name] for name in wanted}

    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        keys = dict(self.outputs)
        if feature_map:
            if not self.feature_map_name:
                raise BundleError(f"{self.path}: this engine has no feature_map output (needed for cam())")
            keys[FEATURE_MAP] = self.feature_map_name
        chunks = [
            self._run(batch[i : i + self.max_batch], list(keys.values())) for i in range(0, len(batch), self.max_batch)
        ]
        return {key: np.concatenate([c[name] for c in chunks]).astype(np.float32) for key, name in keys.items()}

    def close(self) -> None:
        if getattr(self, "buffers", None) is not None:
            self.buffers.free()
        if getattr(self, "stream", None) is not None:
            _cuda.destroy_stream(self.stream)
            self.stream = None
        self.context = None
        self.engine = None
