"""Start NVIDIA Triton Inference Server (through PyTriton) with the bundle's three models.

    fashion            image (BYTES [1]) -> <head> (FP32 [classes]), <head>_label (BYTES [1]),
                       <head>_confidence (FP32 [1]), error (BYTES [1])          dynamic batching
    fashion_tensor     image (FP32 [H, W, 3]) or image_uint8 (UINT8 [H, W, 3]) -> same outputs
    fashion_info       query (BYTES [1]) -> info (BYTES [1]): heads, labels, hierarchy as JSON

PyTriton runs ``tritonserver`` as a child process; the models' Python code runs in this process and
the server's Python-backend stubs forward the batches to it.
"""

from __future__ import annotations

import ctypes.util
import glob
import logging
import os
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashion.runtime import Classifier
from fashion.runtime.remote import (
    INPUT_IMAGE,
    INPUT_IMAGE_UINT8,
    INPUT_QUERY,
    MODEL_BYTES,
    MODEL_INFO,
    MODEL_TENSOR,
    OUTPUT_ERROR,
    OUTPUT_INFO,
    confidence_output,
    label_output,
)

from .errors import ServeError, ServeUnavailable
from .models import DEFAULT_MAX_IMAGE_BYTES, BytesModel, InfoModel, TensorModel

# Endpoints that need PyTriton's access token. Statistics stay open (read-only, what monitoring and the
# load generator read); model loading/unloading, shared memory, tracing and log settings stay closed.
RESTRICTED_ENDPOINTS = ["shared-memory", "model-repository", "trace", "logging"]
# Seconds Triton waits for in-flight requests when stopping (its default, 30, makes every restart slow).
EXIT_TIMEOUT_S = 5


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 32
    max_queue_delay_us: int = 2000
    instances: int = 1
    threads: int | None = None
    backend: str = "auto"
    precision: str = "auto"
    providers: tuple[str, ...] = ()
    allow_fallback: bool = False
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    http_threads: int | None = None


def fix_libpython(environ: dict[str, str] | None = None) -> str | None:
    """Make Triton's Python-backend stub load this interpreter's libpython, not the system's.

    The stub is a separate binary linked against ``libpythonX.Y.so``; with a non-system interpreter
    (pyenv, a self-built Python) the dynamic loader finds the distribution's copy first, and the model
    start fails with errors such as ``'_thread.RLock' object has no attribute '_recursion_count'``.
    Putting this interpreter's ``LIBDIR`` first on ``LD_LIBRARY_PATH`` (inherited by ``tritonserver``
    and its stubs) fixes that. Returns a sentence saying what was done, or None when nothing was needed.
    """
    environ = os.environ if environ is None else environ
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if not libdir or not glob.glob(os.path.join(libdir, "libpython*.so*")):
        found = ctypes.util.find_library(f"python{sysconfig.get_python_version()}")
        return (
            None
            if found
            else (
                f"no shared libpython for this interpreter ({ldlibrary or 'static build'}); "
                "Triton's Python backend may load another one"
            )
        )
    current = [p for p in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if current[:1] == [libdir]:
        return None
    environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + [p for p in current if p != libdir])
    return f"LD_LIBRARY_PATH: put {libdir} first so Triton's Python backend loads this interpreter's libpython"


def load_classifiers(bundle: str, options: ServeOptions) -> list[Classifier]:
    """One classifier (its own session) per model instance, so instances run batches side by side."""
    return [
        Classifier.load(
            bundle,
            backend=options.backend,
            precision=options.precision,
            providers=list(options.providers) or None,
            threads=options.threads,
            allow_fallback=options.allow_fallback,
        )
        for _ in range(options.instances)
    ]


def _tensors(classifier: Classifier) -> dict[str, Any]:
    from pytriton.model_config import Tensor

    height, width = classifier.input_size
    outputs = [Tensor(name=OUTPUT_ERROR, dtype=bytes, shape=(1,))]
    for head in classifier.heads:
        outputs += [
            Tensor(name=head, dtype=np.float32, shape=(len(classifier.bundle.labels[head]),)),
            Tensor(name=label_output(head), dtype=bytes, shape=(1,)),
            Tensor(name=confidence_output(head), dtype=np.float32, shape=(1,)),
        ]
    return {
        "bytes_inputs": [Tensor(name=INPUT_IMAGE, dtype=bytes, shape=(1,))],
        "tensor_inputs": [
            Tensor(name=INPUT_IMAGE, dtype=np.float32, shape=(height, width, 3), optional=True),
            Tensor(name=INPUT_IMAGE_UINT8, dtype=np.uint8, shape=(height, width, 3), optional=True),
        ],
        "outputs": outputs,
    }


