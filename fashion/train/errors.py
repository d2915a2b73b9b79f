"""Training errors: one family so ``fashion-train`` prints ``Error: <message>`` and exits 2, never a traceback."""

from __future__ import annotations

from fashion.runtime.errors import EXIT_USAGE, FashionError


class TrainError(FashionError):
    """Unusable training options, data or run directory (checked before training starts where possible)."""

    exit_code = EXIT_USAGE


class ResumeMismatch(TrainError):
    """``--resume`` on a run directory written with another configuration."""
