"""Errors raised while exporting. Each message says which step failed and why; each class carries its exit code."""

from fashion.runtime.errors import EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, FashionError


class ExportError(FashionError):
    """An export step could not run (missing data, bad bundle, conversion failure): exit 2."""

    exit_code = EXIT_USAGE


class GateError(ExportError):
    """An exported artifact was refused by its parity or accuracy gate; nothing was written for it: exit 3."""

    exit_code = EXIT_REFUSED


class TensorRTUnavailable(ExportError):
    """TensorRT, cuda-python or a GPU is missing; the message says which: exit 4."""

    exit_code = EXIT_UNAVAILABLE
