"""Accuracy, macro-F1 and top-3 per head, from each row's ranked predictions.

Labels are encoded like training does (``fashion.data.labels.encode``): a missing label, or one
the model's vocabulary does not have, is excluded from that head's scores (and counted).
"""

from __future__ import annotations

import numpy as np

MISSING = -1


def encode_labels(labels: list[str | None], vocabulary: list[str]) -> tuple[np.ndarray, int, int]:
    """(indices with -1 where excluded, number missing, number not in the vocabulary)."""
    index = {name: i for i, name in enumerate(vocabulary)}
    encoded = np.full(len(labels), MISSING, dtype=np.int64)
    missing = unknown = 0
    for position, value in enumerate(labels):
        if value is None:
            missing += 1
        elif value in index:
            encoded[position] = index[value]
        else:
            unknown += 1
    return encoded, missing, unknown


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


def head_scores(y_true: np.ndarray, ranked: np.ndarray) -> dict:
    """Scores of one head. ``ranked``: (N, k) class indices, most probable first; -1 labels are skipped."""
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


def score_row(ranked_by_head: dict[str, np.ndarray], labels: dict[str, list[str | None]],
              vocabularies: dict[str, list[str]]) -> dict[str, dict]:
    """Scores for every head of one row, with how many labels were missing or unknown to the model."""
    scores = {}
    for head, ranked in ranked_by_head.items():
        y_true, missing, unknown = encode_labels(labels[head], vocabularies[head])
        scores[head] = {**head_scores(y_true, ranked), "missing_labels": missing, "unknown_labels": unknown}
    return scores


def top1_agreement(ranked_a: dict[str, np.ndarray], ranked_b: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of images whose top-1 class is the same in two rows, per head (labels not needed)."""
    return {head: float(np.mean(ranked_a[head][:, 0] == ranked_b[head][:, 0]))
            for head in ranked_a if head in ranked_b}
