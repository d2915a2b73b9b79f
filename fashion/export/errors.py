"""Errors raised while exporting. Each message says which step failed and why."""

from fashion.runtime.errors import FashionError


class ExportError(FashionError):
    """An export step could not run (missing data, bad bundle, conversion failure)."""


class GateError(ExportError):
    """An exported artifact was refused by its parity or accuracy gate; nothing was written."""


class TensorRTUnavailable(ExportError):
    """TensorRT, CUDA or a GPU is missing; the message says which."""
