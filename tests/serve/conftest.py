"""Real Triton servers on loopback for the serve tests.

The server runs in the interpreter that has PyTriton: ``$FASHION_SERVE_PYTHON``, else ``.venv-serve/bin/python``
(``make test`` builds it: PyTriton needs numpy<2, the main environment keeps numpy 2), else this
interpreter when it has PyTriton. Tests skip, saying why, when none is found. Clients run here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from fashion.serve.supervisor import descendants, shm_segments
from tests.conftest import ROOT

START_TIMEOUT_S = 120


def serve_python() -> str | None:
    candidates = [os.environ.get("FASHION_SERVE_PYTHON", ""), str(ROOT / ".venv-serve" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    try:
        import pytriton  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; held together so they differ, released before the server binds."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Server:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def ready(self) -> bool:
        """Every model loaded (the server alone reports ready before PyTriton has loaded them)."""
        try:
            for model in ("fashion", "fashion_tensor", "fashion_info"):
                with urllib.request.urlopen(f"{self.url}/v2/models/{model}/ready", timeout=2) as response:
                    if response.status != 200:
                        return False
            return True
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group: the Python process and the tritonserver it started.

        After SIGKILL nothing of the tree can clean up, so the /dev/shm segments it had mapped are removed here.
        """
        segments = shm_segments([self.process.pid, *descendants(self.process.pid)]) if sig == signal.SIGKILL else set()
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        if segments:
            time.sleep(0.5)
            for name in segments:
                (Path("/dev/shm") / name).unlink(missing_ok=True)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.kill(signal.SIGKILL)  # tritonserver too, whatever its parent managed
        self.process.wait(timeout=10)


def start_server(bundle: Path, log_dir: Path, *extra: str, attempts: int = 2) -> Server:
    """A ready server; a start that fails (e.g. a port taken by another process meanwhile) is retried on new ports."""
    python = serve_python()
    if python is None:
        pytest.skip("no interpreter with PyTriton: run `make test` (builds .venv-serve) or set FASHION_SERVE_PYTHON")
    for attempt in range(attempts):
        server = _start(python, bundle, log_dir, extra)
        if server.ready():
            return server
        server.stop()
        if attempt == attempts - 1:
            pytest.fail(f"fashion-serve did not become ready; log:\n{server.log.read_text(errors='replace')[-4000:]}")
    raise AssertionError("unreachable")


def _start(python: str, bundle: Path, log_dir: Path, extra: tuple[str, ...]) -> Server:
    """Start one server and wait until it is ready, exits, or the start timeout passes."""
    http_port, grpc_port, metrics_port = free_ports(3)
    log = log_dir / f"serve-{http_port}.log"
    command = [
        python,
        "-m",
        "fashion.serve.cli",
        str(bundle),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(metrics_port),
        *extra,
    ]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, http_port, grpc_port, metrics_port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    return server


@pytest.fixture(scope="module")
def server(shipped_bundle, tmp_path_factory):
    srv = start_server(shipped_bundle, tmp_path_factory.mktemp("serve"), "--max-queue-delay-us", "5000")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def second_server(shipped_bundle, tmp_path_factory):
    # two model instances with one thread each: the replica tests also cover --instances
    srv = start_server(
        shipped_bundle,
        tmp_path_factory.mktemp("serve2"),
        "--max-queue-delay-us",
        "5000",
        "--instances",
        "2",
        "--threads",
        "1",
    )
    yield srv
    srv.stop()
