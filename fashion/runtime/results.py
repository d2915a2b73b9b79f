"""Typed prediction results. ``to_dict()`` gives plain JSON-ready dicts (str, int, float, lists)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import BundleError
from .hierarchy import LEVELS, HierarchyDecoder


@dataclass(frozen=True)
class HeadPrediction:
    """One attribute: the chosen class and the k most probable classes with their probabilities."""

    label: str
    index: int
    confidence: float
    top_k: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "index": self.index,
            "confidence": self.confidence,
            "top_k": [[label, prob] for label, prob in self.top_k],
        }


@dataclass(frozen=True)
class Prediction:
    """All heads for one image. ``consistent`` says whether hierarchy decoding chose the categories."""

    heads: dict[str, HeadPrediction]
    latency_ms: float = 0.0
    consistent: bool = False

    def __getitem__(self, head: str) -> HeadPrediction:
        return self.heads[head]

    def labels(self) -> dict[str, str]:
        return {head: p.label for head, p in self.heads.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "heads": {head: p.to_dict() for head, p in self.heads.items()},
            "latency_ms": round(self.latency_ms, 3),
            "consistent": self.consistent,
        }


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: its prediction, or the error that stopped it (never both)."""

    source: str
    prediction: Prediction | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.prediction is not None:
            out.update(self.prediction.to_dict())
        else:
            out["error"] = self.error
        return out


def check_top_k(top_k: int) -> int:
    """``top_k`` as a positive int; ValueError otherwise (0 or -1 used to return one class silently)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


def decode_head(probabilities: np.ndarray, labels: list[str], top_k: int, chosen: int | None = None) -> HeadPrediction:
    """Probabilities of one head (1-D) -> HeadPrediction; ``chosen`` overrides the argmax."""
    order = np.argsort(-probabilities, kind="stable")[: check_top_k(top_k)]
    index = int(order[0]) if chosen is None else int(chosen)
    return HeadPrediction(
        label=labels[index],
        index=index,
        confidence=float(probabilities[index]),
        top_k=[(labels[int(i)], float(probabilities[int(i)])) for i in order],
    )


class Decoder:
    """Model outputs -> :class:`Prediction`: the one decoding of local (``Classifier``) and remote
    (``RemoteClassifier``) prediction, so the two cannot drift.

    ``heads`` in output order, ``labels`` {head: class names}, ``hierarchy`` the (masterCategory,
    subCategory, articleType) combinations seen in training; ``source`` names where they came from (a
    bundle folder, a server URL) in the error raised when ``consistent`` is asked without a hierarchy.
    """

    def __init__(
        self,
        heads: Sequence[str],
        labels: Mapping[str, list[str]],
        hierarchy: Iterable[Sequence[str]],
        source: str = "this model",
    ):
        self.heads = list(heads)
        self.labels = {head: list(labels[head]) for head in self.heads}
        rows = [(str(row[0]), str(row[1]), str(row[2])) for row in hierarchy]
        self.hierarchy = HierarchyDecoder(rows, self.labels) if all(level in self.labels for level in LEVELS) else None
        self.source = source

    def require(self, consistent: bool) -> None:
        """BundleError when ``consistent`` decoding is asked of a model without known combinations."""
        if consistent and not self.hierarchy:
            raise BundleError(
                f"{self.source}: consistent decoding needs hierarchy.json with known "
                "(masterCategory, subCategory, articleType) combinations; this bundle has none"
            )

    def decode(
        self, outputs: Mapping[str, np.ndarray], row: int, top_k: int, consistent: bool, latency_ms: float
    ) -> Prediction:
        """Row ``row`` of ``outputs`` ({head: (N, classes) probabilities}): argmax per head, or with
        ``consistent`` the most probable known category combination."""
        self.require(consistent)
        chosen: dict[str, int] = {}
        if consistent and self.hierarchy:
            combo = self.hierarchy.decode({level: outputs[level][row : row + 1] for level in LEVELS})[0]
            chosen = dict(zip(LEVELS, combo.tolist()))
        heads = {
            head: decode_head(outputs[head][row], self.labels[head], top_k, chosen.get(head)) for head in self.heads
        }
        return Prediction(heads=heads, latency_ms=latency_ms, consistent=bool(chosen))


class Predictor(Protocol):
    """What local (``Classifier``) and remote (``RemoteClassifier``) prediction share; ``fashion-predict``
    streams through this shape only."""

    heads: list[str]

    @property
    def info(self) -> dict[str, Any]:
        """What runs and where: ``backend``, ``providers``, ``precision``, ``artifact`` at least."""
        ...

    def predict_batch(
        self,
        images: Iterable[Any],
        batch_size: int = 32,
        top_k: int = 3,
        consistent: bool = False,
        decode_threads: int | None = None,
        tta: bool = False,
    ) -> list[BatchItem]: ...

    def close(self) -> None: ...
