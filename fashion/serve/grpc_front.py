"""The gRPC front door of ``fashion-serve``: a pass-through gRPC proxy in front of Triton's internal gRPC port.

Triton 2.51 accepts gRPC messages up to 2 GB. This proxy (grpcio, already a PyTriton dependency) forwards every
KServe v2 method byte for byte (no protobuf decoding) with the caller's metadata, and:

* refuses a message over ``--max-body-bytes`` with ``RESOURCE_EXHAUSTED`` -- grpcio checks the message's length
  prefix, so the body is not collected first;
* answers ``UNAVAILABLE`` while the models load and once the server is stopping (the same :class:`Door` as the
  HTTP front), while the calls already inside Triton finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

from .errors import ServeError
from .front import Door

STREAM_METHODS = ("/ModelStreamInfer",)
#: Threads forwarding calls (each call holds one while Triton works on it).
THREADS = 32


def _timeout(context: Any) -> float | None:
    """The caller's deadline (grpcio says ~9.2e18 s when it set none)."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e9 else None


def _metadata(context: Any) -> list[tuple[str, str | bytes]]:
    return [(k, v) for k, v in context.invocation_metadata() if not k.startswith((":", "grpc-"))]


class GrpcFront:
    """See the module docstring; :meth:`start` binds ``host:port`` (ServeError when it cannot)."""

    def __init__(self, host: str, port: int, backend_port: int, max_body_bytes: int, door: Door):
        self.host, self.port, self.backend_port = host, port, backend_port
        self.max_body_bytes = max_body_bytes
        self.door = door
        self._server: Any = None
        self._channel: Any = None

    def start(self) -> None:
        import grpc

        door = self.door
        self._channel = grpc.insecure_channel(
            f"127.0.0.1:{self.backend_port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        channel = self._channel

        def refuse(context: Any) -> None:
            door.count("grpc unavailable")
            context.abort(grpc.StatusCode.UNAVAILABLE, door.refusal() or "stopping")

        def unary(method: str):
            call = channel.unary_unary(method)

            def forward(request: bytes, context: Any) -> bytes:
                if not door.enter():
                    refuse(context)
                outcome = "failed"
                try:
                    response, done = call.with_call(request, metadata=_metadata(context), timeout=_timeout(context))
                    context.set_trailing_metadata(done.trailing_metadata() or ())
                    outcome = "forwarded"
                    return response
                except grpc.RpcError as exc:
                    context.abort(exc.code(), exc.details() or "")
                    raise  # abort raises; for type checkers
                finally:
                    door.leave(outcome)

            return grpc.unary_unary_rpc_method_handler(forward)

        def stream(method: str):
            call = channel.stream_stream(method)

            def forward(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
                if not door.enter():
                    refuse(context)
                outcome = "failed"
                try:
                    yield from call(requests, metadata=_metadata(context), timeout=_timeout(context))
                    outcome = "forwarded"
                except grpc.RpcError as exc:
                    context.abort(exc.code(), exc.details() or "")
                finally:
                    door.leave(outcome)

            return grpc.stream_stream_rpc_method_handler(forward)

        class Forward(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                method = details.method
                return stream(method) if method.endswith(STREAM_METHODS) else unary(method)

        self._server = grpc.server(
            futures.ThreadPoolExecutor(THREADS, thread_name_prefix="fashion-serve-grpc"),
            handlers=[Forward()],
            options=[
                ("grpc.max_receive_message_length", self.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        try:
            bound = self._server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as exc:
            bound, why = 0, str(exc)
        else:
            why = "address in use or unavailable"
        if not bound:
            raise ServeError(f"cannot listen on {self.host}:{self.port} (--grpc-port): {why}")
        self._server.start()

    def stop(self, grace_s: float = 1.0) -> None:
        if self._server is not None:
            self._server.stop(grace_s).wait(grace_s + 2)
        if self._channel is not None:
            self._channel.close()
