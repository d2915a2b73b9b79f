"""Hierarchy-consistent decoding of (masterCategory, subCategory, articleType).

The three heads are trained independently, so their argmaxes can disagree (e.g. Footwear /
Topwear / Shirts). The bundle records every combination seen in training; the decoder picks the
combination with the highest product of the three heads' probabilities.
"""

from __future__ import annotations

import numpy as np

LEVELS = ("masterCategory", "subCategory", "articleType")


class HierarchyDecoder:
    """Pre-indexes the known combinations so decoding a batch is three gathers and an argmax."""

    def __init__(self, combinations: list[tuple[str, str, str]], labels: dict[str, list[str]]):
        positions = [{name: i for i, name in enumerate(labels[level])} for level in LEVELS]
        rows = [tuple(pos.get(name) for pos, name in zip(positions, combo)) for combo in combinations]
        # Combinations naming a class the model does not know cannot be predicted: skip them.
        rows = [row for row in rows if None not in row]
        self.table = np.array(rows, dtype=np.int64).reshape(-1, 3)

    def __bool__(self) -> bool:
        return len(self.table) > 0

    def decode(self, probabilities: dict[str, np.ndarray]) -> np.ndarray:
        """{level: (N, classes)} -> (N, 3) class indices of the most probable known combination."""
        score = np.ones((len(probabilities[LEVELS[0]]), len(self.table)))
        for column, level in enumerate(LEVELS):
            score *= probabilities[level][:, self.table[:, column]]
        return self.table[np.argmax(score, axis=1)]


def consistency_effect(
    probabilities: dict[str, np.ndarray], truth: dict[str, np.ndarray], decoder: HierarchyDecoder
) -> dict[str, dict[str, float]]:
    """Accuracy of each level with plain argmax vs consistent decoding (truth -1 = unlabelled, ignored)."""
    consistent = decoder.decode(probabilities)
    report = {}
    for column, level in enumerate(LEVELS):
        known = truth[level] >= 0
        if not known.any():
            continue
        plain = probabilities[level].argmax(axis=1)
        report[level] = {
            "argmax": float((plain[known] == truth[level][known]).mean()),
            "consistent": float((consistent[known, column] == truth[level][known]).mean()),
        }
    return report
