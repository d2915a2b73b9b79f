"""Evaluate a bundle's Keras model on a split or on any Kaggle-layout folder.

Writes metrics.json (accuracy, macro-F1, top-3 per head), confusion-matrix PNGs (gender,
masterCategory, season, the most common subCategories), the top confusions for articleType and
baseColour, and a PNG grid of sample predictions with mistakes marked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fashion import HEADS
from fashion.data.labels import encode
from fashion.metrics.accuracy import head_scores
from fashion.metrics.colour import family_scores

from .recipe import Decoded, Part, decode_part

CONFUSION_HEADS = ("gender", "masterCategory", "season", "subCategory")
TOP_CONFUSION_HEADS = ("articleType", "baseColour")
#: The head scored also by shade family (docs/colour-families.md).
COLOUR_HEAD = "baseColour"


def predict_keras(model, part: Part, batch_size: int = 128) -> tuple[dict[str, np.ndarray], Decoded]:
    """Decode the part at the model's input size (threads) and run it through the compiled predict step."""
    from .pipeline import predict_padded  # Keras: imported here so scoring made predictions does not need it

    height, width = (int(d) for d in model.input_shape[1:3])
    decoded = decode_part(part, height, width)
    return predict_padded(model, decoded.images, batch_size), decoded


def score(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, dict]:
    ranked = {h: np.argsort(-p, axis=1)[:, :3] for h, p in probs.items()}
    return {h: head_scores(labels[h], ranked[h]) for h in probs}


def top_confusions(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], n: int = 15) -> list[dict]:
    valid = (y_true >= 0) & (y_true != y_pred)
    pairs = pd.Series(list(zip(y_true[valid], y_pred[valid]))).value_counts().head(n)
    return [{"actual": classes[a], "predicted": classes[p], "count": int(c)} for (a, p), c in pairs.items()]


