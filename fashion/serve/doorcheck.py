"""Measure fashion-serve's front door: oversized bodies (status, time, tree RSS, /dev/shm) and the latency it adds.

    .venv-serve/bin/python -m fashion.serve.doorcheck models/fashion-effnetb0 data/sample/images \\
        --rounds 300 --json results/fashion-serve-front-door.json

Starts one ``fashion-serve`` on free loopback ports (this interpreter), sends three 100 MB KServe v2 requests over
HTTP and three over gRPC while sampling the server tree's RSS every 20 ms, then times ``GET /v2/health/ready`` and
one-photo ``fashion`` inferences through the front (``--http-port``) and straight to Triton's internal port,
alternating which goes first, and stops the server with SIGTERM to its main process (exit code recorded). Linux only.

Errors go through ``run_cli`` (``Error: <message>``) with the project's exit codes: 2 unusable options or an
image folder without .jpg/.png photos (checked before the server starts), 4 ``tritonclient[grpc]`` or ``/proc``
missing, 5 fashion-serve failed to start (its exit code and log tail in the message) or stopped answering during
the measurement, 130 Ctrl-C (the server is stopped either way).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli
from fashion.runtime.kserve import RemoteError, ServerConnectionError
from fashion.runtime.remote import MODEL_BYTES, OUTPUT_ERROR, TritonHTTP, build_request, encode_bytes

from .errors import ServeError, ServerFailed, ServeUnavailable
from .supervisor import descendants, shm_segments

#: Seconds fashion-serve gets to answer ``/v2/health/ready``.
READY_TIMEOUT_S = 180
#: Photos (the first, sorted) of the image folder sent in the latency rounds.
PHOTO_SUFFIXES = (".jpg", ".png")


def _free_ports(count: int) -> list[int]:
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
        except (OSError, IndexError):
            continue
    return total / 1024


def shm_mb(pid: int) -> float:
    names = shm_segments([pid, *descendants(pid)])
    return sum((Path("/dev/shm") / n).stat().st_size for n in names if (Path("/dev/shm") / n).exists()) / 2**20


def _oversized(pid: int, send) -> dict:
    """Three sends of 100 MB while sampling the tree's RSS."""
    peak, stop = [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(pid))
            time.sleep(0.02)

    before, shm_before = tree_rss_mb(pid), shm_mb(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answers = []
    for _ in range(3):
        start = time.monotonic()
        answers.append((send(), round(time.monotonic() - start, 3)))
    stop.set()
    sampler.join()
    return {
        "answers": [a for a, _ in answers],
        "seconds": [s for _, s in answers],
        "rss_mb": {"before": round(before), "peak": round(peak[0]), "after": round(tree_rss_mb(pid))},
        "shm_mb": {"before": round(shm_before), "after": round(shm_mb(pid))},
    }


def _p50_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 3)


def _photos(images: str) -> list[bytes]:
    """Up to 32 photos of the folder; ServeError (exit 2) when it holds none."""
    paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)[:32]
    if not paths:
        raise ServeError(f"{images}: no {' or '.join(PHOTO_SUFFIXES)} photos to send")
    return [p.read_bytes() for p in paths]


def _grpc_client_module() -> Any:
    """``tritonclient.grpc`` and a Linux ``/proc``; ServeUnavailable (exit 4) naming what is missing."""
    if not Path("/proc/self/status").is_file():
        raise ServeUnavailable("the front-door check reads /proc (Linux only)")
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise ServeUnavailable(
            "the front-door check sends gRPC requests with tritonclient: pip install 'tritonclient[grpc]' "
            "(in the dev extra)"
        ) from None
    return grpcclient


