"""Scores and comparisons: the one accuracy / macro-F1 / top-3 scorer and the one output comparison.

Imports only numpy (and the runtime layer below it); labels arrive as integers with -1 for a missing
or unknown label, which every score skips.
"""

from .accuracy import head_scores, macro_f1, rank, score_heads, top1_agreement
from .colour import COLOUR_FAMILIES, colour_family, family_accuracy, family_scores
from .compare import Comparison, HeadComparison, compare_head, compare_outputs

__all__ = [
    "COLOUR_FAMILIES",
    "Comparison",
    "HeadComparison",
    "colour_family",
    "compare_head",
    "compare_outputs",
    "family_accuracy",
    "family_scores",
    "head_scores",
    "macro_f1",
    "rank",
    "score_heads",
    "top1_agreement",
]
