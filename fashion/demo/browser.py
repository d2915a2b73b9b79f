"""Drive the demo page in Debian's Chromium with Playwright: upload a photo, read the page, screenshot.

Playwright's own browser download needs the internet, so this uses the system ``chromium``.
The page may reach only this machine: any other request is blocked and recorded.

    python -m fashion.demo.browser --image data/sample/images/1855.jpg --out docs/demo-screenshot.png
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from .app import bundle_option

CHROMIUM = Path(os.environ.get("FASHION_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
DONE_MARKERS = ("Prediction took", "Could not use this file")  # texts of views.status/error_markdown


@contextmanager
def chromium_page(width: int = 1400, height: int = 1100) -> Iterator[tuple[Any, list[str]]]:
    """A Playwright page in headless Chromium that can reach only this machine.

    Yields ``(page, blocked)``: ``blocked`` collects every non-local URL the page tried to load.
    """
    if not CHROMIUM.is_file():
        raise FileNotFoundError(f"{CHROMIUM} not found: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def local_only(route) -> None:
        if urlparse(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", local_only)
            yield page, blocked
        finally:
            browser.close()


def predict_photo(page, url: str, image: str | os.PathLike, timeout_s: float = 60) -> str:
    """Open the demo, upload ``image`` into the photo input, wait for the result; returns the status text."""
    page.goto(url)
    page.wait_for_selector("#photo input[type=file]", state="attached", timeout=timeout_s * 1000)
    page.set_input_files("#photo input[type=file]", str(image))
    page.wait_for_function(
        """(markers) => {
            const status = document.querySelector('#status');
            return status && markers.some((m) => status.innerText.includes(m));
        }""",
        arg=list(DONE_MARKERS),
        timeout=timeout_s * 1000,
    )
    return page.inner_text("#status")


def wait_for_heat_map(page, timeout_s: float = 30) -> None:
    page.wait_for_selector("#heatmap img", state="visible", timeout=timeout_s * 1000)


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@bundle_option("Model bundle")
@click.option("--image", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
def main(bundle: Path | None, image: Path, out: Path) -> None:
    """Serve the demo locally, predict IMAGE in Chromium and save a full-page screenshot to OUT."""
    from fashion.runtime import Classifier

    from .app import resolve_bundle
    from .server import running_demo

    with Classifier.load(resolve_bundle(bundle)) as classifier, running_demo(classifier) as url:
        with chromium_page() as (page, blocked):
            status = predict_photo(page, url, image)
            wait_for_heat_map(page)
            page.wait_for_timeout(500)  # let the label bars finish their transition
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
    click.echo(f"{out}: {status}")
    if blocked:
        click.echo(f"blocked non-local requests: {blocked}", err=True)


if __name__ == "__main__":
    main()
