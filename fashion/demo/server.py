"""Run the demo in the background on a free local port (for tests, screenshots and load tests)."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator

from fashion.runtime import Classifier

from .app import build_app, launch


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(classifier: Classifier, max_upload_mb: float = 10, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the demo for ``classifier`` while the block runs; yields its URL."""
    app = build_app(classifier)
    url = launch(app, host=host, port=free_port(host), max_upload_mb=max_upload_mb, block=False, quiet=True)
    try:
        yield url.rstrip("/")
    finally:
        app.close()