def not_ready(code: int | None, log_tail: str) -> ServeError:
    """The error for a server that never became ready: its own exit 2 or 4 passes on, anything else is exit 5."""
    if code is None:
        return ServerFailed(f"fashion-serve was not ready within {READY_TIMEOUT_S} s; its log ends:\n{log_tail}")
    what = f"fashion-serve exited with code {code} before it was ready; its log ends:\n{log_tail}"
    if code == ServeUnavailable.exit_code:
        return ServeUnavailable(what)
    if code == ServeError.exit_code:
        return ServeError(what)
    return ServerFailed(what)


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--rounds", type=click.IntRange(min=10), default=300, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
def main(bundle: str, images: str, rounds: int, json_path: str | None) -> None:
    """Measure fashion-serve's front door for BUNDLE with the photos of IMAGES (exit codes: module text)."""
    photos = _photos(images)
    grpcclient = _grpc_client_module()
    http_port, grpc_port, metrics_port = _free_ports(3)
    log = Path(f"/tmp/doorcheck-{http_port}.log")
    command = [sys.executable, "-m", "fashion.serve.cli", bundle, "--http-port", str(http_port)]
    command += ["--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)]
    with open(log, "wb") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    front = TritonHTTP(f"http://127.0.0.1:{http_port}")
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not front.ready():
            if server.poll() is not None or time.monotonic() > deadline:
                raise not_ready(server.poll(), log.read_text(errors="replace")[-2000:])
            time.sleep(0.3)
        found = re.search(r"Triton itself listens on 127\.0\.0\.1:(\d+) \(HTTP\)", log.read_text(errors="replace"))
        if not found:
            raise ServerFailed(f"fashion-serve did not name Triton's internal HTTP port in its log ({log})")
        internal = TritonHTTP(f"http://127.0.0.1:{found.group(1)}")
        big = os.urandom(1024) * (100 * 1024)
        body, header_length = build_request([("image", "BYTES", [1, 1], encode_bytes([big]))], [OUTPUT_ERROR])

        def send_http() -> str:
            status, _, data = front.request(
                "POST", f"/v2/models/{MODEL_BYTES}/infer", body, {"Inference-Header-Content-Length": str(header_length)}
            )
            return f"HTTP {status}: {data[:120].decode('utf-8', 'replace')}"

        import numpy as np

        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")

        def send_grpc() -> str:
            photo = grpcclient.InferInput("image", [1, 1], "BYTES")
            photo.set_data_from_numpy(np.array([[big]], dtype=object))
            try:
                grpc.infer(MODEL_BYTES, [photo])
                return "gRPC OK"
            except Exception as exc:  # noqa: BLE001 - the refusal is the point
                return str(exc)[:120]

        result: dict = {
            "command": " ".join(["python -m fashion.serve.doorcheck", bundle, images, "--rounds", str(rounds)])
        }
        result["http_100mb_x3"] = _oversized(server.pid, send_http)
        result["grpc_100mb_x3"] = _oversized(server.pid, send_grpc)
        times: dict[str, dict[str, list[float]]] = {k: {"front": [], "internal": []} for k in ("health", "infer")}
        for n in range(rounds):
            for side in ("front", "internal") if n % 2 == 0 else ("internal", "front"):
                client = front if side == "front" else internal
                start = time.perf_counter()
                client.request("GET", "/v2/health/ready")
                times["health"][side].append(time.perf_counter() - start)
                inputs = [("image", "BYTES", [1, 1], encode_bytes([photos[n % len(photos)]]))]
                start = time.perf_counter()
                client.infer(MODEL_BYTES, inputs, [OUTPUT_ERROR])
                times["infer"][side].append(time.perf_counter() - start)
        result["latency_p50_ms"] = {
            what: {
                "front": _p50_ms(sides["front"]),
                "internal": _p50_ms(sides["internal"]),
                "overhead": round(_p50_ms(sides["front"]) - _p50_ms(sides["internal"]), 3),
                "overhead_p50_of_pairs": _p50_ms([f - i for f, i in zip(sides["front"], sides["internal"])]),
            }
            for what, sides in times.items()
        }
        result["rounds"] = rounds
        result["load_average"] = os.getloadavg()
        result["cpus"] = os.cpu_count()
        grpc.close()
    except (ServerConnectionError, RemoteError) as exc:
        raise ServerFailed(f"fashion-serve stopped answering during the measurement: {exc} (log: {log})") from None
    finally:
        server.send_signal(signal.SIGTERM)  # to fashion-serve alone, as docker stop / kubectl delete do
        try:
            result_code = server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            result_code = server.wait()
    result["server_exit_after_sigterm"] = result_code
    result["server_log_tail"] = log.read_text(errors="replace").splitlines()[-4:]
    text = json.dumps(result, indent=1)
    click.echo(text)
    if json_path:
        Path(json_path).write_text(text + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
