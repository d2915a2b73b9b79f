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

import itertools
import os
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidImageError
from .inputs import MAX_FILE_BYTES, read_image_file
from .kserve import (  # noqa: F401 - re-exported: the protocol's names have always been importable from here
    _DEADLINES,
    _DTYPES,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    INPUT_IMAGE,
    INPUT_IMAGE_UINT8,
    INPUT_QUERY,
    MODEL_BYTES,
    MODEL_INFO,
    MODEL_TENSOR,
    OUTPUT_ERROR,
    OUTPUT_INFO,
    RETRY_PAUSE_S,
    RETRY_STATUSES,
    RemoteError,
    ServerBusyError,
    ServerConnectionError,
    ServerUnavailableError,
    TritonHTTP,
    _Deadlines,
    _error_text,
    _shutdown,
    build_request,
    confidence_output,
    decode_bytes,
    encode_bytes,
    label_output,
    parse_response,
)
from .preprocess import _describe
from .results import BatchItem, Decoder, Prediction


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
