"""Inference backends behind one narrow interface (see base.py). Importing this package is cheap.

Built-ins: ``onnxruntime``, ``tensorrt``. Installed packages add more through the ``fashion.backends``
entry-point group (``keras`` comes from fashion.train that way), so the runtime never imports them.
"""

from .base import (
    BACKEND_FOR_FORMAT,
    ENTRY_POINT_GROUP,
    Backend,
    available_backends,
    get_backend,
    refresh_backends,
    register_backend,
)

__all__ = [
    "BACKEND_FOR_FORMAT",
    "ENTRY_POINT_GROUP",
    "Backend",
    "available_backends",
    "get_backend",
    "refresh_backends",
    "register_backend",
]
