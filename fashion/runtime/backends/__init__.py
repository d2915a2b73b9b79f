"""Inference backends behind one narrow interface (see base.py). Importing this package is cheap."""

from .base import BACKEND_FOR_FORMAT, Backend, available_backends, get_backend, register_backend

__all__ = ["BACKEND_FOR_FORMAT", "Backend", "available_backends", "get_backend", "register_backend"]
