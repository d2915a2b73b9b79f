"""fashion-serve under faults, on real servers on loopback (issue 21, items 1, 2, 4, 5).

* a port in use is named before anything starts (exit 2);
* ``/v2/health/ready`` never answers 200 before the models can serve;
* SIGKILL of a model's stub stops the server with exit 5 (it used to stay "ready" answering HTTP 500);
* SIGTERM under load: every process of the tree ends, its shared memory is gone, the exit code matches.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fashion.runtime.remote import MODEL_BYTES, OUTPUT_ERROR, TritonHTTP, encode_bytes
from fashion.serve.supervisor import descendants, running, shm_segments, stub_name
from tests.conftest import ROOT
from tests.serve.conftest import START_TIMEOUT_S, Server, free_ports, serve_python

pytestmark = pytest.mark.timeout(300)


def _command(bundle: Path, ports: list[int], *extra: str) -> list[str]:
    python = serve_python()
    if python is None:
        pytest.skip("no interpreter with PyTriton: run `make test` (builds .venv-serve) or set FASHION_SERVE_PYTHON")
    http_port, grpc_port, metrics_port = ports
    return [
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


def _status(port: int, path: str, method: str = "GET", body: bytes | None = None) -> int:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request(method, path, body=body)
        status = connection.getresponse().status
        connection.close()
        return status
    except OSError:
        return 0


def _start_watching_readiness(bundle: Path, log_dir: Path) -> tuple[Server, list[tuple[float, int, bool]]]:
    """Start a server and poll /v2/health/ready every 20 ms; at each 200, check that all models are ready."""
    ports = free_ports(3)
    log = log_dir / f"serve-{ports[0]}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            _command(bundle, ports), cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, *ports, log)
    seen: list[tuple[float, int, bool]] = []  # (seconds, health status, models ready at that moment)
    start = time.monotonic()
    while time.monotonic() - start < START_TIMEOUT_S and process.poll() is None:
        status = _status(server.http_port, "/v2/health/ready")
        models = status == 200 and server.ready()
        seen.append((time.monotonic() - start, status, models))
        if models:
            break
        time.sleep(0.02)
    if not server.ready():
        server.stop()
        pytest.fail(f"fashion-serve did not become ready; log:\n{log.read_text(errors='replace')[-4000:]}")
    return server, seen


def _tree(server: Server) -> list[int]:
    return [server.process.pid] + descendants(server.process.pid)


def _survivors(pids: list[int], grace_s: float = 5.0) -> list[str]:
    """The tree's processes still running ``grace_s`` after the server exited.

    fashion-serve's own helpers (the resource tracker) end when it does, on their pipe's end of file, so they
    exit a moment after it: one was once caught mid-exit (empty command line, not yet a zombie)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = [pid for pid in pids if running(pid)]
        if not alive or time.monotonic() >= deadline:
            return [f"{pid} {_cmdline(pid)!r}" for pid in alive]
        time.sleep(0.1)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:80]
    except OSError:  # it ended between the check and the read
        return b"(ended)"


def _need_proc() -> None:
    if not Path("/proc/self/task").is_dir() or not Path("/dev/shm").is_dir():
        pytest.skip("needs /proc and /dev/shm (Linux)")


def test_port_in_use_is_named(shipped_bundle):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        run = subprocess.run(
            _command(shipped_bundle, [port, *free_ports(2)]),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        taken.close()
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1] == f"Error: port {port} is in use; pick --http-port"


@pytest.fixture(scope="module")
def watched(shipped_bundle, tmp_path_factory):
    _need_proc()
    server, seen = _start_watching_readiness(shipped_bundle, tmp_path_factory.mktemp("faults"))
    yield server, seen
    server.stop()


def test_ready_only_when_the_models_are(watched):
    server, seen = watched
    first_ok = next(i for i, (_, status, _) in enumerate(seen) if status == 200)
    assert seen[first_ok][2], f"/v2/health/ready said 200 before the models were ready: {seen[first_ok:][:5]}"
    assert all(status == 200 for _, status, _ in seen[first_ok:]), seen[first_ok:]
    assert TritonHTTP(server.url).info()["heads"]  # and the Python side answers
    log = server.log.read_text(errors="replace")
    assert log.splitlines()[0].startswith("serving "), log[:2000]  # the summary comes first
    assert "CudaDriverHelper" not in log and "Failed to initialize NVML" not in log, log[:4000]


def test_killed_stub_stops_the_server_with_exit_5(watched):
    """kill -9 of the fashion model's stub: the server used to stay ready answering HTTP 500 forever."""
    server, _ = watched
    tree = _tree(server)
    segments = shm_segments(tree)
    [stub] = [pid for pid in tree if stub_name(pid) == "fashion_0_0"]
    assert segments, "the server's tree maps no shared memory"
    subprocess.run(["kill", "-9", str(stub)], check=True)
    assert server.process.wait(timeout=60) == 5
    log = server.log.read_text(errors="replace")
    assert f"the model process fashion_0_0 (triton_python_backend_stub, pid {stub}) died" in log, log[-3000:]
    assert _status(server.http_port, "/v2/health/ready") == 0  # nothing answers "ready" any more
    time.sleep(1)
    assert not _survivors(tree)
    assert not [name for name in segments if (Path("/dev/shm") / name).exists()]


def test_sigterm_under_load_stops_every_process(shipped_bundle, tmp_path, sample_dir):
    """8 clients sending; SIGTERM to fashion-serve: the whole tree ends, /dev/shm is cleaned, exit 0 only if clean."""
    _need_proc()
    from tests.serve.conftest import start_server

    server = start_server(shipped_bundle, tmp_path, "--max-queue-delay-us", "5000")
    photos = [p.read_bytes() for p in sorted((sample_dir / "images").iterdir())[:16] if not p.name.startswith(".")]
    outcomes: list[str] = []
    first_error: dict[str, str] = {}
    stop = threading.Event()

    def client(index: int) -> None:
        remote = TritonHTTP(server.url, timeout=30)
        n = index
        while not stop.is_set():
            data = photos[n % len(photos)]
            n += 1
            try:
                out = remote.infer(MODEL_BYTES, [("image", "BYTES", [1, 1], encode_bytes([data]))], [OUTPUT_ERROR])
                outcomes.append("ok" if out[OUTPUT_ERROR][0] in (b"", "") else "image error")
            except Exception as exc:  # noqa: BLE001 - refused/closed while stopping is the point
                outcomes.append(type(exc).__name__)
                first_error.setdefault(type(exc).__name__, str(exc)[:200])
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while outcomes.count("ok") < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
        tree = _tree(server)
        segments = shm_segments(tree)
        served = outcomes.count("ok")
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=90)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=40)
        server.stop()
    log = server.log.read_text(errors="replace")
    assert served >= 40 and not any(t.is_alive() for t in threads)
    assert not _survivors(tree), log[-3000:]
    assert not [name for name in segments if (Path("/dev/shm") / name).exists()], log[-3000:]
    if code == 0:
        assert log.rstrip().endswith("stopped"), log[-3000:]
    else:
        assert code == 5 and "Error: stopped, but not cleanly" in log, (code, log[-3000:])
    counts = {k: outcomes.count(k) for k in set(outcomes)}
    (tmp_path / "outcomes.json").write_text(json.dumps({"counts": counts, "first_error": first_error}, indent=1))
