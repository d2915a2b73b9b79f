"""Load generator and report: a served bundle vs the in-process runtime on the same machine.

    python -m fashion.serve.loadgen models/fashion-effnetb0 data/sample/images \\
        --server http://127.0.0.1:8000 --grpc 127.0.0.1:8001 --concurrency 1,4,16 --processes 4 \\
        --replica http://127.0.0.1:8010 --json results/serve_load.json --md results/serve_load.md

For each concurrency C, C clients (tritonclient gRPC, spread over up to ``--processes`` processes, a thread
per client) each send one photo per request, back to back, for ``--seconds``. Reported: images/s,
p50/p99 latency, and the server's batch statistics over the window (``inference_count`` images in
``execution_count`` model runs: their ratio is the mean batch the dynamic batcher formed). The in-process
baseline runs C threads calling ``Classifier.predict`` on the same photos in this process. With
``--replica``, the bulk-tagging row times ``fashion-predict --server`` over the folder through every server.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli
from fashion.runtime.remote import MODEL_BYTES, OUTPUT_ERROR, RemoteClassifier, TritonHTTP

from .errors import ServeError


@dataclass
class Row:
    mode: str  # "server" or "in-process" or "bulk"
    concurrency: int
    images: int
    errors: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p99_ms: float
    inference_count: int | None = None
    execution_count: int | None = None
    mean_batch: float | None = None


def _photos(folder: str, limit: int) -> list[bytes]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise ServeError(f"{folder}: no files to send")
    return [p.read_bytes() for p in paths[:limit]]


def _client_process(
    grpc_url: str, threads: int, photos: list[bytes], seconds: float, start_at: float, queue: Any
) -> None:
    """``threads`` gRPC clients sending one photo per request until the window closes; latencies to ``queue``."""
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(offset: int) -> None:
        conn = grpcclient.InferenceServerClient(grpc_url)
        mine, index = [], offset
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < start_at + seconds:
            tensor = grpcclient.InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[photos[index % len(photos)]]], dtype=object))
            begin = time.perf_counter()
            try:
                result = conn.infer(
                    MODEL_BYTES,
                    [tensor],
                    outputs=[grpcclient.InferRequestedOutput(OUTPUT_ERROR), grpcclient.InferRequestedOutput("gender")],
                )
                failed = result.as_numpy(OUTPUT_ERROR)[0, 0] != b""
            except Exception:  # noqa: BLE001 - counted, the run goes on
                failed = True
            mine.append((time.perf_counter() - begin) * 1000)
            with lock:
                errors[0] += failed
            index += 7
        with lock:
            latencies.extend(mine)
        conn.close()

    workers = [threading.Thread(target=client, args=(i * 13,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((latencies, errors[0]))


def _stats(url: str) -> tuple[int, int]:
    stats = TritonHTTP(url).statistics(MODEL_BYTES)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def _row(mode: str, concurrency: int, latencies: list[float], errors: int, seconds: float) -> Row:
    values = np.asarray(latencies or [float("nan")])
    return Row(
        mode,
        concurrency,
        len(latencies),
        errors,
        round(seconds, 2),
        round(len(latencies) / seconds, 1),
        round(float(np.percentile(values, 50)), 1),
        round(float(np.percentile(values, 99)), 1),
    )


def _pool(rows: list[Row]) -> Row:
    """Rounds of one (mode, concurrency) as one row: totals, throughput over the summed windows, latency
    percentiles weighted by each round's images (the rounds' own medians and p99s, images-weighted)."""
    first = rows[0]
    images, seconds = sum(r.images for r in rows), sum(r.seconds for r in rows)
    weights = np.asarray([r.images for r in rows], dtype=float)
    pooled = Row(
        first.mode,
        first.concurrency,
        images,
        sum(r.errors for r in rows),
        round(seconds, 2),
        round(images / seconds, 1),
        round(float(np.average([r.p50_ms for r in rows], weights=weights)), 1),
        round(float(max(r.p99_ms for r in rows)), 1),
    )
    if first.inference_count is not None:
        pooled.inference_count = sum(r.inference_count or 0 for r in rows)
        pooled.execution_count = sum(r.execution_count or 0 for r in rows)
        pooled.mean_batch = round(pooled.inference_count / max(pooled.execution_count, 1), 2)
    return pooled


def run_server(
    http_url: str, grpc_url: str, concurrency: int, processes: int, photos: list[bytes], seconds: float
) -> Row:
    """C clients over up to ``processes`` processes against one server."""
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    context = mp.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 3.0  # every process connected before the window opens
    workers = [
        context.Process(target=_client_process, args=(grpc_url, n, photos, seconds, start_at, queue)) for n in shares
    ]
    for worker in workers:
        worker.start()
    while time.time() < start_at:
        time.sleep(0.01)
    before = _stats(http_url)
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    after = _stats(http_url)
    for worker in workers:
        worker.join()
    latencies = [lat for lats, _ in results for lat in lats]
    row = _row("server", concurrency, latencies, sum(e for _, e in results), seconds)
    row.inference_count, row.execution_count = after[0] - before[0], after[1] - before[1]
    row.mean_batch = round(row.inference_count / max(row.execution_count, 1), 2)
    return row


def run_in_process(bundle: str, concurrency: int, photos: list[bytes], seconds: float, threads: int | None) -> Row:
    """C threads calling Classifier.predict (decode + preprocess + model) on one shared classifier."""
    from fashion.runtime import Classifier

    latencies: list[float] = []
    lock = threading.Lock()
    with Classifier.load(bundle, threads=threads) as clf:
        clf.predict(photos[0])  # warm-up
        start_at = time.time() + 0.5

        def client(offset: int) -> None:
            mine, index = [], offset
            while time.time() < start_at:
                time.sleep(0.001)
            while time.time() < start_at + seconds:
                begin = time.perf_counter()
                clf.predict(photos[index % len(photos)])
                mine.append((time.perf_counter() - begin) * 1000)
                index += 7
            with lock:
                latencies.extend(mine)

        workers = [threading.Thread(target=client, args=(i * 13,)) for i in range(concurrency)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return _row("in-process", concurrency, latencies, 0, seconds)


def run_bulk(urls: list[str], folder: str, concurrency: int) -> tuple[Row, dict[str, int]]:
    """Every photo of ``folder`` once through ``fashion-predict --server``'s client, over all servers."""
    paths = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    latencies: list[float] = []
    remote = RemoteClassifier(urls, concurrency=concurrency)
    begin = time.perf_counter()
    items = remote.predict_files(paths)
    seconds = time.perf_counter() - begin
    latencies = [item.prediction.latency_ms for item in items if item.prediction is not None]
    row = _row("bulk", concurrency, latencies, sum(not item.ok for item in items), seconds)
    row.images_per_s = round(len(items) / seconds, 1)
    return row, remote.requests_per_server


