"""The KServe v2 HTTP wire protocol as fashion-serve speaks it: model and tensor names, request and response
framing (binary-data extension), errors, and one HTTP connection with a total deadline per request.

Used by :mod:`fashion.runtime.remote` (the bulk client with failover) and by ``fashion.serve`` (the server side of
the same contract). Only the standard library and numpy.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .errors import FashionError

# -- the serving contract (fashion.serve implements it) -----------------------------------------------
MODEL_BYTES = "fashion"  # encoded image bytes in, per-head outputs out
MODEL_TENSOR = "fashion_tensor"  # preprocessed NHWC tensor in (float32 "image" or uint8 "image_uint8")
MODEL_INFO = "fashion_info"  # the served bundle's heads, labels and hierarchy as one JSON string
INPUT_IMAGE = "image"
INPUT_IMAGE_UINT8 = "image_uint8"
INPUT_QUERY = "query"
OUTPUT_INFO = "info"
OUTPUT_ERROR = "error"  # per image: empty when it succeeded, else the runtime's message


def label_output(head: str) -> str:
    return f"{head}_label"


def confidence_output(head: str) -> str:
    return f"{head}_confidence"


#: Seconds one request may take in all (connect, send, the whole answer) before it is retried elsewhere.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
#: Answers that say "this server cannot serve now", not "this image is bad": retried on another server.
RETRY_STATUSES = (500, 502, 503, 504)
#: Seconds before the last server standing is asked again (doubled per attempt).
RETRY_PAUSE_S = 0.5
_DTYPES = {"FP32": np.float32, "FP64": np.float64, "UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64}


class RemoteError(FashionError):
    """A server answered with an error, or answered something that is not the fashion serving contract."""

    exit_code = 2


class ServerUnavailableError(FashionError):
    """No server could be reached (or all of them failed during the run)."""

    exit_code = 4


# -- KServe v2 binary tensors ------------------------------------------------------------------------------


def encode_bytes(items: Iterable[bytes]) -> bytes:
    """BYTES tensor contents in the binary extension: each element is a little-endian uint32 length + bytes."""
    return b"".join(struct.pack("<I", len(item)) + bytes(item) for item in items)


def decode_bytes(data: bytes) -> list[bytes]:
    """Inverse of :func:`encode_bytes`."""
    items, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        items.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


def build_request(inputs: list[tuple[str, str, list[int], bytes]], outputs: list[str]) -> tuple[bytes, int]:
    """(body, json_header_length) of an inference request with binary inputs and binary outputs."""
    header = {
        "inputs": [
            {"name": name, "datatype": dtype, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
            for name, dtype, shape, raw in inputs
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(raw for *_, raw in inputs), len(head)


def parse_response(body: bytes, header_length: int | None) -> dict[str, Any]:
    """{output name: numpy array, or list[bytes] for BYTES} from a (binary or JSON) inference response."""
    size = len(body) if header_length is None else header_length
    header = json.loads(body[:size])
    outputs: dict[str, Any] = {}
    offset = size
    for out in header.get("outputs", []):
        shape, dtype = out["shape"], out["datatype"]
        binary = (out.get("parameters") or {}).get("binary_data_size")
        if binary is not None:
            raw = body[offset : offset + binary]
            offset += binary
            value: Any = decode_bytes(raw) if dtype == "BYTES" else np.frombuffer(raw, _DTYPES[dtype]).reshape(shape)
        elif dtype == "BYTES":
            value = [str(v).encode() for v in out["data"]]
        else:
            value = np.asarray(out["data"], dtype=_DTYPES[dtype]).reshape(shape)
        outputs[out["name"]] = value
    return outputs


class ServerConnectionError(OSError):
    """The server could not be reached, dropped the connection, answered past the deadline, or answered in a
    way that says it cannot serve now (retry elsewhere)."""


class ServerBusyError(ServerConnectionError, RemoteError):
    """HTTP 500/502/503/504: the server (or the load balancer in front of it) cannot serve now."""


class _Deadlines:
    """One thread that shuts down the socket of every request past its deadline, so a server that trickles
    its answer a byte at a time cannot hold a request longer than the timeout (a socket timeout applies to
    each read alone). ``abort`` shuts down every socket in flight (Ctrl-C, close)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, socket.socket] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            token = next(self._ids)
            self._live[token] = sock
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fashion-remote-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def release(self, token: int) -> bool:
        """Stop watching; True when the deadline had passed and the socket was shut down."""
        with self._cond:
            self._live.pop(token, None)
            if token in self._expired:
                self._expired.discard(token)
                return True
            return False

    def abort(self) -> None:
        with self._cond:
            for token, sock in list(self._live.items()):
                _shutdown(sock)
                self._expired.add(token)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # released in time
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                now = time.monotonic()
                if deadline > now:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                _shutdown(self._live[token])
                self._expired.add(token)


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown, also under TLS: wakes the reading thread without touching its SSL state
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


_DEADLINES = _Deadlines()


