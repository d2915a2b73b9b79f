"""compare_outputs on hand-built arrays: the numbers every gate and the benchmark read."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fashion.metrics import Comparison, compare_outputs


def _outputs():
    reference = {
        "gender": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], np.float32),
        "season": np.array([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32),
    }
    candidate = {
        # last row: the tie breaks to class 0 in both; third row flips (0.6/0.4 -> 0.3/0.7)
        "gender": np.array([[0.85, 0.15], [0.2, 0.8], [0.3, 0.7], [0.5, 0.5]], np.float32),
        "season": np.array([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32),
    }
    return reference, candidate


def test_per_head_numbers_are_computed_by_hand():
    reference, candidate = _outputs()
    result = compare_outputs(reference, candidate, ["gender", "season"])
    gender, season = result["gender"], result["season"]
    assert gender.n == 4
    assert gender.max_abs_diff == pytest.approx(0.3, abs=1e-6)
    assert gender.mean_abs_diff == pytest.approx((0.05 * 2 + 0.3 * 2) / 8, abs=1e-6)
    assert gender.top1_agreement == pytest.approx(0.75)
    assert season.max_abs_diff == 0.0 and season.top1_agreement == 1.0
    assert result.worst_diff == pytest.approx(0.3, abs=1e-6)
    assert result.min_agreement == pytest.approx(0.75)
    assert [h.head for h in result] == ["gender", "season"] and len(result) == 2


def test_to_dict_is_json_ready_and_heads_default_to_the_reference_order():
    reference, candidate = _outputs()
    result = compare_outputs(reference, candidate)
    data = json.loads(json.dumps(result.to_dict()))
    assert list(data) == ["gender", "season"]
    assert set(data["gender"]) == {"n", "max_abs_diff", "mean_abs_diff", "top1_agreement"}
    assert data["gender"]["top1_agreement"] == pytest.approx(0.75)


def test_failures_name_the_head_and_the_threshold():
    reference, candidate = _outputs()
    result = compare_outputs(reference, candidate, ["gender", "season"])
    assert result.passes(max_abs_diff=0.5, min_top1_agreement=0.75)
    problems = result.failures(max_abs_diff=0.1, min_top1_agreement=0.99)
    assert len(problems) == 2 and all(p.startswith("gender:") for p in problems)
    assert "0.3 > 0.1" in problems[0]
    assert not result.passes(min_top1_agreement=0.8)


def test_nan_never_passes_a_gate():
    reference, candidate = _outputs()
    candidate["season"] = candidate["season"].copy()
    candidate["season"][1, 2] = np.nan
    result = compare_outputs(reference, candidate, ["gender", "season"])
    assert math.isnan(result.worst_diff)
    assert not result.passes(max_abs_diff=1e9)


def test_missing_head_or_shape_mismatch_is_an_error():
    reference, candidate = _outputs()
    with pytest.raises(ValueError, match="articleType"):
        compare_outputs(reference, candidate, ["gender", "articleType"])
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(reference, {**candidate, "gender": candidate["gender"][:3]}, ["gender"])


def test_empty_outputs_agree_trivially():
    empty = {"gender": np.zeros((0, 2), np.float32)}
    result = compare_outputs(empty, empty)
    assert result["gender"].n == 0 and result.worst_diff == 0.0 and result.min_agreement == 1.0
    assert Comparison(heads=()).worst_diff == 0.0
