"""What the demo shows, as plain data: heat-map overlays, label dicts, status text, batch tables.

numpy and Pillow only, so these functions are testable without a browser or a Gradio server.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashion.runtime import BatchItem, Prediction
from fashion.runtime.bundle import atomic_write_bytes
from fashion.runtime.manifest import ArtifactEntry

DISPLAY_HEIGHT = 384  # model inputs are tiny (e.g. 128x96); enlarge them for the page
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def jet(heat: np.ndarray) -> np.ndarray:
    """A jet-style colormap: float HxW in [0, 1] -> uint8 HxWx3 (blue = cold, red = hot)."""
    x = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)[..., None]
    ramps = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue peak at 3/4, 1/2, 1/4
    rgb = np.clip(1.5 - np.abs(4.0 * x - ramps), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour-mapped ``heat`` (HxW in [0, 1]) over ``image`` (uint8 HxWx3 of the same size)."""
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and heat map {heat.shape} sizes differ")
    # Stronger tint where the map is hot, so cold regions keep the photo visible.
    weight = alpha * (0.35 + 0.65 * np.clip(heat, 0.0, 1.0))[..., None]
    blended = image.astype(np.float32) * (1.0 - weight) + jet(heat).astype(np.float32) * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, height: int = DISPLAY_HEIGHT) -> np.ndarray:
    """Scale a uint8 HxWx3 image to ``height`` pixels tall, keeping its aspect ratio."""
    h, w = image.shape[:2]
    if h >= height:
        return image
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def save_png(image: np.ndarray, directory: str | os.PathLike) -> Path:
    """Write ``image`` as ``<content hash>.png`` in ``directory``, atomically.

    Concurrent requests for the same photo produce the same file; an atomic rename means a
    reader never sees it half-written (Gradio's own in-place image cache can be, under load).
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = Path(directory) / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    atomic_write_bytes(path, data)
    return path


def prune(directory: str | os.PathLike, max_age_s: float) -> int:
    """Delete entries of ``directory`` not modified for ``max_age_s`` seconds; returns how many."""
    cutoff, removed = time.time() - max_age_s, 0
    for entry in os.scandir(os.fspath(directory)):
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass  # another request pruned it first
    return removed


def label_confidences(prediction: Prediction) -> dict[str, dict[str, float]]:
    """{head: {label: probability}} of the top-k classes, the value a gr.Label shows."""
    return {head: {label: float(prob) for label, prob in p.top_k} for head, p in prediction.heads.items()}


def status_markdown(
    prediction: Prediction, info: dict[str, Any], entry: ArtifactEntry, total_ms: float | None = None
) -> str:
    """One line: how long this prediction took (``total_ms``: decode included) and what ran it (``info``: the
    classifier's backend and providers; ``entry``: the manifest entry of its artifact)."""
    providers = ", ".join(info.get("providers") or []) or "n/a"
    took = prediction.latency_ms if total_ms is None else total_ms
    return (
        f"Prediction took **{took:.1f} ms** · backend `{info.get('backend')}` · "
        f"precision `{entry.precision}` · provider `{providers}` · artifact `{info.get('artifact')}`"
    )


def error_markdown(message: str) -> str:
    return f"**Could not use this file:** {message}"


def readable_error(message: str, path: str | os.PathLike | None) -> str:
    """Replace the server's temporary upload path in ``message`` with the file's own name."""
    if path is None:
        return message
    return message.replace(str(path), Path(path).name)


def batch_columns(heads: Sequence[str]) -> list[str]:
    columns = ["image"]
    for head in heads:
        columns += [head, f"{head} confidence"]
    return columns + ["error"]


def batch_rows(items: Iterable[BatchItem], names: Sequence[str], heads: Sequence[str]) -> list[list[Any]]:
    """One row per image: its name, each head's label and confidence (3 decimals), or the error."""
    rows = []
    for name, item in zip(names, items):
        row: list[Any] = [name]
        for head in heads:
            if item.prediction is None:
                row += ["", None]
            else:
                p = item.prediction.heads[head]
                row += [p.label, round(p.confidence, 3)]
        rows.append(row + [readable_error(item.error, item.source) if item.error else ""])
    return rows


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) gets a
    leading ``'``, so an upload named ``=HYPERLINK(...).jpg`` stays text (CSV injection). Numbers pass."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """The batch table as CSV (UTF-8), every text cell made spreadsheet-safe."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(c) for c in columns])
        writer.writerows([spreadsheet_safe("" if value is None else value) for value in row] for row in rows)
    return path


def example_images(sample_dir: str | os.PathLike, count: int = 8) -> list[Path]:
    """One image for each of the ``count`` most common articleTypes in ``sample_dir/styles.csv``."""
    sample_dir = Path(sample_dir)
    styles = sample_dir / "styles.csv"
    if not styles.is_file():
        return []
    with styles.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if "id" not in header or "articleType" not in header:
        return []
    id_col, type_col = header.index("id"), header.index("articleType")
    first_image: dict[str, Path] = {}
    counts: Counter[str] = Counter()
    for row in body:
        if len(row) <= max(id_col, type_col) or not row[type_col]:
            continue
        path = sample_dir / "images" / f"{row[id_col]}.jpg"
        if not path.is_file():
            continue
        counts[row[type_col]] += 1
        first_image.setdefault(row[type_col], path)
    return [first_image[article] for article, _ in counts.most_common(count)]
