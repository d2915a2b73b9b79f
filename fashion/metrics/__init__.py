"""Scores and comparisons: the one accuracy / macro-F1 / top-3 scorer and the one output comparison.

Imports only numpy (and the runtime layer below it); labels arrive as integers with -1 for a missing
or unknown label, which every score skips.
"""

from .accuracy import head_scores, macro_f1, rank, score_heads, top1_agreement
from .compare import Comparison, HeadComparison, compare_head, compare_outputs

__all__ = [
    "Comparison",
    "HeadComparison",
    "compare_head",
    "compare_outputs",
    "head_scores",
    "macro_f1",
    "rank",
    "score_heads",
    "top1_agreement",
]
