"""Accuracy, macro-F1 and top-3 per head, from each input's ranked predictions.

Labels are integers with -1 for a missing label or one the model's vocabulary does not have
(``fashion.data.labels`` encodes them that way); such inputs are excluded from that head's scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def rank(probabilities: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, k) class indices, most probable first, from (N, classes) scores."""
    scores = np.asarray(probabilities)
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over every class that occurs in the truth or the predictions."""
    classes = np.union1d(y_true, y_pred)
    scores = []
    for cls in classes:
        true_positive = np.sum((y_pred == cls) & (y_true == cls))
        predicted = np.sum(y_pred == cls)
        actual = np.sum(y_true == cls)
        scores.append(2.0 * true_positive / (predicted + actual) if predicted + actual else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def head_scores(y_true: np.ndarray, ranked: np.ndarray) -> dict[str, Any]:
    """Scores of one head. ``ranked``: (N, k) class indices, most probable first; negative labels are skipped.

    With k < 3 the top-3 score is over the k classes given (k = 1: equal to accuracy).
    """
    y_true = np.asarray(y_true)
    ranked = np.asarray(ranked)
    if ranked.ndim == 1:
        ranked = ranked[:, None]
    if len(ranked) != len(y_true):
        raise ValueError(f"{len(y_true)} labels but {len(ranked)} predictions")
    valid = y_true >= 0
    truth, ranked = y_true[valid], ranked[valid]
    if truth.size == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "top3": None}
    top1 = ranked[:, 0]
    top3 = np.any(ranked[:, :3] == truth[:, None], axis=1)
    return {
        "n": int(truth.size),
        "accuracy": float(np.mean(top1 == truth)),
        "macro_f1": macro_f1(truth, top1),
        "top3": float(np.mean(top3)),
    }


def score_heads(ranked_by_head: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """``head_scores`` for every head that has labels, plus how many labels were excluded (negative)."""
    scores = {}
    for head, ranked in ranked_by_head.items():
        if head not in labels:
            continue
        y_true = np.asarray(labels[head])
        scores[head] = {**head_scores(y_true, ranked), "excluded_labels": int(np.sum(y_true < 0))}
    return scores


def top1_agreement(ranked_a: Mapping[str, np.ndarray], ranked_b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Share of images whose top-1 class is the same in two rows, per head (labels not needed)."""
    return {
        head: float(np.mean(np.asarray(ranked_a[head])[:, 0] == np.asarray(ranked_b[head])[:, 0]))
        for head in ranked_a
        if head in ranked_b
    }
