"""Memory under a burst of large uploads: N clients each send one big JPEG to a demo process at once.

The demo runs as its own process (``python -m fashion.demo.app``), so its resident memory is measured
alone: the peak while the burst is served and what it keeps once the burst is over.

    python -m fashion.demo.burst --clients 8 --side 7000          # serves the shipped bundle itself
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
from PIL import Image

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from .app import bundle_option
from .browser import DONE_MARKERS

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = """
import importlib
import inspect
from fashion.runtime import Classifier
if {exact} and "fast_decode" in inspect.signature(Classifier.load).parameters:
    _load = Classifier.load
    Classifier.load = lambda *args, **kwargs: _load(*args, fast_decode=False, **kwargs)
importlib.import_module({module!r}).main({args!r})
"""
SAMPLE_IMAGES = REPO_ROOT / "data" / "sample" / "images"


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_photos(directory: Path, count: int, side: int) -> list[Path]:
    """``count`` different sample photos upscaled to side x side, saved as JPEG quality 90."""
    sources = sorted(SAMPLE_IMAGES.glob("*.jpg"))[:count]
    if not sources:
        raise click.ClickException(f"no sample photos in {SAMPLE_IMAGES}")
    photos = []
    for number in range(count):
        with Image.open(sources[number % len(sources)]) as small:
            big = small.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        path = directory / f"big-{number}.jpg"
        big.save(path, quality=90)
        photos.append(path)
    return photos


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"the demo exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise click.ClickException(f"the demo did not answer at {url} within {timeout_s:.0f} s")


def burst(url: str, pid: int, photos: list[Path], settle_s: float = 3.0) -> dict[str, float | int]:
    """Send every photo at once (one client each); sample the server's RSS every 50 ms."""
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False) for _ in photos]
    idle = rss_mb(pid)
    peak, stop = [idle], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.05)

    def one(pair: tuple[Client, Path]) -> bool:
        status = pair[0].predict(handle_file(str(pair[1])), "articleType", api_name="/predict")[0]
        return DONE_MARKERS[0] in status

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(photos)) as pool:
        ok = sum(pool.map(one, zip(clients, photos)))
    wall_s = time.perf_counter() - start
    time.sleep(settle_s)
    stop.set()
    sampler.join()
    for client in clients:
        client.close()
    return {
        "uploads": len(photos),
        "predicted": ok,
        "wall_s": round(wall_s, 2),
        "rss_idle_mb": round(idle),
        "rss_peak_mb": round(max(peak)),
        "rss_after_mb": round(rss_mb(pid)),
    }


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@bundle_option("Bundle to serve")
@click.option("--clients", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--side",
    default=7000,
    show_default=True,
    type=click.IntRange(64, 7100),
    help="Width and height of each uploaded JPEG.",
)
@click.option(
    "--exact-decode",
    is_flag=True,
    help="Turn the runtime's reduced-size decoding of large photos off in the served demo.",
)
@click.option(
    "--module",
    default="fashion.demo.app",
    show_default=True,
    help="Module whose main() serves the demo (e.g. an older copy, to compare).",
)
def main(bundle: Path | None, clients: int, side: int, exact_decode: bool, module: str) -> None:
    """Serve the demo in a child process, send CLIENTS uploads of SIDE x SIDE at once, print its RSS as JSON."""
    from .server import free_port

    port = free_port()
    args = ["--port", str(port), "--max-upload-mb", "50"] + (["--bundle", str(bundle)] if bundle else [])
    command = [sys.executable, "-c", SERVE.format(exact=exact_decode, module=module, args=args)]
    with tempfile.TemporaryDirectory(prefix="fashion-burst-") as tmp:
        photos = make_photos(Path(tmp), clients, side)
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url, process)
            warm = burst(url, process.pid, photos[:1], settle_s=0.5)  # first request loads lazy state
            report = {
                "module": module,
                "exact_decode": exact_decode,
                "side": side,
                "jpeg_mb": round(photos[0].stat().st_size / 1e6, 2),
                "warm_up": warm,
                **burst(url, process.pid, photos),
            }
        finally:
            process.terminate()
            process.wait(timeout=30)
    click.echo(json.dumps(report))


if __name__ == "__main__":
    main()
