"""Shade-family scores of baseColour: the mapping, the scores, and the documentation table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fashion.metrics import COLOUR_FAMILIES, colour_family, family_accuracy, family_scores
from fashion.metrics.colour import FAMILY_NOTES, FAMILY_OF, families_markdown, family_index

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_LABELS = ROOT / "models" / "fashion-effnetb0" / "labels.json"
DOC = ROOT / "docs" / "colour-families.md"

VOCAB = ["Blue", "Navy Blue", "Red", "Maroon", "Grey", "Charcoal", "Black"]


def index(*names: str) -> np.ndarray:
    return np.array([VOCAB.index(name) if name else -1 for name in names])


def test_near_shades_count_as_right_within_a_family():
    y_true = index("Blue", "Navy Blue", "Red", "Maroon", "Grey", "Charcoal")
    y_pred = index("Blue", "Blue", "Red", "Red", "Grey", "Grey")
    assert float(np.mean(y_true == y_pred)) == 0.5
    assert family_accuracy(y_true, y_pred, VOCAB) == 1.0
    assert family_scores(y_true, y_pred, VOCAB) == {"n": 6, "accuracy": 1.0, "macro_f1": 1.0}


def test_another_hue_is_still_wrong_and_missing_labels_are_skipped():
    y_true = index("Blue", "Navy Blue", "Grey", "", "Black", "")
    y_pred = index("Navy Blue", "Red", "Black", "Red", "Black", "Blue")
    scores = family_scores(y_true, y_pred, VOCAB)
    assert scores["n"] == 4
    assert scores["accuracy"] == pytest.approx(2 / 4)  # Blue~Navy Blue and Black right; Red, Black for Grey wrong
    # families: truth Blue, Blue, Grey, Black; predicted Blue, Red, Black, Black
    # F1: Blue 2*1/(1+2)=2/3, Grey 0, Black 2*1/(2+1)=2/3, Red 0 -> mean 1/3
    assert scores["macro_f1"] == pytest.approx(1 / 3)


def test_ranked_predictions_use_the_top_class():
    y_true = index("Navy Blue", "Maroon")
    ranked = np.array([[VOCAB.index("Blue"), VOCAB.index("Red")], [VOCAB.index("Grey"), VOCAB.index("Red")]])
    assert family_accuracy(y_true, ranked, VOCAB) == 0.5


def test_unknown_names_are_their_own_family():
    assert colour_family("Indigo") == "Indigo"
    vocab = ["Blue", "Indigo", "Ultramarine", "Navy Blue"]
    codes, families = family_index(vocab)
    assert families == ["Blue", "Indigo", "Ultramarine"]
    assert codes.tolist() == [0, 1, 2, 0]
    # an unknown name is scored exactly: Indigo for Ultramarine is wrong, Indigo for Indigo right
    assert family_accuracy(np.array([1, 2, 3]), np.array([1, 1, 0]), vocab) == pytest.approx(2 / 3)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="every label is -1"):
        family_accuracy(np.array([-1, -1]), np.array([0, 1]), VOCAB)
    assert family_scores(np.array([-1]), np.array([0]), VOCAB) == {"n": 0, "accuracy": None, "macro_f1": None}
    with pytest.raises(ValueError, match="N labels and N predictions"):
        family_accuracy(np.array([0, 1]), np.array([0]), VOCAB)
    with pytest.raises(ValueError, match="outside the 7-name"):
        family_accuracy(np.array([7]), np.array([0]), VOCAB)
    with pytest.raises(ValueError, match="class indices 0..6"):
        family_accuracy(np.array([0]), np.array([9]), VOCAB)


def test_every_name_of_the_shipped_vocabulary_has_a_family():
    if not SHIPPED_LABELS.is_file():
        pytest.skip(f"no shipped bundle labels at {SHIPPED_LABELS}")
    vocab = json.loads(SHIPPED_LABELS.read_text())["baseColour"]
    assert len(vocab) == 46
    assert sorted(set(vocab) - set(FAMILY_OF)) == []  # no silent gaps: each name is listed explicitly
    assert sorted(set(FAMILY_OF) - set(vocab)) == []  # and the table lists no name the data lacks


def test_each_name_is_in_exactly_one_family_and_families_are_names():
    names = [name for members in COLOUR_FAMILIES.values() for name in members]
    assert len(names) == len(set(names))
    assert all(family in members for family, members in COLOUR_FAMILIES.items())
    assert FAMILY_NOTES.keys() == COLOUR_FAMILIES.keys()


def parse_doc_table(text: str) -> dict[str, tuple[str, ...]]:
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| [^|]+ \|$", text, flags=re.MULTILINE)
    return {family: tuple(name.strip() for name in names.split(",")) for family, names in rows if family != "Family"}


def test_the_documentation_table_agrees_with_the_code():
    text = DOC.read_text(encoding="utf-8")
    assert parse_doc_table(text) == COLOUR_FAMILIES
    assert families_markdown() in text, "regenerate the table in docs/colour-families.md with families_markdown()"
