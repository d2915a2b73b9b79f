"""Predict through one or more ``fashion-serve`` (Triton) servers, speaking the KServe v2 HTTP protocol.

    with RemoteClassifier(["http://127.0.0.1:8000", "http://10.0.0.2:8000"], concurrency=8) as remote:
        items = remote.predict_files(paths, top_k=3)

Only the standard library (and numpy) is used: a request is a JSON header followed by binary tensors
(the protocol's binary-data extension), so photos travel as raw bytes and probabilities come back as
exact float32. The server returns every head's full probability vector; labels, top-k and the
hierarchy-consistent decoding are computed here exactly as the in-process :class:`Classifier` does, so
the output matches local prediction.

Several URLs spread requests over replicas (round robin over the servers that are up). A server whose
``fashion_info`` does not answer with a fashion-serve description (still loading, 404/500, garbage, a
gRPC port) starts down; the others are used. During the run, a dropped connection, an answer that is
not KServe, an HTTP 500/502/503/504 (a load balancer in front of a dead backend) or a request past its
total deadline (``timeout``: connect, send and the whole answer, so a server trickling bytes cannot
hold it) marks the server down and the request is retried on another one, a bounded number of times;
the last server standing is retried after a pause instead. The failovers are kept in
:attr:`RemoteClassifier.failovers`. When no server is left, :class:`ServerUnavailableError` stops the run.

``https://`` URLs verify the server's certificate against the system store (``SSL_CERT_FILE`` names
another); ``headers`` (e.g. ``{"Authorization": "Bearer ..."}``) go with every request.

The model names and tensor names below are the contract ``fashion.serve`` implements.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .errors import FashionError, InvalidImageError
from .inputs import MAX_FILE_BYTES, read_image_file
from .preprocess import _describe
from .results import BatchItem, Decoder, Prediction

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


@dataclass
class Failover:
    """A server that dropped out during a run, and how many requests were moved off it."""

    url: str
    reason: str
    retried: int = 0
    at_start: bool = False


@dataclass
class _Pool:
    servers: list[TritonHTTP]
    down: dict[str, Failover] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    used: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(range(len(self.servers)))

    def up(self) -> list[TritonHTTP]:
        with self.lock:
            return [server for server in self.servers if server.url not in self.down]

    def pick(self, avoid: str | None = None) -> TritonHTTP:
        with self.lock:
            for _ in range(len(self.servers)):
                server = self.servers[next(self._cycle)]
                if server.url not in self.down and server.url != avoid:
                    return server
            for server in self.servers:  # only the avoided one is left
                if server.url not in self.down:
                    return server
        raise ServerUnavailableError(f"no server left to send to ({self.reasons()})")

    def reasons(self) -> str:
        return "; ".join(f.reason for f in self.down.values())

    def mark_down(self, server: TritonHTTP, reason: str) -> None:
        with self.lock:
            self.down.setdefault(server.url, Failover(server.url, reason))

    def count(self, server: TritonHTTP, retried_from: str | None) -> None:
        with self.lock:
            self.used[server.url] = self.used.get(server.url, 0) + 1
            if retried_from is not None and retried_from in self.down:
                self.down[retried_from].retried += 1


class RemoteClassifier:
    """Predicts through servers with the :class:`~fashion.runtime.results.Predictor` shape of ``Classifier``:
    ``heads``, ``info``, ``predict_batch`` giving the same :class:`BatchItem`\\ s, decoded by the same
    :class:`~fashion.runtime.results.Decoder`."""

    def __init__(
        self,
        urls: list[str] | str,
        concurrency: int = 8,
        retries: int = DEFAULT_RETRIES,
        timeout: float = DEFAULT_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ):
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise RemoteError("no server URL given")
        if concurrency < 1 or retries < 0:
            raise RemoteError("concurrency must be at least 1 and retries at least 0")
        self.concurrency, self.retries, self.max_file_bytes = concurrency, retries, max_file_bytes
        self._deadlines = _Deadlines()
        self.pool = _Pool([TritonHTTP(url, timeout, headers, ssl_context, self._deadlines) for url in urls])
        self._closing = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self.served = self._connect()
        self.heads: list[str] = list(self.served["heads"])
        self.labels: dict[str, list[str]] = {head: self.served["labels"][head] for head in self.heads}
        self.decoder = Decoder(
            self.heads,
            self.labels,
            self.served.get("hierarchy", []),
            source=f"the model served at {self.pool.up()[0].url}",
        )
        self.hierarchy = self.decoder.hierarchy

    def _connect(self) -> dict[str, Any]:
        """Ask every server what it serves; one that does not answer with a description starts down; all that
        answer must serve the same model."""
        seen: dict[str, dict[str, Any]] = {}
        unusable = False
        for server in self.pool.servers:
            try:
                seen[server.url] = server.info()
            except RemoteError as exc:  # it answered (an HTTP error, garbage): up, but not serving the model
                unusable = True
                self.pool.mark_down(server, f"{exc} (still loading, or not a fashion-serve server)")
            except ServerConnectionError as exc:
                self.pool.mark_down(server, str(exc))
        for failover in self.pool.down.values():
            failover.at_start = True
        if not seen:
            what = "no usable server" if unusable else "cannot reach any server"
            raise ServerUnavailableError(f"{what}: {self.pool.reasons()}")
        first_url, first = next(iter(seen.items()))
        for url, info in seen.items():
            if (info["heads"], info["labels"]) != (first["heads"], first["labels"]):
                raise RemoteError(f"{url} serves a different model than {first_url} (heads or labels differ)")
        return first

    @property
    def info(self) -> dict[str, Any]:
        """What runs where, in ``Classifier.info``'s shape (backend, providers, precision, artifact, input_size)
        plus the servers used and those down."""
        served = self.served
        return {
            "backend": f"remote ({served.get('backend', 'unknown')} on fashion-serve)",
            "providers": list(served.get("providers") or []),
            "precision": served.get("precision"),
            "artifact": served.get("artifact"),
            "artifact_sha256": served.get("artifact_sha256"),
            "input_size": served.get("input_size"),
            "model": served.get("name"),
            "servers": [server.url for server in self.pool.up()],
            "down": {f.url: f.reason for f in self.failovers},
            "concurrency": self.concurrency,
        }

    @property
    def failovers(self) -> list[Failover]:
        return list(self.pool.down.values())

    @property
    def requests_per_server(self) -> dict[str, int]:
        return dict(self.pool.used)

    def infer_bytes(self, data: bytes) -> dict[str, Any]:
        """One image's raw server outputs. A server that fails (see the module text) is marked down and the
        request goes to another; the last server standing is asked again after a pause. RemoteError when
        ``retries`` are spent with servers still up; ServerUnavailableError when none is left."""
        avoid = None
        failure: ServerConnectionError | None = None
        for attempt in range(self.retries + 1):
            server = self.pool.pick(avoid)
            try:
                out = server.infer(
                    MODEL_BYTES, [(INPUT_IMAGE, "BYTES", [1, 1], encode_bytes([data]))], [OUTPUT_ERROR, *self.heads]
                )
                self.pool.count(server, avoid)
                return out
            except ServerConnectionError as exc:
                if self._closing.is_set():
                    raise ServerUnavailableError(f"stopped while waiting for {server.url}") from None
                failure = exc
                if len(self.pool.up()) > 1 or attempt == self.retries:
                    self.pool.mark_down(server, str(exc))
                    avoid = server.url
                else:  # the last one up: give it a moment (a restart, a load balancer finding a backend)
                    self._closing.wait(RETRY_PAUSE_S * 2**attempt)
        if self.pool.up():
            raise RemoteError(f"gave up after {self.retries + 1} attempt(s): {failure}")
        raise ServerUnavailableError(f"no server left to send to ({self.pool.reasons()})")

    def _predict_one(self, image: Any, top_k: int, consistent: bool) -> BatchItem:
        name = os.fsdecode(image) if isinstance(image, os.PathLike) else _describe(image)
        try:
            if isinstance(image, (bytes, bytearray, memoryview)):
                data = bytes(image)
            elif isinstance(image, (str, os.PathLike)):
                data = read_image_file(os.fsdecode(image), self.max_file_bytes)
            else:
                raise InvalidImageError(
                    f"{name}: RemoteClassifier sends paths or encoded bytes, not {type(image).__name__}"
                )
        except InvalidImageError as exc:
            return BatchItem(source=name, error=str(exc))
        start = time.perf_counter()
        try:
            out = self.infer_bytes(data)
        except RemoteError as exc:
            return BatchItem(source=name, error=f"{name}: {exc}")
        error = out[OUTPUT_ERROR][0].decode("utf-8", "replace")
        if error:
            # The server names the image "<N bytes>"; name it as local prediction does.
            prefix = f"<{len(data)} bytes>: "
            return BatchItem(
                source=name, error=name + ": " + error[len(prefix) :] if error.startswith(prefix) else error
            )
        probabilities = {head: np.asarray(out[head], dtype=np.float32).reshape(1, -1) for head in self.heads}
        latency_ms = (time.perf_counter() - start) * 1000
        return BatchItem(source=name, prediction=self.decode(probabilities, 0, top_k, consistent, latency_ms))

    def decode(
        self, outputs: dict[str, np.ndarray], row: int, top_k: int, consistent: bool, latency_ms: float
    ) -> Prediction:
        """``Decoder.decode`` of the served model's heads, labels and hierarchy (the same as local)."""
        return self.decoder.decode(outputs, row, top_k, consistent, latency_ms)

    def predict_batch(
        self,
        images: Iterable[Any],
        batch_size: int = 32,
        top_k: int = 3,
        consistent: bool = False,
        decode_threads: int | None = None,
        tta: bool = False,
    ) -> list[BatchItem]:
        """Every image (a path or encoded bytes) gets exactly one item, in input order; ``concurrency`` requests
        are in flight at once (``batch_size`` and ``decode_threads`` are the server's business here).

        ServerUnavailableError (no server left) stops the batch: requests not yet sent are cancelled."""
        if tta:
            raise RemoteError("tta runs in-process only; the server predicts each photo once")
        self.decoder.require(consistent)
        images = list(images)
        if self._closing.is_set():
            raise ServerUnavailableError("this RemoteClassifier is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="fashion-remote")
        futures: list[Future[BatchItem]] = [
            self._executor.submit(self._predict_one, image, top_k, consistent) for image in images
        ]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                failure = future.exception() if future.done() and not future.cancelled() else None
                if failure is not None:
                    raise failure
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def predict_files(self, paths: list[str], top_k: int = 3, consistent: bool = False) -> list[BatchItem]:
        """``predict_batch`` of file paths (kept for existing callers)."""
        return self.predict_batch(paths, top_k=top_k, consistent=consistent)

    def report(self) -> list[str]:
        """Lines for the user: the servers that dropped out and what moved off them, and the requests per server."""
        lines = [
            f"failover: {f.url} dropped out ({f.reason}); {f.retried} request(s) retried on the other server(s)"
            for f in self.failovers
            if not f.at_start  # those are said when the run starts
        ]
        spread = ", ".join(f"{url} {count}" for url, count in sorted(self.requests_per_server.items()))
        return lines + [f"requests per server: {spread or 'none'}"]

    def close(self) -> None:
        """Stop: requests not yet sent are cancelled and those in flight are cut (their sockets shut down)."""
        self._closing.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._deadlines.abort()

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
