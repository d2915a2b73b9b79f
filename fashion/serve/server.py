"""Start NVIDIA Triton Inference Server (through PyTriton) with the bundle's three models.

    fashion            image (BYTES [1]) -> <head> (FP32 [classes]), <head>_label (BYTES [1]),
                       <head>_confidence (FP32 [1]), error (BYTES [1])          dynamic batching
    fashion_tensor     image (FP32 [H, W, 3]) or image_uint8 (UINT8 [H, W, 3]) -> same outputs
    fashion_info       query (BYTES [1]) -> info (BYTES [1]): heads, labels, hierarchy as JSON

PyTriton runs ``tritonserver`` as a child process; the models' Python code runs in this process and
the server's Python-backend stubs forward the batches to it. The models are written to the model store
before ``tritonserver`` starts, so Triton loads them before it opens its ports: ``/v2/health/ready`` never
answers 200 before the models can serve. :mod:`fashion.serve.supervisor` watches the tree while it serves
and takes all of it down when it stops.
"""

from __future__ import annotations

import collections
import ctypes.util
import errno
import glob
import logging
import os
import signal
import socket
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashion.runtime import Classifier
from fashion.runtime.cli_support import LoadOptions
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

from .errors import ServeError, ServerFailed, ServeUnavailable
from .front import Door, HttpFront, default_max_body
from .grpc_front import GrpcFront
from .models import DEFAULT_MAX_IMAGE_BYTES, BytesModel, InfoModel, TensorModel
from .supervisor import DRAIN_TIMEOUT_S, WATCH_PERIOD_S, Supervisor

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
    load: LoadOptions = LoadOptions()  # backend, precision, providers, threads, allow_fallback (model_options)
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_body_bytes: int | None = None  # None: max_image_bytes + 1 MiB
    http_threads: int | None = None
    verbose: bool = False

    @property
    def body_limit(self) -> int:
        return self.max_body_bytes if self.max_body_bytes is not None else default_max_body(self.max_image_bytes)


@dataclass(frozen=True)
class InternalPorts:
    """Loopback ports Triton itself listens on; only the front door (and PyTriton) talk to them."""

    http: int
    grpc: int


def internal_ports() -> InternalPorts:
    """Two ports the kernel hands out now on 127.0.0.1 (held together so they differ)."""
    held = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return InternalPorts(*(s.getsockname()[1] for s in held))
    finally:
        for s in held:
            s.close()


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
    return [Classifier.load(bundle, **options.load.load_kwargs()) for _ in range(options.instances)]


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


def build_triton(classifiers: list[Classifier], options: ServeOptions, internal: InternalPorts):
    """A configured (not yet started) ``pytriton.triton.Triton`` with the three models bound; its HTTP and gRPC
    ports are ``internal`` ones on 127.0.0.1 (the fronts listen on ``--http-port`` and ``--grpc-port``)."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy, TritonSecurityConfig
    except ImportError as exc:
        raise ServeUnavailable(
            f"PyTriton is not installed ({exc}); install the serve extra: pip install 'fashion-edge[serve]'"
        ) from None

    _check_numpy()
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=internal.http,
        grpc_address="127.0.0.1",
        grpc_port=internal.grpc,
        metrics_address=options.host,
        metrics_port=options.metrics_port,
        allow_metrics=True,
        allow_cpu_metrics=True,
        http_thread_count=options.http_threads,
        log_verbose=1 if options.verbose else 0,
        exit_on_error=True,
        strict_readiness=True,
        exit_timeout_secs=EXIT_TIMEOUT_S,
    )
    triton = Triton(
        config=config,
        security_config=TritonSecurityConfig(restricted_endpoints=RESTRICTED_ENDPOINTS),
        # the models are written to the model store before tritonserver starts, so Triton loads them
        # before it opens its ports (by default PyTriton loads them over HTTP after the server answers ready)
        triton_lifecycle_policy=TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True),
    )
    if not options.verbose:
        triton._triton_server_config["log-info"] = "false"  # noqa: SLF001 - TritonConfig has no log_info
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


def check_ports(options: ServeOptions) -> None:
    """Refuse a port another process listens on before anything starts (Triton would fail to bind it, and
    PyTriton would then talk to the other process)."""
    for flag, port in (
        ("--http-port", options.http_port),
        ("--grpc-port", options.grpc_port),
        ("--metrics-port", options.metrics_port),
    ):
        try:
            infos = socket.getaddrinfo(options.host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ServeError(f"--host {options.host}: {exc.strerror}") from None
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ServeError(f"port {port} is in use; pick {flag}") from None
                raise ServeError(f"cannot listen on {options.host}:{port} ({flag}): {exc.strerror}") from None


#: Triton log lines about CUDA, pinned memory, NVML and DCGM: expected on a machine without an NVIDIA GPU.
CPU_NOISE = ("CUDA", "CudaDriverHelper", "pinned memory", "NVML", "DCGM")


def has_nvidia_gpu() -> bool:
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")


class TritonLog:
    """Receives tritonserver's output line by line (PyTriton would print all of it).

    Triton runs at warning level unless ``--verbose``; on a machine without an NVIDIA GPU its CUDA/NVML/DCGM
    lines (all expected there) are replaced by one explanation. The last lines are kept for error messages.
    """

    def __init__(self, say: Callable[[str], None], verbose: bool, gpu: bool):
        self.say, self.verbose, self.gpu = say, verbose, gpu
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.hidden = 0
        self._partial = ""

    def __call__(self, chunk: bytes | str) -> None:
        """PyTriton hands over the output as it comes (often a character at a time): split it into lines."""
        self._partial += chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.line(line)

    def line(self, text: str) -> None:
        self.tail.append(text)
        if not self.verbose and not self.gpu and any(word in text for word in CPU_NOISE):
            if not self.hidden:
                self.say(
                    "  (no NVIDIA GPU here: Triton's CUDA, pinned-memory, NVML and DCGM messages are expected "
                    "and hidden; --verbose shows them)"
                )
            self.hidden += 1
            return
        self.say(text)


def attach_log(triton, log: TritonLog) -> None:
    """Route tritonserver's output through ``log`` (PyTriton 0.7 prints it from TritonServer._record_logs)."""
    triton._initialize_server()  # noqa: SLF001 - creates the TritonServer that run() would create
    server = triton._triton_server  # noqa: SLF001
    server._verbose = False  # noqa: SLF001
    server._record_logs = log  # noqa: SLF001 - start() hands this callable to the process as its output sink


