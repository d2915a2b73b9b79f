"""fashion.runtime: load a model bundle and predict six attributes of a product photo.

No TensorFlow here: numpy, Pillow and a backend (ONNX Runtime by default, TensorRT optionally).
"""

from .bundle import Bundle, load_manifest
from .classifier import Classifier
from .errors import BackendUnavailableError, BundleError, FashionError, InvalidImageError
from .preprocess import load_image, preprocess
from .results import BatchItem, HeadPrediction, Prediction

__all__ = [
    "Classifier", "Prediction", "HeadPrediction", "BatchItem",
    "Bundle", "load_manifest", "BackendUnavailableError", "BundleError", "FashionError",
    "InvalidImageError", "load_image", "preprocess",
]
