"""Every threshold an export gate applies, and the gates themselves, in one module.

A gate compares a candidate artifact's outputs with a reference on real images and returns a
:class:`Verdict`: passed or not, the numbers to record in the manifest, and a one-line summary.
All comparisons go through :func:`fashion.metrics.compare_outputs` (max abs difference and top-1
agreement per head) and the one accuracy scorer in :mod:`fashion.metrics`, the same numbers the
benchmark's agreement columns report.

Changing a threshold here changes it for the CLI defaults, the stages and the docs' tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- thresholds ---------------------------------------------------------------------------------------
#: ONNX FP32 vs Keras: per-head max abs difference of the probabilities.
PARITY_ATOL = 1e-4
#: ONNX FP32 vs Keras: share of images whose top-1 class agrees, per head.
PARITY_MIN_AGREEMENT = 1.0
#: Real images the parity and FP16 gates run on.
PARITY_IMAGES = 256
#: ONNX FP16 and TensorRT FP16 vs ONNX FP32: per-head top-1 agreement.
FP16_MIN_AGREEMENT = 0.99
#: ONNX INT8 and TensorRT INT8 vs ONNX FP32: largest per-head val accuracy drop, percentage points.
INT8_MAX_DROP_PP = 1.0
#: Train images used to calibrate INT8.
CALIBRATION_IMAGES = 512
#: Val images for the INT8 accuracy gate (0 = the whole split).
EVAL_IMAGES = 1000
#: Batch-1 calls per artifact when recording a timing fact.
TIMING_IMAGES = 50
#: Standalone (pixels-in) model vs the Python runtime, test photos as they are and upscaled: per-head top-1
#: agreement, and largest per-head accuracy difference in percentage points.
STANDALONE_MIN_AGREEMENT = 0.995
STANDALONE_MAX_ACCURACY_DELTA_PP = 0.1
#: Standalone gate: test photos as they are (0 = the whole split) and, of those, how many also run upscaled
#: to 1080x1440 (a seeded subset; 0 = all of them).
STANDALONE_IMAGES = 0
STANDALONE_UPSCALED_IMAGES = 1000


@dataclass(frozen=True)
class Verdict:
    """What a gate decided: ``passed``, the numbers for the manifest (``record``), and a one-line ``summary``."""

    passed: bool
    record: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


def comparison_record(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], heads: list[str]
) -> dict[str, dict[str, float]]:
    """Per head {"max_abs_diff", "argmax_agreement"} from :func:`fashion.metrics.compare_outputs`."""
    from fashion.metrics import compare_outputs

    comparison = compare_outputs(reference, candidate, heads)
    return {
        head: {
            "max_abs_diff": float(comparison[head].max_abs_diff),
            "argmax_agreement": float(comparison[head].top1_agreement),
        }
        for head in heads
    }


def parity_gate(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    heads: list[str],
    atol: float | None = PARITY_ATOL,
    min_agreement: float = PARITY_MIN_AGREEMENT,
    reference_name: str = "keras",
) -> Verdict:
    """Per head: max abs diff <= ``atol`` (not gated when None) and top-1 agreement >= ``min_agreement``."""
    report = comparison_record(reference, candidate, heads)
    images = len(next(iter(reference.values())))
    limit = "" if atol is None else f" (limit {atol:g})"
    failures = [
        f"{head}: max abs diff {r['max_abs_diff']:.3g}{limit}, "
        f"argmax agreement {r['argmax_agreement']:.2%} (need {min_agreement:.2%})"
        for head, r in report.items()
        if not ((atol is None or r["max_abs_diff"] <= atol) and r["argmax_agreement"] >= min_agreement)
    ]
    worst = max(r["max_abs_diff"] for r in report.values())
    lowest = min(r["argmax_agreement"] for r in report.values())
    summary = f"vs {reference_name} on {images} images: max abs diff {worst:.2e}, argmax agreement >= {lowest:.2%}"
    record: dict[str, Any] = {"reference": reference_name, "images": int(images)}
    if atol is not None:
        record["atol"] = atol
    record.update(min_argmax_agreement=min_agreement, heads=report)
    return Verdict(not failures, record, "; ".join(failures) if failures else summary)


def agreement_gate(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    heads: list[str],
    min_agreement: float = FP16_MIN_AGREEMENT,
    reference_name: str = "onnx_fp32",
) -> Verdict:
    """Per head top-1 agreement >= ``min_agreement``; the max abs difference is recorded, not gated."""
    return parity_gate(
        reference, candidate, heads, atol=None, min_agreement=min_agreement, reference_name=reference_name
    )


def head_accuracy(
    probabilities: dict[str, np.ndarray], labels: dict[str, np.ndarray], heads: list[str]
) -> dict[str, dict[str, Any]]:
    """Per head {"accuracy", "n"} over the images whose label is known (label -1 is skipped)."""
    from fashion.metrics.accuracy import head_scores

    report = {}
    for head in heads:
        scores = head_scores(np.asarray(labels[head]), probabilities[head].argmax(1)[:, None])
        report[head] = {"accuracy": scores["accuracy"], "n": scores["n"]}
    return report


def accuracy_drop_gate(
    reference_accuracy: dict[str, dict],
    candidate_accuracy: dict[str, dict],
    max_drop_pp: float = INT8_MAX_DROP_PP,
    images: int = 0,
    split: str = "val",
    candidate_name: str = "int8",
) -> Verdict:
    """Per head: drop (pp) = 100 x (reference - candidate) accuracy; passes when every drop <= ``max_drop_pp``."""
    drops: dict[str, float | None] = {}
    for head, reference in reference_accuracy.items():
        ref, got = reference["accuracy"], candidate_accuracy[head]["accuracy"]
        drops[head] = None if ref is None or got is None else round(100.0 * (ref - got), 4)
    over = {head: drop for head, drop in drops.items() if drop is not None and drop > max_drop_pp}
    known = [d for d in drops.values() if d is not None]
    worst = max(known) if known else 0.0
    record = {
        "split": split,
        "images": int(images),
        "max_drop_pp": max_drop_pp,
        "fp32": reference_accuracy,
        candidate_name: candidate_accuracy,
        "drop_pp": drops,
    }
    summary = (
        f"accuracy drop vs FP32 above {max_drop_pp:g} pp: {over}"
        if over
        else f"worst accuracy drop vs FP32 {worst:+.2f} pp on {images} {split} images"
    )
    return Verdict(not over, record, summary)
