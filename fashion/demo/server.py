"""Run the demo in the background on a free local port (for tests, screenshots and load tests)."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fashion.runtime import Classifier

from .page import build_app, launch


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(classifier: Classifier, max_upload_mb: float = 10, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the demo for ``classifier`` while the block runs; yields its URL. Its files go when it stops."""
    with tempfile.TemporaryDirectory(prefix="fashion-demo-") as work_dir:
        app = build_app(classifier, work_dir=Path(work_dir))
        url = launch(app, host=host, port=free_port(host), max_upload_mb=max_upload_mb, block=False, quiet=True)
        try:
            yield url.rstrip("/")
        finally:
            app.close()
