"""Errors of fashion-serve. Exit codes follow the project's table (2 usage, 4 unavailable, 5 server failed)."""

from __future__ import annotations

from fashion.runtime.errors import EXIT_SERVER_FAILED, FashionError


class ServeError(FashionError):
    """Unusable serving options (ports, sizes, host) or a server that failed to start."""

    exit_code = 2


class ServeUnavailable(ServeError):
    """PyTriton (the ``serve`` extra) or the Triton binary it bundles cannot be used here."""

    exit_code = 4


class ServerFailed(ServeError):
    """The running server lost a model process or tritonserver, or its children had to be killed to stop it."""

    exit_code = EXIT_SERVER_FAILED
