"""Predict through one or more ``fashion-serve`` (Triton) servers, speaking the KServe v2 HTTP protocol.

    with RemoteClassifier(["http://127.0.0.1:8000", "http://10.0.0.2:8000"], concurrency=8) as remote:
        items = remote.predict_files(paths, top_k=3)

Only the standard library (and numpy) is used: a request is a JSON header followed by binary tensors
(the protocol's binary-data extension), so photos travel as raw bytes and probabilities come back as
exact float32. The server returns every head's full probability vector; labels, top-k and the
hierarchy-consistent decoding are computed here exactly as the in-process :class:`Classifier` does, so
the output matches local prediction.

Several URLs spread requests over replicas (round robin over the servers that are up). A connection
error marks a server down and the request is retried on another one, a bounded number of times; the
failovers are kept in :attr:`RemoteClassifier.failovers` so the caller can report them.

The model names and tensor names below are the contract ``fashion.serve`` implements.
"""

from __future__ import annotations

import http.client
import itertools
import json
import struct
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .errors import FashionError
from .hierarchy import LEVELS, HierarchyDecoder
from .results import BatchItem, Prediction, decode_head

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


DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
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
    """The server could not be reached or dropped the connection (retry elsewhere)."""


class TritonHTTP:
    """One server; one keep-alive connection per calling thread."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise RemoteError(f"{url}: server URLs look like http://HOST:PORT")
        self.url = f"http://{parts.hostname}:{parts.port or 8000}"
        self.host, self.port = parts.hostname, parts.port or 8000
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return conn

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            raise ServerConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from None

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
        if status != 200:
            raise RemoteError(_error_text(self.url, status, data))
        length = headers.get("inference-header-content-length")
        return parse_response(data, int(length) if length is not None else None)

    def info(self) -> dict[str, Any]:
        out = self.infer(MODEL_INFO, [(INPUT_QUERY, "BYTES", [1], encode_bytes([b"info"]))], [OUTPUT_INFO])
        return json.loads(out[OUTPUT_INFO][0])

    def statistics(self, model: str) -> dict[str, Any]:
        status, _, data = self.request("GET", f"/v2/models/{model}/stats")
        if status != 200:
            raise RemoteError(_error_text(self.url, status, data))
        return json.loads(data)


def _error_text(url: str, status: int, data: bytes) -> str:
    try:
        message = json.loads(data).get("error", "")
    except ValueError:
        message = data[:300].decode("utf-8", "replace")
    return f"{url}: HTTP {status}: {message}"


# -- the client ----------------------------------------------------------------------------------------------


@dataclass
class Failover:
    """A server that dropped out during a run, and how many requests were moved off it."""

    url: str
    reason: str
    retried: int = 0


@dataclass
class _Pool:
    servers: list[TritonHTTP]
    down: dict[str, Failover] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    used: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(range(len(self.servers)))

    def pick(self, avoid: str | None = None) -> TritonHTTP:
        with self.lock:
            for _ in range(len(self.servers)):
                server = self.servers[next(self._cycle)]
                if server.url not in self.down and server.url != avoid:
                    return server
            for server in self.servers:  # only the avoided one is left
                if server.url not in self.down:
                    return server
        reasons = "; ".join(f.reason for f in self.down.values())
        raise ServerUnavailableError(f"no server left to send to ({reasons})")

    def mark_down(self, server: TritonHTTP, reason: str) -> None:
        with self.lock:
            self.down.setdefault(server.url, Failover(server.url, reason))

    def count(self, server: TritonHTTP, retried_from: str | None) -> None:
        with self.lock:
            self.used[server.url] = self.used.get(server.url, 0) + 1
            if retried_from is not None and retried_from in self.down:
                self.down[retried_from].retried += 1


class RemoteClassifier:
    """Predicts through servers; results are the same :class:`BatchItem`\\ s as ``Classifier.predict_batch``."""

    def __init__(
        self,
        urls: list[str] | str,
        concurrency: int = 8,
        retries: int = DEFAULT_RETRIES,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise RemoteError("no server URL given")
        if concurrency < 1 or retries < 0:
            raise RemoteError("concurrency must be at least 1 and retries at least 0")
        self.concurrency, self.retries = concurrency, retries
        self.pool = _Pool([TritonHTTP(url, timeout) for url in urls])
        self.info = self._connect()
        self.heads: list[str] = list(self.info["heads"])
        self.labels: dict[str, list[str]] = self.info["labels"]
        self.hierarchy = HierarchyDecoder([tuple(row) for row in self.info.get("hierarchy", [])], self.labels)

    def _connect(self) -> dict[str, Any]:
        """Ask every server what it serves; unreachable ones start down; all must serve the same model."""
        seen: dict[str, dict[str, Any]] = {}
        for server in self.pool.servers:
            try:
                seen[server.url] = server.info()
            except ServerConnectionError as exc:
                self.pool.mark_down(server, str(exc))
        if not seen:
            raise ServerUnavailableError(
                "cannot reach any server: " + "; ".join(f.reason for f in self.pool.down.values())
            )
        first_url, first = next(iter(seen.items()))
        for url, info in seen.items():
            if (info["heads"], info["labels"]) != (first["heads"], first["labels"]):
                raise RemoteError(f"{url} serves a different model than {first_url} (heads or labels differ)")
        return first

    @property
    def failovers(self) -> list[Failover]:
        return list(self.pool.down.values())

    @property
    def requests_per_server(self) -> dict[str, int]:
        return dict(self.pool.used)

    def infer_bytes(self, data: bytes) -> dict[str, Any]:
        """One image's raw server outputs, retried on another server after a connection error."""
        avoid = None
        for attempt in range(self.retries + 1):
            server = self.pool.pick(avoid)
            try:
                out = server.infer(
                    MODEL_BYTES, [(INPUT_IMAGE, "BYTES", [1, 1], encode_bytes([data]))], [OUTPUT_ERROR, *self.heads]
                )
                self.pool.count(server, avoid)
                return out
            except ServerConnectionError as exc:
                if attempt == self.retries:
                    raise ServerUnavailableError(f"gave up after {attempt + 1} attempts: {exc}") from None
                self.pool.mark_down(server, str(exc))
                avoid = server.url
        raise AssertionError("unreachable")

    def _predict_one(self, path: str, top_k: int, consistent: bool) -> BatchItem:
        source = Path(path)
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            return BatchItem(source=path, error=f"{path}: no such file")
        except OSError as exc:
            return BatchItem(source=path, error=f"{path}: {exc.strerror or exc}")
        start = time.perf_counter()
        try:
            out = self.infer_bytes(data)
        except (RemoteError, ServerUnavailableError) as exc:
            return BatchItem(source=path, error=f"{path}: {exc}")
        error = out[OUTPUT_ERROR][0].decode("utf-8", "replace")
        if error:
            # The server names the image "<N bytes>"; name it by its path, as local prediction does.
            prefix = f"<{len(data)} bytes>: "
            return BatchItem(
                source=path, error=path + ": " + error[len(prefix) :] if error.startswith(prefix) else error
            )
        probabilities = {head: np.asarray(out[head], dtype=np.float32).reshape(1, -1) for head in self.heads}
        latency_ms = (time.perf_counter() - start) * 1000
        return BatchItem(source=path, prediction=self.decode(probabilities, 0, top_k, consistent, latency_ms))

    def decode(
        self, outputs: dict[str, np.ndarray], row: int, top_k: int, consistent: bool, latency_ms: float
    ) -> Prediction:
        """The same decoding as ``Classifier._decode``: argmax or the most probable known combination."""
        chosen: dict[str, int] = {}
        if consistent and self.hierarchy:
            combo = self.hierarchy.decode({level: outputs[level][row : row + 1] for level in LEVELS})[0]
            chosen = dict(zip(LEVELS, combo.tolist()))
        heads = {
            head: decode_head(outputs[head][row], self.labels[head], top_k, chosen.get(head)) for head in self.heads
        }
        return Prediction(heads=heads, latency_ms=latency_ms, consistent=bool(chosen))

    def predict_files(
        self,
        paths: list[str],
        top_k: int = 3,
        consistent: bool = False,
        progress: Callable[[int], None] | None = None,
        reason_not_to_send: Callable[[str], str | None] | None = None,
    ) -> list[BatchItem]:
        """Every path gets exactly one item, in input order; ``concurrency`` requests are in flight at once.

        ``reason_not_to_send(path)`` (the CLI's precheck) turns a path into an error item without a request.
        """

        def work(path: str) -> BatchItem:
            reason = reason_not_to_send(path) if reason_not_to_send is not None else None
            item = BatchItem(source=path, error=reason) if reason else self._predict_one(path, top_k, consistent)
            if progress is not None:
                progress(1)
            return item

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="fashion-remote") as pool:
            return list(pool.map(work, paths))

    def close(self) -> None:
        """Nothing to release (connections close with their threads); kept for symmetry with Classifier."""

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def predict_remote(
    urls: str | list[str],
    paths: list[str],
    top_k: int = 3,
    consistent: bool = False,
    concurrency: int = 8,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_S,
    say: Callable[[str], None] | None = None,
    reason_not_to_send: Callable[[str], str | None] | None = None,
) -> tuple[list[BatchItem], list[str]]:
    """``fashion-predict --server``: (items in input order, heads), with a progress bar and a failover report."""
    import sys

    from tqdm import tqdm

    def tell(line: str) -> None:
        if say is not None:
            say(line)
        else:
            print(line, file=sys.stderr)

    remote = RemoteClassifier(urls, concurrency=concurrency, retries=retries, timeout=timeout)
    for failover in remote.failovers:  # servers already unreachable before the first image
        tell(f"server down at start: {failover.reason}")
    start_down = {f.url for f in remote.failovers}
    with remote, tqdm(total=len(paths), unit="img", desc="predicting", file=sys.stderr, disable=len(paths) < 2) as bar:
        items = remote.predict_files(
            paths, top_k=top_k, consistent=consistent, progress=bar.update, reason_not_to_send=reason_not_to_send
        )
    for failover in remote.failovers:
        if failover.url not in start_down:
            tell(
                f"failover: {failover.url} dropped out ({failover.reason}); "
                f"{failover.retried} request(s) retried on the other server(s)"
            )
    spread = ", ".join(f"{url} {count}" for url, count in sorted(remote.requests_per_server.items()))
    tell(f"requests per server: {spread or 'none'}")
    return items, remote.heads
