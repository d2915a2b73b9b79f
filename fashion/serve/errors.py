"""Errors of fashion-serve. Exit codes follow the project's table (2 usage, 4 unavailable)."""

from __future__ import annotations

from fashion.runtime.errors import FashionError


class ServeError(FashionError):
    """Unusable serving options (ports, sizes, host) or a server that failed to start."""

    exit_code = 2


class ServeUnavailable(ServeError):
    """PyTriton (the ``serve`` extra) or the Triton binary it bundles cannot be used here."""

    exit_code = 4
