"""The inference callables behind the served models, plain Python so they are testable without a server.

Triton's dynamic batcher hands an instance several requests at once. Each callable takes that list
(every request a mapping of input name -> numpy array, first axis = the request's own batch) and
returns one output mapping per request. All images of all requests go through the model in one
``Classifier.infer`` call, so the batch Triton formed is the batch the model runs.

A request whose image cannot be decoded must not fail the others of its batch. PyTriton turns an
exception raised here into an error for every request of the batch, so a bad image is answered in
the ``error`` output instead (the runtime's message; zeros in the probabilities) and its neighbours
get their predictions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fashion.runtime import Classifier
from fashion.runtime.errors import InvalidImageError
from fashion.runtime.remote import (
    INPUT_IMAGE,
    INPUT_IMAGE_UINT8,
    OUTPUT_ERROR,
    OUTPUT_INFO,
    confidence_output,
    label_output,
)

Request = Mapping[str, np.ndarray]
Response = dict[str, np.ndarray]
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024


def _outputs(clf: Classifier, probabilities: dict[str, np.ndarray], errors: list[str]) -> Response:
    """Per-head probability vectors, top label and its probability, and the per-image error strings."""
    out: Response = {OUTPUT_ERROR: np.array([[e.encode()] for e in errors], dtype=object)}
    for head in clf.heads:
        probs = probabilities[head]
        top = probs.argmax(axis=1)
        labels = clf.bundle.labels[head]
        out[head] = probs.astype(np.float32, copy=False)
        out[label_output(head)] = np.array(
            [[labels[i].encode() if not e else b""] for i, e in zip(top, errors)], dtype=object
        )
        out[confidence_output(head)] = probs[np.arange(len(top)), top].reshape(-1, 1).astype(np.float32)
    return out


def _run(clf: Classifier, tensors: list[np.ndarray | None], max_batch: int) -> dict[str, np.ndarray]:
    """Model outputs for every slot; slots without a tensor (failed images) get zero probabilities."""
    rows = [i for i, t in enumerate(tensors) if t is not None]
    full = {head: np.zeros((len(tensors), len(clf.bundle.labels[head])), dtype=np.float32) for head in clf.heads}
    for first in range(0, len(rows), max_batch):
        chunk = rows[first : first + max_batch]
        batch = np.stack([tensors[i] for i in chunk]).astype(np.float32, copy=False)
        outputs = clf.infer(batch)
        for head in clf.heads:
            full[head][chunk] = outputs[head]
    return full


def _split(response: Response, sizes: list[int]) -> list[Response]:
    bounds = np.cumsum([0] + sizes)
    return [{name: value[a:b] for name, value in response.items()} for a, b in zip(bounds[:-1], bounds[1:])]


class BytesModel:
    """``fashion``: encoded images (BYTES, one per row) -> per-head outputs and a per-image error."""

    def __init__(self, clf: Classifier, max_batch: int, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES):
        self.clf, self.max_batch, self.max_image_bytes = clf, max_batch, max_image_bytes

    def _preprocess(self, data: Any) -> tuple[np.ndarray | None, str]:
        data = bytes(data)
        if len(data) > self.max_image_bytes:
            return None, f"<{len(data)} bytes>: larger than the server's {self.max_image_bytes:,}-byte image limit"
        try:
            return self.clf.preprocess(data), ""
        except InvalidImageError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's error, not the batch's
            return None, f"<{len(data)} bytes>: {type(exc).__name__}: {exc}"

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        tensors: list[np.ndarray | None] = []
        errors: list[str] = []
        sizes = []
        for request in requests:
            images = np.asarray(request[INPUT_IMAGE], dtype=object).reshape(-1)
            sizes.append(len(images))
            for data in images:
                tensor, error = self._preprocess(data)
                tensors.append(tensor)
                errors.append(error)
        return _split(_outputs(self.clf, _run(self.clf, tensors, self.max_batch), errors), sizes)


class TensorModel:
    """``fashion_tensor``: preprocessed NHWC images, float32 0-255 in ``image`` or uint8 in ``image_uint8``."""

    def __init__(self, clf: Classifier, max_batch: int):
        self.clf, self.max_batch = clf, max_batch

    def _tensors(self, request: Request) -> tuple[list[np.ndarray | None], list[str]]:
        given = [name for name in (INPUT_IMAGE, INPUT_IMAGE_UINT8) if name in request]
        if len(given) != 1:
            message = f"send exactly one of '{INPUT_IMAGE}' (float32) or '{INPUT_IMAGE_UINT8}' (uint8)"
            count = len(next(iter(request.values()))) if len(request) else 1
            return [None] * count, [message] * count
        batch = np.asarray(request[given[0]])
        if batch.dtype == np.float32:
            finite = np.isfinite(batch).reshape(len(batch), -1).all(axis=1)
            return (
                [b if ok else None for b, ok in zip(batch, finite)],
                ["" if ok else "image holds NaN or infinite values" for ok in finite],
            )
        return list(batch.astype(np.float32)), [""] * len(batch)

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        tensors: list[np.ndarray | None] = []
        errors: list[str] = []
        sizes = []
        for request in requests:
            t, e = self._tensors(request)
            tensors += t
            errors += e
            sizes.append(len(t))
        return _split(_outputs(self.clf, _run(self.clf, tensors, self.max_batch), errors), sizes)


def served_info(clf: Classifier) -> dict[str, Any]:
    """What a client needs to decode the probability vectors exactly as the in-process runtime does."""
    entry = clf.bundle.artifacts[clf.artifact]
    name = clf.bundle.manifest.name or clf.bundle.root.name
    return {
        "name": name,
        "heads": list(clf.heads),
        "labels": {head: clf.bundle.labels[head] for head in clf.heads},
        "hierarchy": [list(row) for row in clf.bundle.hierarchy],
        "input_size": list(clf.input_size),
        "artifact": clf.artifact,
        "artifact_sha256": entry.sha256,
        **{k: v for k, v in clf.info.items() if k in ("backend", "providers", "precision")},
    }


class InfoModel:
    """``fashion_info``: any query -> the served bundle's description as one JSON string."""

    def __init__(self, clf: Classifier):
        self.payload = json.dumps(served_info(clf)).encode()

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        return [{OUTPUT_INFO: np.array([self.payload], dtype=object)} for _ in requests]
