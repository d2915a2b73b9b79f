"""evaluate_predictions and format_table report baseColour shade-family scores (no model, no Keras needed)."""

from __future__ import annotations

import numpy as np

from fashion import HEADS
from fashion.train.evaluate import evaluate_predictions, format_table

COLOURS = ["Blue", "Navy Blue", "Red", "Maroon"]


def one_hot(indices: list[int], classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[indices]


def test_colour_families_are_in_the_metrics_and_the_table():
    truth = [0, 1, 2, 3]
    predicted = [1, 0, 3, 0]  # exact: none right; families: Blue, Blue, Red right, Red->Blue wrong
    probs = {head: one_hot(truth, 4) for head in HEADS}
    probs["baseColour"] = one_hot(predicted, 4)
    labels = {head: np.array(truth) for head in HEADS}
    vocab = {head: COLOURS if head == "baseColour" else [f"{head}{i}" for i in range(4)] for head in HEADS}

    metrics = evaluate_predictions(probs, labels, vocab, "test")

    assert metrics["heads"]["baseColour"]["accuracy"] == 0.0
    assert metrics["colour_families"]["n"] == 4
    assert metrics["colour_families"]["accuracy"] == 0.75
    assert "baseColour shade families: accuracy 0.7500" in format_table(metrics).splitlines()[-1]
