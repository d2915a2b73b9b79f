"""One comparison of two models' outputs, shared by every gate and the benchmark's agreement columns.

In the spirit of Polygraphy's ``Comparator``: run a reference and a candidate on the same inputs, then
compare head by head. A parity gate (FP32 vs Keras), a reduced-precision gate (FP16/INT8 vs FP32) and
the benchmark all read the same two numbers per head, so "agrees" means the same thing everywhere:

* ``max_abs_diff``: the largest absolute difference between the two probability arrays;
* ``top1_agreement``: the share of inputs whose most probable class is the same in both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeadComparison:
    """Reference vs candidate on one head, over ``n`` inputs."""

    head: str
    n: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "top1_agreement": self.top1_agreement,
        }


@dataclass(frozen=True)
class Comparison:
    """Per-head comparisons, in the order the heads were asked for."""

    heads: tuple[HeadComparison, ...]

    def __getitem__(self, head: str) -> HeadComparison:
        for item in self.heads:
            if item.head == head:
                return item
        raise KeyError(head)

    def __iter__(self) -> Iterator[HeadComparison]:
        return iter(self.heads)

    def __len__(self) -> int:
        return len(self.heads)

    @property
    def worst_diff(self) -> float:
        """The largest ``max_abs_diff`` over the heads (NaN if any head produced NaN; 0.0 with no heads)."""
        diffs = [item.max_abs_diff for item in self.heads]
        if any(math.isnan(d) for d in diffs):
            return math.nan
        return max(diffs, default=0.0)

    @property
    def min_agreement(self) -> float:
        """The smallest ``top1_agreement`` over the heads (1.0 with no heads)."""
        return min((item.top1_agreement for item in self.heads), default=1.0)

    def failures(self, max_abs_diff: float | None = None, min_top1_agreement: float | None = None) -> list[str]:
        """One readable line per head that misses a threshold (a NaN difference always misses).

        Gates raise with these lines, so a refusal says which head failed and by how much.
        """
        problems = []
        for item in self.heads:
            if max_abs_diff is not None and not item.max_abs_diff <= max_abs_diff:
                problems.append(f"{item.head}: max abs diff {item.max_abs_diff:.3g} > {max_abs_diff:.3g}")
            if min_top1_agreement is not None and not item.top1_agreement >= min_top1_agreement:
                problems.append(
                    f"{item.head}: top-1 agreement {item.top1_agreement:.4f} < {min_top1_agreement:.4f}"
                    f" over {item.n} inputs"
                )
        return problems

    def passes(self, max_abs_diff: float | None = None, min_top1_agreement: float | None = None) -> bool:
        return not self.failures(max_abs_diff, min_top1_agreement)

    def to_dict(self) -> dict[str, dict[str, float | int]]:
        """``{head: {"n", "max_abs_diff", "mean_abs_diff", "top1_agreement"}}`` (JSON-ready)."""
        return {item.head: item.to_dict() for item in self.heads}


def _as_2d(name: str, head: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{name}[{head!r}]: expected (N, classes) scores, got shape {array.shape}")
    return array


def compare_head(head: str, reference: np.ndarray, candidate: np.ndarray) -> HeadComparison:
    """Compare one head's (N, classes) outputs; shapes must match."""
    ref, cand = _as_2d("reference", head, reference), _as_2d("candidate", head, candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"head {head!r}: reference shape {ref.shape} != candidate shape {cand.shape}")
    n = int(ref.shape[0])
    if n == 0 or ref.shape[1] == 0:
        return HeadComparison(head=head, n=n, max_abs_diff=0.0, mean_abs_diff=0.0, top1_agreement=1.0)
    diff = np.abs(ref - cand)
    return HeadComparison(
        head=head,
        n=n,
        max_abs_diff=float(np.max(diff)),
        mean_abs_diff=float(np.mean(diff)),
        top1_agreement=float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1))),
    )


def compare_outputs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], heads: Iterable[str] | None = None
) -> Comparison:
    """Compare two models' outputs head by head (``heads`` default: the reference's heads, in order).

    A head missing from either side is a ValueError naming it: a gate must never pass because a head
    was silently left out.
    """
    names = list(reference) if heads is None else list(heads)
    missing = [h for h in names if h not in reference or h not in candidate]
    if missing:
        raise ValueError(
            f"heads missing from the outputs being compared: {missing} "
            f"(reference has {sorted(reference)}, candidate has {sorted(candidate)})"
        )
    return Comparison(heads=tuple(compare_head(h, reference[h], candidate[h]) for h in names))
