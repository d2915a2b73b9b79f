"""fashion-serve's HTTP front door against a small stand-in backend (no Triton: fast, every framing case).

The real-Triton checks (100 MB bodies, RSS, drain with the bulk client) are in test_front_door.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fashion.serve.front import RETRY_AFTER_S, Door, HttpFront
from tests.serve.conftest import free_ports

LIMIT = 1024 * 1024

pytestmark = pytest.mark.timeout(60)


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, int]] = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        Backend.seen.append(("GET", self.path, 0))
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer(json.dumps({"path": self.path, "header": self.headers.get("X-Test", "")}).encode())

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        Backend.seen.append(("POST", self.path, len(body)))
        self._answer(json.dumps({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())


@pytest.fixture()
def front():
    Backend.seen = []
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    [port] = free_ports(1)
    door = Door()
    proxy = HttpFront("127.0.0.1", port, backend.server_address[1], LIMIT, door)
    proxy.start()
    door.open()
    yield proxy
    proxy.stop()
    backend.shutdown()


def _conn(front: HttpFront) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", front.port, timeout=20)


def test_requests_pass_unchanged_on_one_kept_alive_connection(front):
    conn = _conn(front)
    conn.request("GET", "/v2/health/ready?x=1", headers={"X-Test": "kept"})
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"path": "/v2/health/ready?x=1", "header": "kept"}
    body = bytes(range(256)) * 3000  # 768000 bytes, under the limit
    conn.request("POST", "/v2/models/fashion/infer", body=body)
    response = conn.getresponse()
    assert json.loads(response.read()) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    conn.request("GET", "/chunked")
    assert conn.getresponse().read() == b"hello chunked world"
    conn.close()
    assert front.door.counts["forwarded"] == 3


def test_oversized_body_is_refused_before_the_backend_and_the_client_reads_413(front):
    conn = _conn(front)
    start = time.monotonic()
    conn.request("POST", "/v2/models/fashion/infer", body=b"\0" * (30 * 1024 * 1024))
    response = conn.getresponse()
    answer = json.loads(response.read())
    assert response.status == 413, answer
    assert f"over this server's limit of {LIMIT} bytes" in answer["error"]
    assert "31457280 bytes" in answer["error"]
    assert response.getheader("Connection") == "close"
    assert time.monotonic() - start < 10
    assert not [s for s in Backend.seen if s[0] == "POST"]


def test_chunked_bodies_are_counted(front):
    def chunks(total: int):
        sent = 0
        while sent < total:
            part = b"x" * min(64 * 1024, total - sent)
            sent += len(part)
            yield part

    conn = _conn(front)
    conn.request("POST", "/small", body=chunks(100_000), encode_chunked=True)
    assert json.loads(conn.getresponse().read())["bytes"] == 100_000
    conn.close()
    conn = _conn(front)
    conn.request("POST", "/big", body=chunks(5 * LIMIT), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and "chunked" in json.loads(response.read())["error"]
    assert ("POST", "/big", 5 * LIMIT) not in Backend.seen and len([s for s in Backend.seen if s[0] == "POST"]) == 1


def test_ambiguous_framing_is_refused(front):
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 400 ")
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 400 ")


def test_503_while_starting_and_draining_while_in_flight_requests_finish(front):
    front.door.state = "starting"
    conn = _conn(front)
    conn.request("GET", "/v2/health/ready")
    response = conn.getresponse()
    assert response.status == 503 and response.getheader("Retry-After") == str(RETRY_AFTER_S)
    assert "starting" in json.loads(response.read())["error"]
    front.door.open()

    slow: dict[str, int] = {}

    def call() -> None:
        c = _conn(front)
        c.request("GET", "/slow")
        slow["status"] = c.getresponse().status

    kept = _conn(front)
    kept.request("GET", "/before")
    assert kept.getresponse().read()
    thread = threading.Thread(target=call)
    thread.start()
    while not front.door.in_flight:
        time.sleep(0.01)
    front.door.close("asked to stop")
    kept.request("POST", "/v2/models/fashion/infer", body=b"y" * 5000)  # a kept-alive connection is refused too
    response = kept.getresponse()
    assert response.status == 503 and response.getheader("Retry-After") == str(RETRY_AFTER_S)
    assert json.loads(response.read())["error"] == "stopping: asked to stop; retry on another server"
    assert front.door.wait_idle(5)
    thread.join(5)
    assert slow["status"] == 200


def test_backend_down_is_502():
    dead, port = free_ports(2)
    door = Door()
    proxy = HttpFront("127.0.0.1", port, dead, LIMIT, door)
    proxy.start()
    door.open()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v2/health/ready")
        response = conn.getresponse()
        assert response.status == 502 and "not reachable" in json.loads(response.read())["error"]
    finally:
        proxy.stop()


def test_start_and_stop_without_a_connection_raise_nothing_in_the_loop_thread(monkeypatch):
    failures: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    [port] = free_ports(1)
    proxy = HttpFront("127.0.0.1", port, port, LIMIT, Door())
    proxy.start()
    proxy.stop()
    assert proxy._thread is not None and not proxy._thread.is_alive()
    assert not failures, failures


def test_stop_while_connections_arrive_leaves_no_pending_task(caplog, monkeypatch):
    """Clients keep connecting while the front stops: every connection task ends before the loop closes.

    A connection accepted just before the stop has a task that has not run yet; it used to be destroyed pending,
    printing "Task was destroyed but it is pending!" after fashion-serve's "stopped". Ten stops under load.
    """
    import gc
    import logging

    caplog.set_level(logging.ERROR, logger="asyncio")
    failures: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    opened = 0
    for _ in range(10):
        [port] = free_ports(1)
        door = Door()
        proxy = HttpFront("127.0.0.1", port, port, LIMIT, door)  # no backend needed: heads never end
        proxy.start()
        door.open()
        stop = threading.Event()
        count = [0]

        def client(port: int = port, stop: threading.Event = stop, count: list[int] = count) -> None:
            socks = []
            while not stop.is_set():
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
                    socks.append(sock)
                    count[0] += 1
                except OSError:
                    time.sleep(0.005)
            for sock in socks:
                sock.close()

        threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while count[0] < 100 and time.monotonic() < deadline:
                time.sleep(0.005)
            proxy.stop()
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        assert proxy._thread is not None and not proxy._thread.is_alive()
        opened += count[0]
    gc.collect()
    assert opened >= 1000
    assert not [r.getMessage() for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
    assert not failures, failures