def _check_numpy() -> None:
    """PyTriton 0.7 serialises BYTES tensors the numpy-1 way: under numpy 2 its Python-backend stub dies on the
    first image (``unpack_from requires a buffer of at least ... bytes``). Refuse to start instead."""
    from importlib.metadata import version

    pytriton_version = version("nvidia-pytriton")
    if int(np.__version__.split(".")[0]) >= 2 and pytriton_version.startswith("0.7"):
        raise ServeUnavailable(
            f"nvidia-pytriton {pytriton_version} needs numpy<2 (this environment has numpy "
            f"{np.__version__}); serve from its own environment: make serve-env"
        )


def build_triton(classifiers: list[Classifier], options: ServeOptions):
    """A configured (not yet started) ``pytriton.triton.Triton`` with the three models bound."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as exc:
        raise ServeUnavailable(
            f"PyTriton is not installed ({exc}); install the serve extra: pip install 'fashion-edge[serve]'"
        ) from None

    _check_numpy()
    config = TritonConfig(
        http_address=options.host,
        http_port=options.http_port,
        grpc_address=options.host,
        grpc_port=options.grpc_port,
        metrics_address=options.host,
        metrics_port=options.metrics_port,
        allow_metrics=True,
        allow_cpu_metrics=True,
        http_thread_count=options.http_threads,
        log_verbose=0,
        exit_on_error=True,
        strict_readiness=True,
        exit_timeout_secs=EXIT_TIMEOUT_S,
    )
    triton = Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=RESTRICTED_ENDPOINTS))
    tensors = _tensors(classifiers[0])
    batcher = DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us)
    batched = ModelConfig(max_batch_size=options.max_batch, batcher=batcher)
    bind: Callable[..., None] = triton.bind
    bind(
        model_name=MODEL_BYTES,
        infer_func=[BytesModel(c, options.max_batch, options.max_image_bytes) for c in classifiers],
        inputs=tensors["bytes_inputs"],
        outputs=tensors["outputs"],
        config=batched,
        strict=True,
    )
    bind(
        model_name=MODEL_TENSOR,
        infer_func=[TensorModel(c, options.max_batch) for c in classifiers],
        inputs=tensors["tensor_inputs"],
        outputs=tensors["outputs"],
        config=batched,
        strict=True,
    )
    bind(
        model_name=MODEL_INFO,
        infer_func=InfoModel(classifiers[0]),
        inputs=[Tensor(name=INPUT_QUERY, dtype=bytes, shape=(1,))],
        outputs=[Tensor(name=OUTPUT_INFO, dtype=bytes, shape=(1,))],
        config=ModelConfig(batching=False),
    )
    return triton


def endpoints(options: ServeOptions) -> dict[str, str]:
    return {
        "http": f"http://{options.host}:{options.http_port}",
        "grpc": f"{options.host}:{options.grpc_port}",
        "metrics": f"http://{options.host}:{options.metrics_port}/metrics",
    }


def serve(bundle: str, options: ServeOptions, say: Callable[[str], None] = print) -> None:
    """Load the bundle, start Triton, block until interrupted (SIGINT/SIGTERM) or the server dies."""
    if options.max_batch < 1 or options.instances < 1:
        raise ServeError("--max-batch and --instances must be at least 1")
    note = fix_libpython()
    if note:
        say(note)
    classifiers = load_classifiers(bundle, options)
    info = classifiers[0].info
    logging.getLogger("pytriton").setLevel(logging.WARNING)
    triton = build_triton(classifiers, options)
    try:
        triton.run()
        urls = endpoints(options)
        say(
            f"serving {bundle} ({info['artifact']}, {info['backend']}, {options.instances} instance(s), "
            f"max batch {options.max_batch}, queue delay {options.max_queue_delay_us} us)"
        )
        say(f"  HTTP {urls['http']}  gRPC {urls['grpc']}  metrics {urls['metrics']}")
        say(f"  models: {MODEL_BYTES}, {MODEL_TENSOR}, {MODEL_INFO}; ready: {urls['http']}/v2/health/ready")
        triton.serve()
    finally:
        triton.stop()
        for clf in classifiers:
            clf.close()
