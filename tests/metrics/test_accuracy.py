"""The one scorer on hand-computed cases (accuracy, macro-F1, top-3; -1 labels skipped)."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.metrics import head_scores, macro_f1, rank, score_heads, top1_agreement


def test_macro_f1_by_hand():
    truth = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    # class 0: tp 1, pred 2, actual 2 -> 0.5; class 1: tp 2, pred 3, actual 2 -> 0.8; class 2: 0
    assert macro_f1(truth, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_head_scores_skip_missing_labels_and_count_top3():
    truth = np.array([0, 2, -1, 1])
    ranked = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 3, 4]])
    scores = head_scores(truth, ranked)
    assert scores["n"] == 3
    assert scores["accuracy"] == pytest.approx(1 / 3)
    assert scores["top3"] == pytest.approx(2 / 3)


def test_all_missing_gives_none_not_zero():
    assert head_scores(np.array([-1, -1]), np.array([[0], [1]]))["accuracy"] is None


def test_rank_orders_by_probability_and_score_heads_counts_exclusions():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
    assert rank(probs).tolist() == [[1, 2, 0], [0, 2, 1]]
    assert rank(probs, k=1).tolist() == [[1], [0]]
    scores = score_heads({"season": rank(probs)}, {"season": np.array([1, -1])})
    assert scores["season"]["accuracy"] == 1.0 and scores["season"]["excluded_labels"] == 1


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        head_scores(np.array([0, 1]), np.array([[0]]))


def test_top1_agreement():
    a = {"gender": np.array([[0, 1], [1, 0], [1, 0]])}
    b = {"gender": np.array([[0, 1], [0, 1], [1, 0]])}
    assert top1_agreement(a, b) == {"gender": pytest.approx(2 / 3)}


def test_metrics_against_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 7, 300), rng.integers(0, 9, 300)
    assert macro_f1(truth, predicted) == pytest.approx(f1_score(truth, predicted, average="macro"))
    ranked = np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1]])
    scores = head_scores(np.array([0, 0, -1, 1]), ranked)
    assert scores["n"] == 3 and scores["accuracy"] == pytest.approx(1 / 3) and scores["top3"] == 1.0
