"""The decode modes the photo bench compares, and the one loaded model each of them runs through."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from PIL import Image

from .inputs import FORMATS

#: predict(path) modes, interleaved call by call: the exact path, the Pillow fast path (the runtime before libvips),
#: and the runtime's default (libvips for the formats where it is faster, when pyvips is installed).
LATENCY_MODES: dict[str, dict[str, Any]] = {
    "exact": {"fast_decode": False, "decoder": "pillow"},
    "Pillow fast": {"fast_decode": True, "decoder": "pillow"},
    "now": {"fast_decode": True, "decoder": "auto"},
}
#: predict_batch modes: before = the runtime before this change (Pillow fast path, one predict_batch call per batch
#: of 32, so nothing decodes ahead); Pillow + decode-ahead isolates the scheduling; now = the runtime's default.
BATCH_MODES: dict[str, dict[str, Any]] = {
    "before (Pillow, no decode-ahead)": {"decoder": "pillow", "one_call": False},
    "Pillow + decode-ahead": {"decoder": "pillow", "one_call": True},
    "now (default)": {"decoder": "auto", "one_call": True},
}
#: predict_batch folders: one format each, and mixed (the four formats in turn, as a catalogue holds).
BATCH_FOLDERS: dict[str, tuple[str, ...]] = {
    "JPEG": ("JPEG",),
    "PNG": ("PNG",),
    "PNG-RGBA": ("PNG-RGBA",),
    "WEBP": ("WEBP",),
    "mixed": FORMATS,
}
#: predict_batch modes of the scaling run: the fast decode path with one decode thread, and the runtime's default
#: (host-aware decode threads); both let the model take its default threads, i.e. every usable core.
SCALING_MODES: dict[str, int | None] = {"one decode thread": 1, "parallel decoding (default)": None}


def with_preprocessor(clf: Any, **changes: Any) -> Any:
    """A view of the loaded ``clf`` whose preprocessor has ``changes``: every mode runs the very same model."""
    view = copy.copy(clf)
    view.preprocessor = replace(clf.preprocessor, **changes)
    return view


def decoder_of(clf: Any, fmt: str) -> str:
    """The decoder ``clf`` uses for large photos of ``fmt``, in words (with its version)."""
    if not clf.preprocessor.fast:
        return f"Pillow {Image.__version__} (full size)"
    return str(clf.preprocessor.decoder_for(fmt.split("-")[0]))
