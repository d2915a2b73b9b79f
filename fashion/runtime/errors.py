"""Typed errors and the one exit-code table every command line tool uses.

Every message names the input or file and the problem. Each error class carries ``exit_code`` so a
CLI never has to decide the status itself: ``fashion.runtime.cli_support`` maps an uncaught error to
``Error: <message>`` on stderr and ``exc.exit_code``.
"""

from __future__ import annotations

#: Success.
EXIT_OK = 0
#: The work ran, but some inputs failed or a threshold was missed.
EXIT_PARTIAL = 1
#: Unusable options, paths, bundle or data; checked before any work starts.
EXIT_USAGE = 2
#: A gate refused an artifact (accuracy drop, parity, ...).
EXIT_REFUSED = 3
#: A backend, hardware or package is missing.
EXIT_UNAVAILABLE = 4
#: A server failed while running (a model process or tritonserver died) or had to be stopped by force.
EXIT_SERVER_FAILED = 5
#: Interrupted with Ctrl-C; partial results are kept and their path printed.
EXIT_INTERRUPTED = 130

#: The documented meaning of each exit status (README and ``--help`` texts point here).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "work ran; some inputs failed or a threshold was missed",
    EXIT_USAGE: "unusable options, paths, bundle or data (checked before work starts)",
    EXIT_REFUSED: "a gate refused an artifact",
    EXIT_UNAVAILABLE: "a backend, hardware or package is missing",
    EXIT_SERVER_FAILED: "a server failed while running or had to be stopped by force; restart it",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); partial results kept",
}


class FashionError(Exception):
    """Base class for all fashion-edge errors; ``exit_code`` is the status a CLI exits with."""

    exit_code: int = EXIT_USAGE


class InvalidImageError(FashionError, ValueError):
    """An input could not be turned into an RGB image (empty, corrupt, not an image, too large...)."""

    exit_code = EXIT_USAGE


class BundleError(FashionError):
    """A model bundle is missing, malformed, or does not match its manifest."""

    exit_code = EXIT_USAGE


class BackendUnavailableError(FashionError, ImportError):
    """A backend's packages or hardware are missing; the message names the extra to install."""

    exit_code = EXIT_UNAVAILABLE


class UnknownBackendError(FashionError, ValueError):
    """No built-in, registered or installed backend has this name (a usage error: exit 2)."""

    exit_code = EXIT_USAGE


class PartialFailure(FashionError):
    """The work ran but some inputs failed or a threshold was missed (results were still written)."""

    exit_code = EXIT_PARTIAL


class Interrupted(FashionError):
    """Raised by a CLI that caught Ctrl-C after keeping its partial results; the message says where."""

    exit_code = EXIT_INTERRUPTED


def exit_code_for(exc: BaseException) -> int:
    """The documented exit status for ``exc`` (FashionError's own code, Ctrl-C 130, user-path OSError 2, else 1)."""
    if isinstance(exc, FashionError):
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError):
        return EXIT_USAGE
    return EXIT_PARTIAL
