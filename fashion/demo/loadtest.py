"""Bounded load test: N concurrent clients each send M photo predictions to a running demo.

Each client is a separate ``gradio_client.Client`` (its own connection and queue session), like
separate browser tabs; latency is measured end to end (upload + queue + prediction + response).

    python -m fashion.demo.loadtest --clients 8 --requests 25            # serves the shipped bundle itself
    python -m fashion.demo.loadtest --url http://127.0.0.1:7860 --clients 8 --requests 25
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from .app import bundle_option
from .browser import DONE_MARKERS

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "data" / "sample" / "images"


@dataclass
class LoadReport:
    clients: int
    requests: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> str:
        done = len(self.latencies_ms)
        return (
            f"{self.clients} clients x {self.requests // max(self.clients, 1)} requests: {done} ok, "
            f"{len(self.errors)} errors in {self.wall_s:.1f} s ({done / max(self.wall_s, 1e-9):.1f} req/s); "
            f"latency p50 {self.percentile(50):.1f} ms, p90 {self.percentile(90):.1f} ms, "
            f"p99 {self.percentile(99):.1f} ms, max {max(self.latencies_ms, default=float('nan')):.1f} ms"
        )


def run_load(
    url: str,
    images: Sequence[str | os.PathLike],
    clients: int = 8,
    requests_per_client: int = 25,
    head: str = "articleType",
) -> LoadReport:
    """Send ``clients * requests_per_client`` predictions from ``clients`` threads; count every failure."""
    from gradio_client import Client, handle_file

    if not images:
        raise ValueError("no images for the load test")
    report = LoadReport(clients=clients, requests=clients * requests_per_client)
    lock = threading.Lock()

    def one_client(number: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # a client that cannot even connect fails all of its requests
            with lock:
                report.errors += [f"client {number}: {exc!r}"] * requests_per_client
            return
        for i in range(requests_per_client):
            image = str(images[(number * requests_per_client + i) % len(images)])
            start = time.perf_counter()
            try:
                status = client.predict(handle_file(image), head, api_name="/predict")[0]
                failure = None if DONE_MARKERS[0] in status else f"{image}: {status}"
            except Exception as exc:
                failure = f"{image}: {exc!r}"
            elapsed_ms = (time.perf_counter() - start) * 1000
            with lock:
                if failure:
                    report.errors.append(failure)
                else:
                    report.latencies_ms.append(elapsed_ms)
        client.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one_client, range(clients)))
    report.wall_s = time.perf_counter() - start
    return report


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--url", default=None, help="A running demo; without it the command serves --bundle itself.")
@bundle_option("Bundle to serve when no --url")
@click.option(
    "--images",
    "image_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Folder of .jpg photos to send [default: the committed sample next to the code].",
)
@click.option("--clients", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--requests", "requests_per_client", default=25, show_default=True, type=click.IntRange(1))
def main(url: str | None, bundle: Path | None, image_dir: Path | None, clients: int, requests_per_client: int) -> None:
    """Load-test the demo with concurrent clients and print latency percentiles (works from any folder)."""
    image_dir = image_dir or SAMPLE_IMAGES
    images = sorted(image_dir.glob("*.jpg"))[:50]
    if not images:
        raise click.BadParameter(f"no .jpg photos in {image_dir}", param_hint="'--images'")
    if url is None:
        from fashion.runtime import Classifier

        from .app import resolve_bundle
        from .server import running_demo

        with Classifier.load(resolve_bundle(bundle)) as classifier, running_demo(classifier) as served:
            click.echo(
                f"serving {classifier.bundle.root} ({classifier.info['backend']}, "
                f"{classifier.entry.precision}) at {served}"
            )
            report = run_load(served, images, clients, requests_per_client)
    else:
        report = run_load(url, images, clients, requests_per_client)
    click.echo(report.summary())
    for error in report.errors[:10]:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
