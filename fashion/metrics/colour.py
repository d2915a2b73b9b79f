"""Shade families of baseColour: scores that forgive a near shade (Navy Blue for Blue) but not another hue.

Exact baseColour accuracy counts "Charcoal" for "Grey" as wrong as "Red" for "Grey", although catalogue
labels themselves disagree on such neighbours. Family accuracy maps truth and prediction to a family
(``COLOUR_FAMILIES``) first, so it measures whether the hue is right. A name no family lists is its own
family, so a vocabulary with new names still scores (strictly) instead of failing.

``COLOUR_FAMILIES`` is the one source of the mapping; docs/colour-families.md mirrors it (a test checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .accuracy import macro_f1

#: Family -> the baseColour names in it. Every family lists its own name, so a family is also a colour name.
COLOUR_FAMILIES: dict[str, tuple[str, ...]] = {
    "Black": ("Black",),
    "White": ("White", "Off White", "Cream"),
    "Grey": ("Grey", "Charcoal", "Grey Melange", "Steel"),
    "Blue": ("Blue", "Navy Blue", "Turquoise Blue", "Teal"),
    "Brown": ("Brown", "Coffee Brown", "Mushroom Brown", "Tan", "Taupe", "Khaki", "Beige", "Skin", "Nude"),
    "Red": ("Red", "Maroon", "Burgundy", "Rust"),
    "Orange": ("Orange",),
    "Pink": ("Pink", "Rose", "Peach"),
    "Yellow": ("Yellow", "Mustard"),
    "Green": ("Green", "Olive", "Lime Green", "Fluorescent Green", "Sea Green"),
    "Purple": ("Purple", "Lavender", "Mauve", "Magenta"),
    "Metallic": ("Metallic", "Silver", "Gold", "Bronze", "Copper"),
    "Multi": ("Multi",),
}

#: Why each family groups what it does (shown in the documentation table).
FAMILY_NOTES: dict[str, str] = {
    "Black": "alone: no other name is a shade of black (Charcoal is counted with the greys)",
    "White": "whites and near-whites",
    "Grey": "greys, including heathered (Melange) and blue-grey metal tones (Steel)",
    "Blue": "blues from navy to turquoise; Teal (blue-green) is counted as blue",
    "Brown": "browns and the light brown neutrals (Khaki, Beige, Skin, Nude)",
    "Red": "reds and dark reds; Rust (brownish red) is counted as red",
    "Orange": "alone: Rust and Peach lean orange but are counted as red and pink",
    "Pink": "pinks; Peach (pale pink-orange) is counted as pink",
    "Yellow": "yellows and the darker Mustard",
    "Green": "greens from olive to fluorescent",
    "Purple": "purples, pale (Lavender, Mauve) to bright (Magenta)",
    "Metallic": "a finish rather than a hue: metal reflects its surroundings in photos",
    "Multi": "alone: several colours, no single hue",
}


def _invert(families: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Name -> family; a name in two families or a family without its own name is a mistake in the table."""
    family_of: dict[str, str] = {}
    for family, names in families.items():
        if family not in names:
            raise ValueError(f"colour family {family!r} must list its own name")
        for name in names:
            if name in family_of:
                raise ValueError(f"colour {name!r} is in two families: {family_of[name]!r} and {family!r}")
            family_of[name] = family
    return family_of


#: baseColour name -> its family (names not listed: see :func:`colour_family`).
FAMILY_OF: dict[str, str] = _invert(COLOUR_FAMILIES)


def colour_family(name: str) -> str:
    """The shade family of a baseColour name; a name no family lists is its own family."""
    return FAMILY_OF.get(name, name)


def family_index(vocab: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(family number of each vocabulary index, family names in order of first appearance in ``vocab``)."""
    names: list[str] = []
    numbers: dict[str, int] = {}
    codes = []
    for colour in vocab:
        family = colour_family(colour)
        if family not in numbers:
            numbers[family] = len(names)
            names.append(family)
        codes.append(numbers[family])
    return np.asarray(codes, dtype=np.int64), names


def _families(y_true: Any, y_pred: Any, vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Family numbers of the labelled inputs' truth and top-1 prediction (labels -1 are skipped)."""
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    if predicted.ndim == 2:  # ranked (N, k) predictions, most probable first
        predicted = predicted[:, 0]
    if truth.ndim != 1 or predicted.ndim != 1 or len(truth) != len(predicted):
        raise ValueError(f"expected N labels and N predictions, got shapes {truth.shape} and {predicted.shape}")
    size = len(vocab)
    if truth.size and int(truth.max()) >= size:
        raise ValueError(f"label {int(truth.max())} is outside the {size}-name colour vocabulary")
    valid = truth >= 0
    chosen = predicted[valid]
    if chosen.size and (int(chosen.min()) < 0 or int(chosen.max()) >= size):
        raise ValueError(
            f"predictions must be class indices 0..{size - 1}, got {int(chosen.min())}..{int(chosen.max())}"
        )
    codes, _ = family_index(vocab)
    return codes[truth[valid]], codes[chosen]


def family_scores(y_true: Any, y_pred: Any, vocab: Sequence[str]) -> dict[str, Any]:
    """{"n", "accuracy", "macro_f1"} over shade families (None scores when no input is labelled).

    ``y_true``: class indices into ``vocab`` with -1 for a missing label; ``y_pred``: top-1 class indices,
    or (N, k) ranked indices. Macro-F1 averages the families present in the truth or the predictions.
    """
    truth, predicted = _families(y_true, y_pred, vocab)
    if truth.size == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    return {
        "n": int(truth.size),
        "accuracy": float(np.mean(truth == predicted)),
        "macro_f1": macro_f1(truth, predicted),
    }


def family_accuracy(y_true: Any, y_pred: Any, vocab: Sequence[str]) -> float:
    """Share of labelled inputs whose predicted colour is in the true colour's family (labels -1 skipped)."""
    accuracy = family_scores(y_true, y_pred, vocab)["accuracy"]
    if accuracy is None:
        raise ValueError("no labelled inputs: every label is -1")
    return float(accuracy)


def families_markdown() -> str:
    """The family table of docs/colour-families.md, generated from ``COLOUR_FAMILIES``."""
    lines = ["| Family | baseColour names | Why together |", "|---|---|---|"]
    for family, names in COLOUR_FAMILIES.items():
        lines.append(f"| {family} | {', '.join(names)} | {FAMILY_NOTES[family]} |")
    return "\n".join(lines)
