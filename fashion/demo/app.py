"""``fashion-demo``: a local Gradio page that predicts the six attributes of a product photo.

Only ``fashion.runtime`` runs the model (no TensorFlow in this process). The server binds
127.0.0.1 by default, caps upload size, sends no analytics and needs no internet.

This module is the command line only: Gradio (seconds to import) is imported after the options
are parsed and checked, so ``fashion-demo -h`` and a bad option answer at once.
"""

from __future__ import annotations

import errno
import signal
import socket
import tempfile
from pathlib import Path
from types import FrameType

import click

from fashion.runtime.cli_support import CONTEXT_SETTINGS, LoadOptions, load_classifier, model_options, run_cli
from fashion.runtime.errors import EXIT_USAGE, BundleError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_NAME = Path("models") / "fashion-effnetb0"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"


def bundle_option(purpose: str = "Model bundle directory"):
    """The ``--bundle`` option of every demo command; ``resolve_bundle`` turns its value into a directory."""
    return click.option(
        "--bundle",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=f"{purpose} [default: the shipped {BUNDLE_NAME}].",
    )


def resolve_bundle(bundle: Path | None) -> Path:
    """``bundle``, or the shipped model next to the code or under the working directory.

    No bundle there is an unusable bundle: BundleError, exit 2 (``fashion/runtime/errors.py``).
    """
    candidates = [bundle] if bundle is not None else [REPO_ROOT / BUNDLE_NAME, Path.cwd() / BUNDLE_NAME]
    for candidate in candidates:
        if (candidate / "bundle.json").is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise BundleError(
        f"no model bundle (bundle.json) at {searched}. Pass --bundle PATH to a directory written by "
        f"fashion-export, or train and export the shipped model into {BUNDLE_NAME}."
    )


class PortUnavailable(click.ClickException):
    exit_code = EXIT_USAGE


def check_port(host: str, port: int) -> None:
    """Fail before loading anything when HOST:PORT cannot be bound (in use, or not an address here)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise PortUnavailable(
                f"port {port} on {host} {reason}; choose another with --port (or another address with --host)"
            ) from None


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # Gradio closes the server cleanly on it; our cleanup then runs


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@bundle_option()
@model_options
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the demo to your network."
)
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-upload-mb",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Largest file the page accepts.",
)
def main(
    bundle: Path | None,
    load_options: LoadOptions,
    host: str,
    port: int,
    max_upload_mb: float,
) -> None:
    """Serve the fashion-edge demo page (Gradio) on HOST:PORT.

    Exit status: 0 after a clean stop (Ctrl-C), 2 for an unusable bundle or a port in use, 4 when the
    requested backend is missing.
    """
    bundle_dir = resolve_bundle(bundle)
    check_port(host, port)
    classifier = load_classifier(bundle_dir, load_options)
    click.echo(
        f"fashion-demo: {bundle_dir} on {classifier.info['backend']} "
        f"({classifier.entry.precision}, {', '.join(classifier.info['providers'])})"
    )
    from .page import build_app, launch  # Gradio: only once the options are known to be usable

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="fashion-demo-") as work_dir:
            app = build_app(classifier, work_dir=Path(work_dir))
            try:
                launch(app, host=host, port=port, max_upload_mb=max_upload_mb)
            except OSError as exc:  # lost a race for the port between the check and the bind
                raise PortUnavailable(f"cannot serve on {host}:{port} ({exc}); choose another with --port") from None
    finally:
        classifier.close()


if __name__ == "__main__":
    main()
