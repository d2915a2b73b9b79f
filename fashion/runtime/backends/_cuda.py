"""The cuda-python calls the TensorRT code needs, in one place: import, error checks, device facts, buffers.

Both the TensorRT backend (running engines) and the exporter (INT8 calibration while building
engines) use these helpers, so there is one way to allocate, copy and free device memory.
Everything imports lazily: this module imports on machines without CUDA, and only the first call
that needs the GPU raises :class:`BackendUnavailableError` with what to install.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailableError

INSTALL_HINT = (
    "install the GPU extra: pip install 'fashion-edge[gpu]' (tensorrt>=10, cuda-python) on a machine with an NVIDIA GPU"
)

_cudart: Any = None


def cudart() -> Any:
    """The cuda-python runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` on older releases)."""
    global _cudart
    if _cudart is None:
        try:
            from cuda.bindings import runtime  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart as runtime  # older cuda-python layout
            except ImportError:
                raise BackendUnavailableError(f"TensorRT needs 'cuda-python'; {INSTALL_HINT}") from None
        _cudart = runtime
    return _cudart


def check(result: Any) -> Any:
    """cuda-python calls return ``(error, *values)``: raise on an error, return the value (or values)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA call failed: {error}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    return int(check(cudart().cudaGetDeviceCount()))


def compute_capability(device: int = 0) -> str:
    """The compute capability "major.minor" of ``device``, e.g. "9.0" for an H100 (engines are tied to it)."""
    props = check(cudart().cudaGetDeviceProperties(device))
    return f"{props.major}.{props.minor}"


def set_device(device: int) -> None:
    check(cudart().cudaSetDevice(device))


def create_stream() -> Any:
    return check(cudart().cudaStreamCreate())


def destroy_stream(stream: Any) -> None:
    cudart().cudaStreamDestroy(stream)


def synchronize(stream: Any) -> None:
    check(cudart().cudaStreamSynchronize(stream))


def copy_to_device(pointer: int, array: np.ndarray, stream: Any = None) -> None:
    """Copy a C-contiguous host array to ``pointer`` (asynchronously on ``stream`` when given)."""
    runtime = cudart()
    kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
    if stream is None:
        check(runtime.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, kind))
    else:
        check(runtime.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, stream))


def copy_to_host(array: np.ndarray, pointer: int, stream: Any = None) -> None:
    """Fill a C-contiguous host array from ``pointer`` (asynchronously on ``stream`` when given)."""
    runtime = cudart()
    kind = runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
    if stream is None:
        check(runtime.cudaMemcpy(array.ctypes.data, pointer, array.nbytes, kind))
    else:
        check(runtime.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, stream))


class DeviceBuffers:
    """Named device allocations that grow on demand and are freed together.

    ``get(name, nbytes)`` returns a pointer to at least ``nbytes`` bytes, reusing the previous
    allocation of that name when it is large enough, so running batch after batch allocates once.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes allocated)

    def get(self, name: str, nbytes: int) -> int:
        pointer, allocated = self._buffers.get(name, (0, 0))
        if allocated < nbytes:
            if pointer:
                check(cudart().cudaFree(pointer))
            pointer = int(check(cudart().cudaMalloc(max(int(nbytes), 1))))
            self._buffers[name] = (pointer, max(int(nbytes), 1))
        return pointer

    def pointer(self, name: str) -> int:
        return self._buffers[name][0]

    def free(self) -> None:
        """Release every allocation (safe to call twice)."""
        if self._buffers and _cudart is not None:
            for pointer, _ in self._buffers.values():
                _cudart.cudaFree(pointer)
        self._buffers = {}
