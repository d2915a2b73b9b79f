"""The front door of ``fashion-serve``: a small streaming HTTP/1.1 reverse proxy in front of Triton.

Triton 2.51 (the one PyTriton 0.7 bundles) has no request-size option: a 100 MB body crossed ``tritonserver``,
a Python-backend stub (through ``/dev/shm``) and this process before ``--max-image-bytes`` answered it, and the
tree's memory grew by hundreds of MB per request. So Triton listens on internal loopback ports only and this
front listens on ``--http-port``:

* a body larger than ``--max-body-bytes`` (``Content-Length`` read from the head; a chunked body counted as it
  arrives) is answered **413** with a JSON error before any of it reaches Triton; the rest of the body is read
  and dropped (for at most ``LINGER_S``) so that a client still sending reads the answer instead of a reset;
* while the models load, and from the moment the server is asked to stop (SIGTERM/Ctrl-C) or a model process
  died, every request gets **503** with ``Retry-After`` and ``Connection: close``: load balancers and
  ``fashion-predict --server`` send it elsewhere, while the requests already inside Triton finish;
* everything else (KServe v2 REST, binary extension, health, metadata, statistics) is forwarded unchanged,
  streaming, over one kept-alive Triton connection per client connection.

Runs an asyncio loop in one thread of the ``fashion-serve`` process (standard library only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter

from .errors import ServeError

STARTING, SERVING, DRAINING = "starting", "serving", "draining"
#: Largest request or response head (request line + headers) read.
HEAD_LIMIT = 64 * 1024
#: Bytes moved per read when streaming a body.
CHUNK = 256 * 1024
#: Seconds an oversized or refused body is still read (and dropped) so the client can read the answer.
LINGER_S = 10.0
#: ``Retry-After`` (seconds) on 503 answers.
RETRY_AFTER_S = 2
#: Room for the KServe v2 JSON header and framing on top of the largest image (``--max-image-bytes``).
BODY_HEADROOM = 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"}
REASONS = {
    400: "Bad Request",
    413: "Content Too Large",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def default_max_body(max_image_bytes: int) -> int:
    return max_image_bytes + BODY_HEADROOM


class Refusal(Exception):
    """An answer the front gives itself instead of forwarding."""

    def __init__(self, status: int, message: str, body_left: int | None = 0):
        super().__init__(message)
        self.status, self.message, self.body_left = status, message, body_left  # None: until the client stops


class _Abort(Exception):
    """The answer broke off after its head was sent: only closing the client connection is left."""


def _headers(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise Refusal(400, f"malformed header line {line[:80]!r}")
        out.append((name.decode("latin-1"), value.decode("latin-1").strip()))
    return out


def _get(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name]


def _framing(headers: list[tuple[str, str]]) -> tuple[int | None, bool]:
    """(Content-Length or None, chunked?) of a message; Refusal for ambiguous framing (request smuggling)."""
    codings = [c.strip().lower() for v in _get(headers, "transfer-encoding") for c in v.split(",") if c.strip()]
    lengths = {v.strip() for v in _get(headers, "content-length")}
    if codings:
        if codings != ["chunked"]:
            raise Refusal(501, f"Transfer-Encoding {', '.join(codings)} is not supported (only chunked)")
        if lengths:
            raise Refusal(400, "both Content-Length and Transfer-Encoding given")
        return None, True
    if not lengths:
        return None, False
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise Refusal(400, f"unusable Content-Length {sorted(lengths)}")
    return int(next(iter(lengths))), False


async def _chunk_size(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    line = await reader.readuntil(b"\r\n")
    try:
        return int(line.split(b";", 1)[0].strip(), 16), line
    except ValueError:
        raise Refusal(400, "malformed chunk size") from None


async def _trailers(reader: asyncio.StreamReader) -> bytes:
    raw = b""
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        if line == b"\r\n":
            return raw


def _answer(status: int, message: str, close: bool, extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Door:
    """What the fronts (HTTP and gRPC) let through: nothing while starting, everything while serving, nothing
    new once stopping; counts the requests in flight and the answers given."""

    def __init__(self) -> None:
        self.state = STARTING
        self.reason = "the models are loading"
        self.in_flight = 0
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def refusal(self) -> str | None:
        """None while serving, else why a new request is refused."""
        if self.state == SERVING:
            return None
        why = "starting: the models are loading" if self.state == STARTING else f"stopping: {self.reason}"
        return f"{why}; retry on another server"

    def enter(self) -> bool:
        with self._lock:
            if self.state != SERVING:
                return False
            self.in_flight += 1
            return True

    def leave(self, outcome: str = "forwarded") -> None:
        with self._lock:
            self.in_flight -= 1
            self.counts[outcome] += 1

    def count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def open(self) -> None:
        self.state = SERVING

    def close(self, reason: str) -> None:
        """From now on every new request is refused (HTTP 503, gRPC UNAVAILABLE); those in flight go on."""
        if self.state != DRAINING:
            self.reason = reason
            self.state = DRAINING

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no forwarded request is in flight (within ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.in_flight

    def summary(self) -> str:
        c = self.counts
        return (
            f"front door: {c['forwarded']} request(s) forwarded, {c['413']} refused as too large (HTTP 413), "
            f"{c['503']} refused while starting or stopping (HTTP 503), "
            f"{c['grpc unavailable']} gRPC call(s) refused (UNAVAILABLE)"
        )


class HttpFront:
    """The HTTP proxy; :meth:`start` binds and serves, letting through what ``door`` lets through."""

    def __init__(
        self,
        host: str,
        port: int,
        backend_port: int,
        max_body_bytes: int,
        door: Door | None = None,
        backend_host: str = "127.0.0.1",
    ):
        self.host, self.port = host, port
        self.backend = (backend_host, backend_port)
        self.max_body_bytes = max_body_bytes
        self.door = door or Door()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- control, from the main thread ----------------------------------------------------------------------
    def start(self) -> None:
        """Bind ``host:port`` (ServeError when that fails) and serve in a thread; answers 503 until :meth:`open`."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._connection, self.host, self.port, limit=HEAD_LIMIT, reuse_address=True, backlog=512
                    )
                )
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                # connections accepted while stopping have tasks that never ran: cancel and finish every one,
                # so closing the loop destroys no pending task (and prints nothing after "stopped")
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:  # gather() of nothing would look for this thread's current loop, and there is none
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fashion-serve-front", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            exc = failure[0]
            raise ServeError(f"cannot listen on {self.host}:{self.port} (--http-port): {exc.strerror or exc}")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    # -- the proxy, in the loop's thread ---------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    keep, upstream = await self._exchange(reader, writer, upstream)
                except Refusal as refusal:
                    await self._refuse(reader, writer, refusal)
                    return
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, _Abort):
            return
        except asyncio.CancelledError:
            return
        finally:
            self._tasks.discard(task)
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refusal: Refusal) -> None:
        """Answer ``refusal`` and close; first read and drop what the client may still be sending (bounded)."""
        self.door.count(str(refusal.status))
        extra = {"Retry-After": str(RETRY_AFTER_S)} if refusal.status == 503 else None
        writer.write(_answer(refusal.status, refusal.message, close=True, extra=extra))
        with contextlib.suppress(Exception):
            await writer.drain()
            deadline = time.monotonic() + LINGER_S
            left = refusal.body_left
            while (left is None or left > 0) and time.monotonic() < deadline:
                want = CHUNK if left is None else min(CHUNK, left)
                data = await asyncio.wait_for(reader.read(want), max(0.01, deadline - time.monotonic()))
                if not data:
                    break
                if left is not None:
                    left -= len(data)
            if writer.can_write_eof():
                writer.write_eof()

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise Refusal(400, "incomplete request head") from None
            return None
        except asyncio.LimitOverrunError:
            raise Refusal(431, f"request head over {HEAD_LIMIT} bytes", body_left=None) from None
        return data.lstrip(b"\r\n")

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[bool, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """One request and its answer; (keep the client connection?, the upstream connection to reuse)."""
        head = await self._read_head(reader)
        if head is None:
            return False, upstream
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Refusal(400, f"not an HTTP/1.x request line: {lines[0][:80]!r}", body_left=None)
        method, target, version = parts
        headers = _headers(lines[1:])
        length, chunked = _framing(headers)
        connection = {t.strip().lower() for v in _get(headers, "connection") for t in v.split(",")}
        keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        body_left = None if chunked else length or 0
        if length is not None and length > self.max_body_bytes:
            raise Refusal(413, self._too_large(f"{length} bytes"), body_left=length)
        expect = [v.lower() for v in _get(headers, "expect")]
        if expect and expect != ["100-continue"]:
            raise Refusal(417, f"unsupported Expect {expect}", body_left=body_left)
        if not self.door.enter():
            raise Refusal(503, self.door.refusal() or "stopping", body_left=body_left)
        outcome = "failed"
        try:
            body = b""
            if chunked:
                if expect:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await self._dechunk(reader)
                length = len(body)
            out = [f"{method} {target} HTTP/1.1"]
            out += [
                f"{n}: {v}"
                for n, v in headers
                if n.lower() not in HOP_BY_HOP and n.lower() not in ("transfer-encoding", "content-length")
            ]
            if length is not None:
                out.append(f"Content-Length: {length}")
            if upstream is not None and upstream[0].at_eof():  # Triton closed it while idle
                upstream[1].close()
                upstream = None
            if upstream is None:
                upstream = await self._open_upstream()
            up_reader, up_writer = upstream
            up_writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            if length and not chunked:
                if expect:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await self._copy(reader, up_writer, length)
            await up_writer.drain()
            try:
                up_keep, keep = await self._respond(up_reader, writer, method, keep)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, Refusal) as exc:
                raise Refusal(
                    502, f"the model server (tritonserver) dropped the request: {type(exc).__name__}"
                ) from None
            outcome = "forwarded"
        finally:
            self.door.leave(outcome)
        if not up_keep:
            with contextlib.suppress(Exception):
                upstream[1].close()
            upstream = None
        return keep, upstream

    def _too_large(self, size: str) -> str:
        return (
            f"request body of {size} is over this server's limit of {self.max_body_bytes} bytes "
            "(fashion-serve --max-body-bytes); send one image per request"
        )

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            up = await asyncio.open_connection(*self.backend, limit=HEAD_LIMIT)
        except OSError as exc:
            raise Refusal(502, f"the model server (tritonserver) is not reachable: {exc.strerror or exc}") from None
        sock = up[1].get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return up

    async def _dechunk(self, reader: asyncio.StreamReader) -> bytes:
        """A chunked request body, counted as it arrives: 413 as soon as it passes the limit."""
        body = bytearray()
        while True:
            size, _ = await _chunk_size(reader)
            if size == 0:
                await _trailers(reader)
                return bytes(body)
            if len(body) + size > self.max_body_bytes:
                raise Refusal(413, self._too_large(f"over {len(body) + size} bytes (chunked)"), body_left=None)
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise Refusal(400, "malformed chunk")

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int) -> None:
        left = length
        while left:
            data = await reader.read(min(CHUNK, left))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            writer.write(data)
            left -= len(data)
            await writer.drain()

    async def _respond(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, keep: bool
    ) -> tuple[bool, bool]:
        """Stream Triton's answer to the client; (reuse the upstream connection?, keep the client's?)."""
        head = await up_reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ConnectionError(f"bad status line {status_line[:80]!r}") from None
        headers = _headers(lines[1:])
        connection = {t.strip().lower() for v in _get(headers, "connection") for t in v.split(",")}
        up_keep = "close" not in connection and status_line.startswith("HTTP/1.1")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        length, chunked = (0, False) if no_body else _framing(headers)
        until_close = not no_body and length is None and not chunked
        out = [status_line] + [f"{n}: {v}" for n, v in headers if n.lower() not in HOP_BY_HOP]
        if not keep or until_close:
            out.append("Connection: close")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        try:
            up_keep = await self._body(up_reader, writer, length, chunked, until_close) and up_keep
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, Refusal):
            raise _Abort from None
        return up_keep, keep and not until_close

    async def _body(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        length: int | None,
        chunked: bool,
        until_close: bool,
    ) -> bool:
        if chunked:
            while True:
                size, line = await _chunk_size(up_reader)
                writer.write(line)
                if size == 0:
                    writer.write(await _trailers(up_reader))
                    break
                await self._copy(up_reader, writer, size + 2)
        elif length:
            await self._copy(up_reader, writer, length)
        elif until_close:
            while data := await up_reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        await writer.drain()
        return not until_close
