"""Typed errors raised by the runtime. Every message names the input or file and the problem."""


class FashionError(Exception):
    """Base class for all fashion-edge runtime errors."""


class InvalidImageError(FashionError, ValueError):
    """An input could not be turned into an RGB image (empty, corrupt, not an image, too large...)."""


class BundleError(FashionError):
    """A model bundle is missing, malformed, or does not match its manifest."""


class BackendUnavailableError(FashionError, ImportError):
    """A backend's packages or hardware are missing; the message names the extra to install."""
