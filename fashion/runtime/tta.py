"""Test-time augmentation: the one definition of "average with the mirrored photo" (classifier and bench)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def mirror_averaged(
    infer: Callable[[np.ndarray], dict[str, np.ndarray]], batch: np.ndarray, heads: Sequence[str], layout: str = "NHWC"
) -> dict[str, np.ndarray]:
    """{head: probabilities} of ``batch`` averaged with its horizontal mirror.

    The batch and its mirror go through ``infer`` as one 2N batch (one call, one dispatch); product
    photos mean the same mirrored, so the mirror is a second opinion. ``layout``: the batch's layout
    (the width axis is 3 for NCHW, else 2).
    """
    count = len(batch)
    width_axis = 3 if layout == "NCHW" else 2
    outputs = infer(np.concatenate([batch, np.flip(batch, axis=width_axis)]))
    return {head: (outputs[head][:count] + outputs[head][count:]) * np.float32(0.5) for head in heads}