def run_bulk_local(bundle: str, folder: str, threads: int | None) -> Row:
    """The same folder through the in-process runtime in batches of 32 (what ``fashion-predict BUNDLE`` does)."""
    from fashion.runtime import Classifier

    paths = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    with Classifier.load(bundle, threads=threads) as clf:
        clf.predict(paths[0])  # warm-up
        begin = time.perf_counter()
        items = clf.predict_batch(paths, batch_size=32)
        seconds = time.perf_counter() - begin
    latencies = [item.prediction.latency_ms for item in items if item.prediction is not None]
    row = _row("bulk in-process", 1, latencies, sum(not item.ok for item in items), seconds)
    row.images_per_s = round(len(items) / seconds, 1)
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# fashion-serve load test: {report['bundle']}",
        "",
        f"`{report['command']}`",
        "",
        f"Machine: {report['machine']}; server: {report['server_options']}; 1-minute load average "
        f"{report['load_average_1min']['before']} before, {report['load_average_1min']['after']} after "
        "(other work shared the cores)",
        "",
        "| mode | clients | images | errors | images/s | p50 ms | p99 ms | inferences / executions (mean batch) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        batch = (
            f"{row['inference_count']} / {row['execution_count']} ({row['mean_batch']})"
            if row.get("inference_count") is not None
            else ""
        )
        lines.append(
            f"| {row['mode']} | {row['concurrency']} | {row['images']} | {row['errors']} | "
            f"{row['images_per_s']} | {row['p50_ms']} | {row['p99_ms']} | {batch} |"
        )
    if report.get("bulk_requests_per_server"):
        spread = ", ".join(f"{u}: {n}" for u, n in report["bulk_requests_per_server"].items())
        lines += ["", f"Bulk tagging requests per server: {spread}"]
    return "\n".join(lines) + "\n"


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--server", "http_url", required=True, help="HTTP URL of the server (statistics).")
@click.option("--grpc", "grpc_url", required=True, help="gRPC HOST:PORT of the same server (the load).")
@click.option("--replica", "replicas", multiple=True, help="Other servers' HTTP URLs for the bulk-tagging row.")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Comma-separated client counts.")
@click.option("--processes", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=1), default=15, show_default=True, help="Window per row.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="In-process intra-op threads.")
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Repeat each pair, alternating which runs first; rows pool the rounds (p99: the worst round).",
)
@click.option("--photos", type=click.IntRange(min=1), default=64, show_default=True, help="Distinct photos sent.")
@click.option("--server-options", default="", help="How the server was started, recorded in the report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@click.option("--md", "md_path", type=click.Path(dir_okay=False), default=None)
def main(
    bundle,
    images,
    http_url,
    grpc_url,
    replicas,
    concurrency,
    processes,
    seconds,
    threads,
    rounds,
    photos,
    server_options,
    json_path,
    md_path,
):
    """Throughput and latency through the server at each concurrency vs the in-process runtime."""
    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    load_before = os.getloadavg()
    sample = _photos(images, photos)
    rows: list[Row] = []
    for level in levels:
        runs: dict[str, list[Row]] = {"server": [], "in-process": []}
        for round_ in range(rounds):  # alternate which goes first, so drifting background load hits both
            order = ["server", "in-process"] if round_ % 2 == 0 else ["in-process", "server"]
            for mode in order:
                row = (
                    run_server(http_url, grpc_url, level, processes, sample, seconds)
                    if mode == "server"
                    else run_in_process(bundle, level, sample, seconds, threads)
                )
                runs[mode].append(row)
                click.echo(f"{mode} c={level} round {round_ + 1}: {asdict(row)}", err=True)
        rows += [_pool(runs["server"]), _pool(runs["in-process"])]
    spread: dict[str, int] = {}
    if replicas:
        bulk, spread = run_bulk([http_url, *replicas], images, 8)
        rows.append(bulk)
        click.echo(f"bulk: {asdict(bulk)} {spread}", err=True)
        rows.append(run_bulk_local(bundle, images, threads))
        click.echo(f"bulk in-process: {asdict(rows[-1])}", err=True)
    report = {
        "bundle": bundle,
        "command": "python -m fashion.serve.loadgen " + shlex.join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "server_options": server_options,
        "rows": [asdict(r) for r in rows],
        "bulk_requests_per_server": spread,
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
    }
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if md_path:
        Path(md_path).write_text(markdown(report), encoding="utf-8")
    click.echo(markdown(report))


if __name__ == "__main__":  # pragma: no cover
    main()
