"""``fashion-serve``: serve a bundle on Triton Inference Server (HTTP + gRPC, dynamic batching, metrics).

    fashion-serve models/fashion-effnetb0 --http-port 8000 --grpc-port 8001 --metrics-port 8002
    fashion-predict --server http://127.0.0.1:8000 photos/ --format csv

Binds 127.0.0.1 unless ``--host`` says otherwise; Triton itself listens on internal loopback ports behind a
front door that refuses request bodies over ``--max-body-bytes`` (HTTP 413, gRPC RESOURCE_EXHAUSTED) and
answers 503 while starting or stopping. Stops on Ctrl-C or SIGTERM (exit 0 when every child stopped by itself). Exit 2: unusable options or a port in use; 4: PyTriton missing; 5: a model process or
tritonserver died while serving, or stopping had to kill processes (see fashion/runtime/errors.py).
"""

from __future__ import annotations

import signal
from types import FrameType

import click

from fashion.runtime.cli_support import CONTEXT_SETTINGS, LoadOptions, flag_spelling, model_options, run_cli
from fashion.runtime.errors import BackendUnavailableError

from .errors import ServeError
from .models import DEFAULT_MAX_IMAGE_BYTES
from .server import ServeOptions, serve


def _port(value: int, name: str) -> int:
    if not 0 < value < 65536:
        raise ServeError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _stop_on_sigterm() -> None:
    """SIGTERM (docker stop, kubectl delete) stops the server like Ctrl-C: Triton refuses new requests and
    finishes those in flight, then every child process is stopped and its shared memory removed."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind HTTP, gRPC and metrics to (0.0.0.0 opens the server to the network).",
)
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="Prometheus metrics (/metrics).")
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Largest batch the dynamic batcher forms.",
)
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="How long a request may wait for others to join its batch.",
)
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Model instances (each its own session) running batches side by side.",
)
@model_options
@click.option(
    "--max-image-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_IMAGE_BYTES,
    show_default=True,
    help="Largest encoded image accepted; a larger one gets an error, the rest of its batch runs.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Largest HTTP request body or gRPC message; larger ones are refused at the door (HTTP 413, gRPC "
    "RESOURCE_EXHAUSTED) before they reach Triton. Default: --max-image-bytes + 1 MiB.",
)
@click.option("--http-threads", type=click.IntRange(min=1), default=None, help="Threads serving HTTP requests.")
@click.option("-v", "--verbose", is_flag=True, help="Show Triton's full log (info level, CUDA/NVML lines included).")
def main(
    bundle,
    host,
    http_port,
    grpc_port,
    metrics_port,
    max_batch,
    max_queue_delay_us,
    instances,
    load_options: LoadOptions,
    max_image_bytes,
    max_body_bytes,
    http_threads,
    verbose,
):
    """Serve BUNDLE on Triton: models fashion (image bytes), fashion_tensor (NHWC tensors), fashion_info."""
    ports = {"--http-port": http_port, "--grpc-port": grpc_port, "--metrics-port": metrics_port}
    for name, value in ports.items():
        _port(value, name)
    if len(set(ports.values())) != len(ports):
        raise ServeError(f"--http-port, --grpc-port and --metrics-port must differ, got {sorted(ports.values())}")
    options = ServeOptions(
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        load=load_options,
        max_image_bytes=max_image_bytes,
        max_body_bytes=max_body_bytes,
        http_threads=http_threads,
        verbose=verbose,
    )
    _stop_on_sigterm()
    try:
        serve(bundle, options, say=lambda line: click.echo(line, err=True))
    except BackendUnavailableError as exc:
        raise flag_spelling(exc) from None
    except KeyboardInterrupt:  # during the start: nothing was serving yet
        pass
    click.echo("stopped", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
