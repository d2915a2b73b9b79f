"""``vips-check``: the libvips accuracy gate, per format and size, against the exact (Pillow, full-size) path.

Every test photo (or a seeded subset), upscaled to 1080x1440 and 2400x3200 and saved in each of the chosen
formats (JPEG, PNG, PNG-RGBA, WEBP; all by default), goes through the exact path and through libvips ->
pixel differences, per-head accuracy, top-1 agreement. libvips passes if no head loses more than
``MAX_DROP_PP`` in any cell; the verdict is also given per format.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashion.runtime.bundle import load_manifest
from fashion.runtime.errors import BackendUnavailableError
from fashion.runtime.host import cpu_facts, usable_cores
from fashion.runtime.preprocess import build_preprocessor

from .compare import MAX_DROP_PP, flips, mean_abs_diff, score_chunks, verdict_by_format
from .inputs import DECODE_SIZES, FORMATS, LOSSLESS, SEED, as_written, encode, split_photos

#: How each format is written, as the report says it (PNG and RGBA PNG share their words when both run).
_JPEG, _WEBP = "JPEG q90", "WebP q90 method 0"
_PNG_LEVEL = "stored uncompressed (lossless either way: the decoded pixels do not depend on the level)"
_RGBA = "RGBA PNG (white > 245 made transparent)"


def encoders_text(formats: Iterable[str]) -> str:
    """The encoders of ``formats`` in words (for all four: the text of the reports so far)."""
    chosen = set(formats)
    parts = [_JPEG] if "JPEG" in chosen else []
    pngs = [name for fmt, name in (("PNG", "PNG"), ("PNG-RGBA", _RGBA)) if fmt in chosen]
    if pngs:
        parts.append(f"{' and '.join(pngs)} {_PNG_LEVEL}")
    return ", ".join(parts + ([_WEBP] if "WEBP" in chosen else []))


def _vips_chunk(args: tuple) -> dict[str, Any]:
    """Worker: each photo upscaled to every size in every format, through the exact path and libvips."""
    from fashion.runtime import vips_decode

    paths, spec, height, width, sizes, formats, pillow_fast = args
    exact = build_preprocessor(spec, height, width, fast=False, decoder="pillow")
    vips = build_preprocessor(spec, height, width, decoder="libvips")  # every format, JPEG and AVIF included
    fast = build_preprocessor(spec, height, width, decoder="pillow")
    out: dict[str, Any] = {"original": [], "ok": []}
    before = vips_decode.counts()
    for path in paths:
        try:
            base = exact.load(path)
        except Exception:
            out["ok"].append(False)
            continue
        out["ok"].append(True)
        out["original"].append(exact.fit_image(base))
        for size in sizes:
            big = base.resize(size, Image.Resampling.BICUBIC)
            for fmt in formats:
                image = as_written(big, fmt)
                # PNG stored without compression: lossless either way, so the decoded pixels are the same, and
                # writing is much faster (the check is about pixels; timings are the photo bench's job)
                data = encode(image, fmt, png_level=0)
                cell = f"{size[0]}x{size[1]}/{fmt}"
                # a PNG decodes to exactly the pixels written: the exact path reads those, skipping the decode
                out.setdefault(f"{cell}/exact", []).append(exact(image if fmt in LOSSLESS else data))
                out.setdefault(f"{cell}/libvips", []).append(vips(data))
                if pillow_fast:  # the same reductions decoded by Pillow (the runtime without libvips)
                    out.setdefault(f"{cell}/pillow_fast", []).append(fast(data))
    after = vips_decode.counts()
    stacked = {key: (np.stack(value) if key != "ok" and value else value) for key, value in out.items()}
    stacked["_counts"] = {key: after[key] - before[key] for key in after}
    return stacked


def vips_decode_check(
    bundle_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split_file: str | os.PathLike,
    split: str = "test",
    subset: int | None = None,
    seed: int = SEED,
    sizes: Iterable[tuple[int, int]] = DECODE_SIZES,
    formats: Iterable[str] = FORMATS,
    workers: int = 1,
    chunk: int = 16,
    pillow_fast: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """libvips vs the exact (Pillow, full-size) path on real-size versions of the test photos, per format and
    size: pixel differences, per-head accuracy, top-1 agreement. libvips passes if no head loses more than
    ``MAX_DROP_PP`` in any cell. ``formats``: a subset of FORMATS (ValueError for others). ``pillow_fast``: the
    Pillow fast path (the same reductions, decoded by Pillow) is compared with the exact path too, and with
    libvips image by image. The ``workers`` are spawned processes: a script calling this needs a main-module
    guard (multiprocessing's spawn re-imports it)."""
    from fashion.metrics.accuracy import head_scores
    from fashion.runtime import vips_decode

    if not vips_decode.available():
        raise BackendUnavailableError(
            f"libvips is not available ({vips_decode.unavailable_reason()}): pip install '.[fast]'"
        )
    sizes, formats = [(w, h) for w, h in sizes], list(formats)
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats {formats}: choose one or more of {', '.join(FORMATS)}")
    bundle = load_manifest(bundle_dir, verify_hashes=False)
    height, width = bundle.input_size
    spec = bundle.manifest.preprocessing.to_dict()
    photos = split_photos(Path(data_dir), Path(split_file), split, subset, seed)
    log(f"{len(photos)} {split} photos, sizes {sizes}, formats {formats}, {workers} worker(s)")

    start = time.time()
    scored = score_chunks(
        bundle_dir,
        photos,
        data_dir,
        _vips_chunk,
        lambda paths: (paths, spec, height, width, sizes, formats, pillow_fast),
        workers,
        chunk,
        1,
        start,
        log,
    )
    kept_ids, pixel, truth = scored.kept_ids, scored.pixel, scored.truth
    counts = {key: scored.counts.get(key, 0) for key in ("decoded", "refused")}
    top1 = {key: {head: top[:, 0] for head, top in per_head.items()} for key, per_head in scored.tops.items()}
    accuracy = {
        key: {head: head_scores(truth[head], per_head[head][:, None])["accuracy"] for head in bundle.heads}
        for key, per_head in top1.items()
    }
    comparisons: list[dict[str, Any]] = []
    for key, stats in pixel.items():
        cell, variant = key.rsplit("/", 1)
        exact_top, vips_top = top1[f"{cell}/exact"], top1[key]
        drops = {head: round(100 * (accuracy[f"{cell}/exact"][head] - accuracy[key][head]), 4) for head in bundle.heads}
        comparisons.append(
            {
                "cell": cell,
                "variant": variant,
                "pixel_max_abs_diff": stats["max_abs_diff"],
                "pixel_mean_abs_diff": mean_abs_diff(stats),
                "drop_pp": drops,
                "top1_agreement": {h: float(np.mean(exact_top[h] == vips_top[h])) for h in bundle.heads},
                "flips": {h: flips(truth[h], exact_top[h], vips_top[h]) for h in bundle.heads},
            }
        )
    worst = max(max(row["drop_pp"].values()) for row in comparisons if row["variant"] == "libvips")
    between = {
        cell: {h: float(np.mean(top1[f"{cell}/libvips"][h] == top1[f"{cell}/pillow_fast"][h])) for h in bundle.heads}
        for cell in {row["cell"] for row in comparisons}
        if f"{cell}/pillow_fast" in top1
    }
    return {
        "bundle": str(bundle_dir),
        "split": split,
        "photos": len(kept_ids),
        "unreadable": len(photos) - len(kept_ids),
        "subset": ({"size": subset, "seed": seed, "of": "the whole split"} if subset else None),
        "upscale": {
            "resample": "bicubic",
            "formats": formats,
            "sizes": [f"{w}x{h}" for w, h in sizes],
            "encoders": encoders_text(formats),
        },
        "input_size": [height, width],
        "libvips": vips_decode.version(),
        "libvips_decodes": counts,
        "max_drop_pp": MAX_DROP_PP,
        "comparisons": comparisons,
        "accuracy": accuracy,
        "verdict": {"worst_drop_pp": round(worst, 4), "passes": worst <= MAX_DROP_PP},
        "verdict_by_format": verdict_by_format(comparisons),
        "libvips_vs_pillow_fast_top1_agreement": between or None,
        "cpu": cpu_facts().to_dict(),
        "cores": usable_cores(),
        "seconds": round(time.time() - start, 1),
    }
