"""Serve the in-browser demo on this machine: the static page, onnxruntime-web's files and the model.

The server only hands out files; the browser decodes the photo and runs the model (WASM). Everything
comes from this machine: onnxruntime-web from ``node_modules`` (installed from the npm registry by
``make web``), never from a CDN.

    python -m fashion.demo.web.server --bundle models/fashion-effnetb0     # then open the printed URL

Its default port is 8780: 8000-8002 are ``fashion-serve``'s (Triton HTTP, gRPC, metrics) and 7860 is
``fashion-demo``'s, so all of them can run side by side. Exit status as ``fashion/runtime/errors.py`` says:
2 for no standalone model in the bundle or a port in use, 4 when ``make web`` has not installed
onnxruntime-web.
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

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli
from fashion.runtime.errors import EXIT_UNAVAILABLE, EXIT_USAGE, FashionError

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


#: The page's default port: not fashion-serve's 8000-8002 (Triton) nor fashion-demo's 7860.
DEFAULT_PORT = 8780


class WebSetupError(FashionError, RuntimeError):
    """The page cannot be served: npm packages or the standalone model are missing (the message says how to fix)."""

    exit_code = EXIT_USAGE


class NoStandaloneModel(WebSetupError):
    """The bundle has no standalone model (exit 2: an unusable bundle for this command)."""

    exit_code = EXIT_USAGE


class MissingWebPackages(WebSetupError):
    """onnxruntime-web is not installed in node_modules (exit 4: a package is missing)."""

    exit_code = EXIT_UNAVAILABLE


def resolve_model(bundle_or_model: str | Path) -> Path:
    """A standalone ``.onnx`` file, or the bundle folder whose manifest lists one."""
    from fashion.runtime.bundle import load_manifest

    path = Path(bundle_or_model)
    if path.is_file():
        return path
    bundle = load_manifest(path, verify_hashes=False)
    if STANDALONE_KEY not in bundle.artifacts:
        raise NoStandaloneModel(
            f"{path}: no standalone model; build it with `fashion-export {path} --standalone-only` "
            f"(from the recorded FP32 ONNX) or `fashion-export {path} --standalone`"
        )
    return bundle.artifact_path(STANDALONE_KEY)


def check_npm_packages() -> None:
    if not (ORT_DIST / "ort.wasm.min.js").is_file():
        raise MissingWebPackages(f"{ORT_DIST} is missing: run `make web` (npm ci in {WEB_DIR})")


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


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--bundle",
    "model",
    type=click.Path(exists=True, path_type=Path),
    default=Path("models/fashion-effnetb0"),
    show_default=True,
    help="Bundle with a standalone model, or a standalone .onnx file.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="0 picks a free port. Not 8000: that is fashion-serve's HTTP port.",
)
def main(model: Path, host: str, port: int) -> None:
    """Serve the in-browser demo (inference runs in the page) until Ctrl-C.

    Exit status: 0 after Ctrl-C, 2 for a bundle without a standalone model or a port in use, 4 when
    onnxruntime-web is not installed (make web).
    """
    from fashion.demo.app import check_port

    resolve_model(model)  # the bundle's problems first, then the port, then the npm packages
    if port:
        check_port(host, port)
    check_npm_packages()
    try:
        with serving(model, host, port) as url:
            click.echo(f"open {url} (Ctrl-C to stop)")
            threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopped")


if __name__ == "__main__":
    main()
