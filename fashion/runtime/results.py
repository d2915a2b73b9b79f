"""Typed prediction results. ``to_dict()`` gives plain JSON-ready dicts (str, int, float, lists)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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