def _watch(supervisor: Supervisor) -> str | None:
    """Block until the server fails (returns why) or is asked to stop (Ctrl-C/SIGTERM: returns None)."""
    try:
        while True:
            failure = supervisor.check()
            if failure:
                return failure
            time.sleep(WATCH_PERIOD_S)
    except KeyboardInterrupt:
        return None


def serve(bundle: str, options: ServeOptions, say: Callable[[str], None] = print) -> None:
    """Load the bundle, start Triton, block until interrupted (SIGINT/SIGTERM) or the server fails.

    Returns after a clean stop; raises :class:`ServerFailed` (exit 5) when a model process or tritonserver died
    while serving, or when stopping had to kill processes of the tree.
    """
    if options.max_batch < 1 or options.instances < 1:
        raise ServeError("--max-batch and --instances must be at least 1")
    if options.body_limit < 1:
        raise ServeError("--max-body-bytes must be at least 1")
    check_ports(options)
    note = fix_libpython()
    started = time.monotonic()
    internal = internal_ports()
    door = Door()
    http_front = HttpFront(options.host, options.http_port, internal.http, options.body_limit, door)
    grpc_front = GrpcFront(options.host, options.grpc_port, internal.grpc, options.body_limit, door)
    http_front.start()  # holds the port from now on; answers 503 until the models can serve
    try:
        _serve(bundle, options, internal, door, say, started, note, grpc_front.start)
    finally:
        grpc_front.stop()
        http_front.stop()


def _serve(
    bundle: str,
    options: ServeOptions,
    internal: InternalPorts,
    door: Door,
    say: Callable[[str], None],
    started: float,
    note: str | None,
    start_grpc: Callable[[], None],
) -> None:
    classifiers = load_classifiers(bundle, options)
    info = classifiers[0].info
    urls = endpoints(options)
    say(
        f"serving {bundle} ({info['artifact']}, {info['backend']}, {options.instances} instance(s), "
        f"max batch {options.max_batch}, queue delay {options.max_queue_delay_us} us)"
    )
    say(f"  HTTP {urls['http']}  gRPC {urls['grpc']}  metrics {urls['metrics']}")
    say(
        f"  request bodies over {options.body_limit} bytes are refused at the door (HTTP 413, gRPC "
        f"RESOURCE_EXHAUSTED); Triton itself listens on 127.0.0.1:{internal.http} (HTTP), :{internal.grpc} (gRPC)"
    )
    say(
        f"  models: {MODEL_BYTES}, {MODEL_TENSOR}, {MODEL_INFO}; starting Triton (its log: warnings and errors"
        f"{'' if not options.verbose else ', verbose'})"
    )
    if note and options.verbose:
        say(f"  {note}")
    logging.getLogger("pytriton").setLevel(logging.INFO if options.verbose else logging.WARNING)
    triton = build_triton(classifiers, options, internal)
    supervisor = Supervisor(triton, expected_stubs=2 * options.instances + 1)
    failure: str | None = None
    try:
        attach_log(triton, TritonLog(say, options.verbose, has_nvidia_gpu()))
        triton.run()
        supervisor.started()
        supervisor.wait_for_stubs()
        start_grpc()  # after tritonserver started: grpcio's threads in this process complain about fork()
        door.open()
        say(f"  ready after {time.monotonic() - started:.1f} s: {urls['http']}/v2/health/ready")
        failure = _watch(supervisor)
        door.close(failure or "the server was asked to stop (SIGTERM/Ctrl-C)")
        say(
            f"stopping: {failure}"
            if failure
            else "stopping (signal): new requests get 503 (Retry-After), those in flight finish"
        )
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the cleanup short
                signal.signal(sig, signal.SIG_IGN)
        door.close(failure or "the server is stopping")
        idle = door.wait_idle(DRAIN_TIMEOUT_S)
        say(door.summary() + ("" if idle else f"; {door.in_flight} still in flight after {DRAIN_TIMEOUT_S:.0f} s"))
        report = supervisor.shutdown(say)
        for clf in classifiers:
            clf.close()
    if failure:
        raise ServerFailed(f"{failure}; the server stopped (an orchestrator should restart it)")
    if not report.clean:
        why = []
        if report.timed_out:
            why.append("PyTriton's stop timed out")
        if report.triton_status not in (0, None):
            why.append(f"tritonserver ended with status {report.triton_status}")
        if report.killed:
            why.append(f"{len(report.killed)} process(es) had to be killed")
        raise ServerFailed(f"stopped, but not cleanly: {'; '.join(why)} (requests in flight may have failed)")
