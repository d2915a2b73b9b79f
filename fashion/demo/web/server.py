"""Serve the in-browser demo on this machine: the static page, onnxruntime-web's files and the model.

The server only hands out files; the browser decodes the photo and runs the model (WASM). Everything
comes from this machine: onnxruntime-web from ``node_modules`` (installed from the npm registry by
``make web``), never from a CDN.

    python -m fashion.demo.web.server --bundle models/fashion-effnetb0     # then open the printed URL
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

WEB_DIR = Path(__file__).resolve().parent
ORT_DIST = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
STATIC = ("index.html", "app.js", "fashion-model.js")
STANDALONE_KEY = "onnx_standalone"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".map": "application/json",
}


class WebSetupError(RuntimeError):
    """The page cannot be served: npm packages or the standalone model are missing (the message says how to fix)."""


def resolve_model(bundle_or_model: str | Path) -> Path:
    """A standalone ``.onnx`` file, or the bundle folder whose manifest lists one."""
    from fashion.runtime.bundle import load_manifest

    path = Path(bundle_or_model)
    if path.is_file():
        return path
    bundle = load_manifest(path, verify_hashes=False)
    if STANDALONE_KEY not in bundle.artifacts:
        raise WebSetupError(
            f"{path}: no standalone model; build it with `python -m fashion.export.standalone "
            f"{path}` or `fashion-export {path} --standalone`"
        )
    return bundle.artifact_path(STANDALONE_KEY)


def check_npm_packages() -> None:
    if not (ORT_DIST / "ort.wasm.min.js").is_file():
        raise WebSetupError(f"{ORT_DIST} is missing: run `make web` (npm ci in {WEB_DIR})")


class _Handler(SimpleHTTPRequestHandler):
    """Maps the few URLs the page uses to files; anything else is 404 (no directory listings)."""

    def __init__(self, *args: Any, model: Path, **kwargs: Any):
        self.model = model
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def _target(self) -> Path | None:
        route = self.path.split("?", 1)[0].split("#", 1)[0]
        if route in ("/", ""):
            return WEB_DIR / "index.html"
        if route == "/model.onnx":
            return self.model
        name = route.rsplit("/", 1)[-1]
        if route == f"/{name}" and name in STATIC:
            return WEB_DIR / name
        if route == f"/ort/{name}" and name and (ORT_DIST / name).is_file():
            return ORT_DIST / name
        return None

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._send(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(body=False)

    def _send(self, body: bool) -> None:
        target = self._target()
        if target is None or not target.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = target.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", TYPES.get(target.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass


@contextmanager
def serving(model: str | Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the page for ``model`` (standalone .onnx or bundle) in a thread; yields its URL."""
    check_npm_packages()
    server = ThreadingHTTPServer((host, port), partial(_Handler, model=resolve_model(model)))
    thread = threading.Thread(target=server.serve_forever, name="fashion-web", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--bundle",
    "model",
    type=click.Path(exists=True, path_type=Path),
    default=Path("models/fashion-effnetb0"),
    show_default=True,
    help="Bundle with a standalone model, or a standalone .onnx file.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
def main(model: Path, host: str, port: int) -> None:
    """Serve the in-browser demo (inference runs in the page) until Ctrl-C."""
    try:
        with serving(model, host, port) as url:
            click.echo(f"open {url} (Ctrl-C to stop)")
            threading.Event().wait()
    except WebSetupError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("stopped")


if __name__ == "__main__":
    main()
