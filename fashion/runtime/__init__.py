"""fashion.runtime: load a model bundle and predict six attributes of a product photo.

No TensorFlow here: numpy, Pillow and a backend (ONNX Runtime by default, TensorRT optionally, others
through the ``fashion.backends`` entry-point group).
"""

from .bundle import Bundle, check_bundle, load_bundle, load_manifest
from .classifier import Classifier
from .errors import (
    EXIT_CODES,
    BackendUnavailableError,
    BundleError,
    FashionError,
    InvalidImageError,
    UnknownBackendError,
)
from .manifest import ArtifactEntry, InputSpec, Manifest, PreprocessSpec, edit_manifest
from .preprocess import load_image, preprocess
from .results import BatchItem, HeadPrediction, Prediction

__all__ = [
    "EXIT_CODES",
    "ArtifactEntry",
    "BackendUnavailableError",
    "BatchItem",
    "Bundle",
    "BundleError",
    "Classifier",
    "FashionError",
    "HeadPrediction",
    "InputSpec",
    "InvalidImageError",
    "Manifest",
    "Prediction",
    "PreprocessSpec",
    "UnknownBackendError",
    "check_bundle",
    "edit_manifest",
    "load_bundle",
    "load_image",
    "load_manifest",
    "preprocess",
]