class TritonHTTP:
    """One server; one keep-alive connection per calling thread; ``timeout`` bounds each request in all."""

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        deadlines: _Deadlines | None = None,
    ):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"{url}: server URLs look like http://HOST:PORT or https://HOST:PORT")
        try:
            port = parts.port or (8000 if parts.scheme == "http" else 443)
        except ValueError:
            raise RemoteError(f"{url}: the port is not a number from 1 to 65535") from None
        if timeout <= 0:
            raise RemoteError(f"timeout must be positive, got {timeout}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, port
        self.url = f"{self.scheme}://{self.host}:{self.port}"
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        self._ssl = ssl_context if ssl_context is not None or self.scheme == "http" else ssl.create_default_context()
        self._local = threading.local()
        self._deadlines = deadlines or _DEADLINES

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); ServerConnectionError when no complete HTTP answer came in time.

        A kept-alive connection the server closed while idle is reopened once (not a server failure)."""
        deadline = time.monotonic() + self.timeout
        while True:
            conn = self._connection()
            reused = conn.sock is not None
            token = None
            try:
                if conn.sock is None:
                    conn.connect()
                token = self._deadlines.watch(conn.sock, deadline)
                conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                response = conn.getresponse()
                data = response.read()
                late = self._deadlines.release(token)
                token = None
                if late:
                    raise TimeoutError("deadline passed")
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (OSError, http.client.HTTPException) as exc:
                late = token is not None and self._deadlines.release(token)
                conn.close()
                self._local.conn = None
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if reused and stale and not late and time.monotonic() < deadline:
                    continue
                raise ServerConnectionError(self._failure(exc, late)) from None

    def _failure(self, exc: BaseException, late: bool) -> str:
        if late or isinstance(exc, TimeoutError):
            return f"{self.url}: no complete answer within {self.timeout:g} s (timeout)"
        if isinstance(exc, http.client.BadStatusLine) and not str(exc).startswith("HTTP/"):
            return (
                f"{self.url}: not an HTTP KServe endpoint: it answered with bytes that are not HTTP/1.1 (an HTTP/2 "
                "or gRPC port? fashion-serve's HTTP port is --http-port, 8000 by default; 8001 is gRPC)"
            )
        if isinstance(exc, ssl.SSLError):
            return f"{self.url}: TLS failed ({exc}); for a private CA set SSL_CERT_FILE to its certificate"
        text = str(exc).strip()
        return f"{self.url}: {type(exc).__name__}" + (f": {text}" if text else "")

    def ready(self) -> bool:
        try:
            return self.request("GET", "/v2/health/ready")[0] == 200
        except ServerConnectionError:
            return False

    def infer(self, model: str, inputs: list[tuple[str, str, list[int], bytes]], outputs: list[str]) -> dict[str, Any]:
        body, header_length = build_request(inputs, outputs)
        status, headers, data = self.request(
            "POST",
            f"/v2/models/{model}/infer",
            body,
            {"Inference-Header-Content-Length": str(header_length), "Content-Type": "application/octet-stream"},
        )
        if status in RETRY_STATUSES:
            raise ServerBusyError(_error_text(self.url, status, data))
        if status != 200:
            raise RemoteError(_error_text(self.url, status, data))
        length = headers.get("inference-header-content-length")
        try:
            return parse_response(data, int(length) if length is not None else None)
        except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
            raise ServerConnectionError(
                f"{self.url}: answered 200 with a body that is not a KServe v2 inference response ({type(exc).__name__})"
            ) from None

    def info(self) -> dict[str, Any]:
        """The served model's description (``fashion_info``); RemoteError when the answer is not one."""
        out = self.infer(MODEL_INFO, [(INPUT_QUERY, "BYTES", [1], encode_bytes([b"info"]))], [OUTPUT_INFO])
        try:
            info = json.loads(out[OUTPUT_INFO][0])
            heads, labels = info["heads"], info["labels"]
            if not (isinstance(heads, list) and heads and all(isinstance(h, str) for h in heads)):
                raise ValueError("heads")
            for head in heads:
                names = labels[head]
                if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
                    raise ValueError(f"labels of {head}")
            hierarchy = info.get("hierarchy", [])
            if not (isinstance(hierarchy, list) and all(isinstance(r, list) and len(r) == 3 for r in hierarchy)):
                raise ValueError("hierarchy")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise RemoteError(
                f"{self.url}: {MODEL_INFO} answered something that is not a fashion-serve description "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return dict(info)

    def statistics(self, model: str) -> dict[str, Any]:
        status, _, data = self.request("GET", f"/v2/models/{model}/stats")
        if status != 200:
            raise RemoteError(_error_text(self.url, status, data))
        return dict(json.loads(data))


def _error_text(url: str, status: int, data: bytes) -> str:
    try:
        message = json.loads(data).get("error", "")
    except (ValueError, AttributeError):
        message = data[:300].decode("utf-8", "replace")
    return f"{url}: HTTP {status}: {message}"


# -- the client ----------------------------------------------------------------------------------------------