def plot_confusion(y_true, y_pred, classes, path: Path, title: str, max_classes: int = 15) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = y_true >= 0
    y_true, y_pred = y_true[valid], y_pred[valid]
    keep = [c for c, _ in pd.Series(y_true).value_counts().head(max_classes).items()]
    index = {c: i for i, c in enumerate(keep)}
    matrix = np.zeros((len(keep), len(keep) + 1))
    for t, p in zip(y_true, y_pred):
        if t in index:
            matrix[index[t], index.get(p, len(keep))] += 1
    matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    names = [classes[c] for c in keep]
    size = 2.5 + 0.45 * len(keep)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(keep) + 1), names + ["(other)"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), names, fontsize=8)
    for i in range(len(keep)):
        for j in range(len(keep) + 1):
            if matrix[i, j] >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if matrix[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual (row-normalised)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_sample_grid(paths, probs, labels, vocab, path: Path, n: int = 12, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(paths), size=min(n, len(paths)), replace=False)
    cols = 3
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(
        rows, cols * 2, figsize=(cols * 5.2, rows * 2.3), gridspec_kw={"width_ratios": [1, 2.2] * cols}, squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for slot, i in enumerate(picks):
        image_ax, text_ax = axes[slot // cols, 2 * (slot % cols)], axes[slot // cols, 2 * (slot % cols) + 1]
        image_ax.imshow(Image.open(paths[i]).convert("RGB"))
        for k, head in enumerate(HEADS):
            pred, truth = int(probs[head][i].argmax()), int(labels[head][i])
            ok = truth < 0 or truth == pred
            text = f"{head}: {vocab[head][pred]}" + ("" if ok else f"\n    actual: {vocab[head][truth]}")
            text_ax.text(
                0.02,
                0.97 - k * 0.165,
                text,
                transform=text_ax.transAxes,
                fontsize=7.5,
                color="black" if ok else "red",
                va="top",
                fontweight="normal" if ok else "bold",
            )
    fig.suptitle("Sample predictions (red: mistake, with the actual label)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate_frame(
    model,
    frame: pd.DataFrame,
    vocab: dict[str, list[str]],
    out_dir: str | Path | None = None,
    name: str = "test",
    hierarchy: list | None = None,
    photos: bool = True,
) -> dict:
    """Score ``model`` on ``frame`` (rows with id, path and the six heads); write reports to ``out_dir``.

    Unreadable images are skipped and counted in the metrics (``skipped``). ``photos=False``: the report shows
    no photo (no sample grid), for sets whose licences forbid passing their photos on.
    """
    part = Part(frame["id"].to_numpy(np.int64), [str(p) for p in frame["path"]], encode(frame, vocab))
    probs, decoded = predict_keras(model, part)
    paths = [part.paths[i] for i in np.flatnonzero(np.isin(part.ids, decoded.ids))] if photos else None
    metrics = evaluate_predictions(probs, decoded.labels, vocab, name, hierarchy, out_dir, paths)
    if decoded.skipped:
        metrics["skipped"] = [{"id": i, "reason": r} for i, r in decoded.skipped]
    return metrics


def evaluate_predictions(
    probs: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    vocab: dict[str, list[str]],
    name: str,
    hierarchy: list | None = None,
    out_dir: str | Path | None = None,
    paths: list[str] | None = None,
) -> dict:
    """Metrics for predictions already made (a recipe's validation pass): nothing is decoded or run again.

    With ``hierarchy`` (the bundle's known category combinations) the metrics also show what
    hierarchy-consistent decoding would change. ``out_dir`` (with ``paths``) adds the report files.
    """
    metrics: dict = {"split": name, "images": int(len(next(iter(labels.values())))), "heads": score(probs, labels)}
    if hierarchy:
        from fashion.runtime.hierarchy import HierarchyDecoder, consistency_effect

        metrics["hierarchy_decoding"] = consistency_effect(probs, labels, HierarchyDecoder(hierarchy, vocab))
    if COLOUR_HEAD in probs and COLOUR_HEAD in labels and COLOUR_HEAD in vocab:
        metrics["colour_families"] = family_scores(
            labels[COLOUR_HEAD], probs[COLOUR_HEAD].argmax(axis=1), vocab[COLOUR_HEAD]
        )
    if out_dir is None:
        return metrics
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predicted = {h: probs[h].argmax(axis=1) for h in HEADS}
    metrics["top_confusions"] = {h: top_confusions(labels[h], predicted[h], vocab[h]) for h in TOP_CONFUSION_HEADS}
    for head in CONFUSION_HEADS:
        plot_confusion(
            labels[head],
            predicted[head],
            vocab[head],
            out / f"confusion_{head}.png",
            f"{head} ({name}, top classes)" if head == "subCategory" else f"{head} ({name})",
        )
    if paths is not None:
        plot_sample_grid(paths, probs, labels, vocab, out / "sample_predictions.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def format_table(metrics: dict) -> str:
    lines = [f"{'head':<15} {'accuracy':>9} {'macro-F1':>9} {'top-3':>7} {'n':>6}"]
    for head, m in metrics["heads"].items():
        if m["accuracy"] is None:  # no labels for this head (e.g. season in other shops' photos)
            lines.append(f"{head:<15} {'-':>9} {'-':>9} {'-':>7} {m['n']:>6}")
            continue
        lines.append(f"{head:<15} {m['accuracy']:>9.4f} {m['macro_f1']:>9.4f} {m['top3']:>7.4f} {m['n']:>6}")
    for level, m in metrics.get("hierarchy_decoding", {}).items():
        lines.append(f"consistent decoding, {level}: {m['argmax']:.4f} -> {m['consistent']:.4f}")
    families = metrics.get("colour_families")
    if families and families.get("n"):
        lines.append(
            f"{COLOUR_HEAD} shade families: accuracy {families['accuracy']:.4f}, "
            f"macro-F1 {families['macro_f1']:.4f} (n {families['n']})"
        )
    return "\n".join(lines)
