"""Exploratory data analysis of a Kaggle-layout Fashion Product Images folder.

``run_eda`` loads the data with the project's reader, hashes every decoded image (pixel-identical
groups, unreadable files, image modes and sizes), writes PNG plots and a Markdown report with the
numbers. Everything is computed from the data; nothing is hard-coded about the shared copy except
that, when the folder carries a SOURCES.md, its duplicate-group claim is compared with ours.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion import HEADS
from fashion.data.dataset import DatasetReport, load_dataset
from fashion.data.split import SPLITS, read_split
from fashion.runtime.errors import InvalidImageError
from fashion.runtime.preprocess import load_image

DPI = 90
LABEL_COLUMNS = (
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
    "productDisplayName",
)
TOP_CLASSES = 50  # class-count plots show at most this many bars; the long-tail plot shows all


@dataclass
class ImageScan:
    """Per-image facts gathered in one decoding pass."""

    rgb_hash: dict[int, str] = field(default_factory=dict)
    native_hash: dict[int, str] = field(default_factory=dict)  # hash in the file's own mode (no RGB conversion)
    modes: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    unreadable: list[int] = field(default_factory=list)


@dataclass
class EdaResult:
    report: DatasetReport
    frame: pd.DataFrame
    scan: ImageScan
    groups: list[list[int]]  # pixel-identical groups with more than one id, ids sorted
    conflicts: dict[str, list[list[int]]]  # head -> groups whose members disagree on that head
    split_counts: dict[str, int] | None
    crossing_groups: list[list[int]] | None
    files: list[Path]


def _digest(pixels: np.ndarray, extra: str = "") -> str:
    return hashlib.sha1((extra + repr(pixels.shape)).encode() + pixels.tobytes()).hexdigest()


def scan_images(frame: pd.DataFrame, progress: bool = False) -> ImageScan:
    """Decode every image once: RGB pixel hash (as split.pixel_hash), native-mode hash, mode, size."""
    from tqdm import tqdm

    scan = ImageScan()
    rows = tqdm(list(zip(frame["id"], frame["path"])), disable=not progress, desc="hashing pixels", unit="img")
    for image_id, path in rows:
        image_id = int(image_id)
        try:
            rgb = load_image(path)
            with Image.open(path) as native:
                scan.modes[native.mode] += 1
                scan.sizes[native.size] += 1
                scan.native_hash[image_id] = _digest(np.asarray(native), native.mode)
        except (InvalidImageError, OSError):
            scan.unreadable.append(image_id)
            continue
        scan.rgb_hash[image_id] = _digest(np.asarray(rgb))
    return scan


def duplicate_groups(hashes: dict[int, str]) -> list[list[int]]:
    """Groups (size > 1) of ids sharing a hash, each sorted, ordered by their smallest id."""
    members: dict[str, list[int]] = {}
    for image_id, digest in hashes.items():
        members.setdefault(digest, []).append(image_id)
    return sorted((sorted(ids) for ids in members.values() if len(ids) > 1), key=lambda g: g[0])


def label_conflicts(frame: pd.DataFrame, groups: list[list[int]]) -> dict[str, list[list[int]]]:
    """For each head, the duplicate groups whose (non-empty) labels disagree."""
    by_id = frame.set_index("id")
    conflicts = {}
    for head in HEADS:
        labels = by_id[head]
        conflicts[head] = [g for g in groups if labels.loc[g].dropna().nunique() > 1]
    return conflicts


def imbalance(frame: pd.DataFrame) -> pd.DataFrame:
    """Per head: classes, largest/smallest class and their counts, max/min ratio, classes under 10 images."""
    rows = []
    for head in HEADS:
        counts = frame[head].value_counts()
        rows.append(
            {
                "head": head,
                "classes": len(counts),
                "largest": counts.index[0],
                "largest_n": int(counts.iloc[0]),
                "smallest": counts.index[-1],
                "smallest_n": int(counts.iloc[-1]),
                "ratio": counts.iloc[0] / counts.iloc[-1],
                "under_10": int((counts < 10).sum()),
                "median": float(counts.median()),
            }
        )
    return pd.DataFrame(rows)


def missing_per_column(frame: pd.DataFrame) -> pd.Series:
    columns = [c for c in LABEL_COLUMNS if c in frame.columns]
    return frame[columns].isna().sum().astype(int)


# ---------------------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _save(fig, path: Path, files: list[Path]) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    files.append(path)


def plot_class_counts(frame: pd.DataFrame, out: Path, files: list[Path]) -> None:
    """One PNG per head: horizontal bars, largest class on top, counts written on the bars."""
    plt = _plt()
    for head in HEADS:
        counts = frame[head].value_counts()
        shown = counts.head(TOP_CLASSES)
        fig, ax = plt.subplots(figsize=(7, 1.4 + 0.2 * len(shown)))
        ax.barh(range(len(shown)), shown.values, color="#4c72b0")
        ax.set_yticks(range(len(shown)), shown.index, fontsize=8)
        ax.set_ylim(len(shown) - 0.4, -0.6)  # largest on top, no empty band above or below
        for y, n in enumerate(shown.values):
            ax.text(n, y, f" {n:,}", va="center", fontsize=7)
        ax.set_xlim(0, shown.max() * 1.15)
        ax.set_xlabel("images")
        extra = f" (top {TOP_CLASSES} of {len(counts)})" if len(counts) > TOP_CLASSES else f" ({len(counts)} classes)"
        ax.set_title(f"{head}: images per class{extra}")
        _save(fig, out / f"class_counts_{head}.png", files)


def plot_long_tail(frame: pd.DataFrame, out: Path, files: list[Path]) -> None:
    """Ranked class counts on a log scale for the two long-tailed heads."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, head in zip(axes, ("articleType", "baseColour")):
        counts = frame[head].value_counts()
        ranks = np.arange(1, len(counts) + 1)
        ax.semilogy(ranks, counts.values, marker="o", markersize=2.5, lw=1, color="#c44e52")
        for threshold in (10, 100):
            below = int((counts < threshold).sum())
            ax.axhline(threshold, color="grey", lw=0.6, ls="--")
            ax.text(
                1,
                threshold,
                f"{below} classes < {threshold} images",
                ha="left",
                va="bottom",
                fontsize=7,
                color="dimgrey",
            )
        largest = "\n".join(f"{name} {n:,}" for name, n in counts.head(3).items())
        smallest = "\n".join(f"{name} {n:,}" for name, n in counts.tail(3).items())
        ax.text(
            0.98,
            0.97,
            f"largest:\n{largest}\n\nsmallest:\n{smallest}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            bbox={"facecolor": "white", "edgecolor": "lightgrey"},
        )
        ax.set_xlabel("class rank")
        ax.set_ylabel("images (log scale)")
        ax.set_title(f"{head}: {len(counts)} classes, ranked")
    _save(fig, out / "long_tail.png", files)


def plot_missing(missing: pd.Series, rows: int, out: Path, files: list[Path]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colors = ["#c44e52" if c in HEADS else "#8c8c8c" for c in missing.index]
    ax.barh(range(len(missing)), missing.values, color=colors)
    ax.set_yticks(range(len(missing)), missing.index)
    ax.invert_yaxis()
    for y, n in enumerate(missing.values):
        ax.text(n, y, f" {n}", va="center", fontsize=8)
    ax.set_xlim(0, max(1, missing.max()) * 1.25)
    ax.set_xlabel(f"empty / NA values (of {rows:,} rows)")
    ax.set_title("Missing values per column (red: model heads, masked per head in training)")
    _save(fig, out / "missing_values.png", files)


def plot_imbalance(table: pd.DataFrame, out: Path, files: list[Path]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh(table["head"], table["ratio"], color="#dd8452")
    ax.set_xscale("log")
    ax.invert_yaxis()
    for y, row in enumerate(table.itertuples()):
        ax.text(
            row.ratio,
            y,
            f" {row.ratio:,.0f}x  ({row.largest} {row.largest_n:,} / {row.smallest} {row.smallest_n:,})",
            va="center",
            fontsize=7,
        )
    ax.set_xlim(1, table["ratio"].max() * 300)
    ax.set_xlabel("largest class / smallest class (log scale)")
    ax.set_title("Class imbalance per head")
    _save(fig, out / "imbalance.png", files)


def plot_duplicates(
    groups: list[list[int]], conflicts: dict[str, list[list[int]]], out: Path, files: list[Path]
) -> None:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    sizes = Counter(len(g) for g in groups)
    xs = sorted(sizes)
    left.bar([str(x) for x in xs], [sizes[x] for x in xs], color="#55a868")
    for x in xs:
        left.text(str(x), sizes[x], f"{sizes[x]}", ha="center", va="bottom", fontsize=8)
    left.set_xlabel("images in the group")
    left.set_ylabel("groups")
    left.set_title(f"Pixel-identical groups: {len(groups)} groups, {sum(map(len, groups))} images")
    counts = [len(conflicts[h]) for h in HEADS]
    right.barh(list(HEADS), counts, color="#8172b3")
    right.invert_yaxis()
    for y, n in enumerate(counts):
        right.text(n, y, f" {n}", va="center", fontsize=8)
    right.set_xlim(0, max(1, max(counts)) * 1.2)
    right.set_xlabel("groups whose labels disagree")
    right.set_title("Label conflicts inside identical groups")
    _save(fig, out / "duplicate_groups.png", files)


def plot_split(frame: pd.DataFrame, out: Path, files: list[Path]) -> None:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    counts = frame["split"].value_counts().reindex(SPLITS, fill_value=0)
    left.bar(counts.index, counts.values, color=["#4c72b0", "#dd8452", "#55a868"])
    for x, n in zip(counts.index, counts.values):
        left.text(x, n, f"{n:,}\n{n / max(1, counts.sum()):.1%}", ha="center", va="bottom", fontsize=8)
    left.set_ylim(0, counts.max() * 1.25)
    left.set_ylabel("images")
    left.set_title("Split sizes")
    classes = [frame.loc[frame["split"] == s, "articleType"].nunique() for s in SPLITS]
    right.bar(SPLITS, classes, color=["#4c72b0", "#dd8452", "#55a868"])
    for x, n in zip(SPLITS, classes):
        right.text(x, n, f"{n}", ha="center", va="bottom", fontsize=8)
    right.set_ylim(0, max(classes) * 1.2)
    right.set_title(f"articleTypes present (of {frame['articleType'].nunique()})")
    _save(fig, out / "split_sizes.png", files)


# ---------------------------------------------------------------------------------------------- report


def _sources_claim(data_dir: Path) -> tuple[int, int, list[tuple[int, int]]] | None:
    """(groups, ids, conflicting pairs) stated by a SOURCES.md next to styles.csv, if there is one."""
    path = Path(data_dir) / "SOURCES.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    match = re.search(r"([\d,]+) groups of pixel-identical images cover ([\d,]+) ids", text)
    if not match:
        return None
    pairs = [(int(a), int(b)) for a, b in re.findall(r"\b(\d+)/(\d+)\b", text)]
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", "")), pairs


def _shown(path) -> str:
    """A path relative to the working directory where possible (reports are committed)."""
    path = Path(path).resolve()
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(result: EdaResult, data_dir: Path, out: Path, split_file: Path | None) -> Path:
    report, frame, scan = result.report, result.frame, result.scan
    missing = missing_per_column(frame)
    table = imbalance(frame)
    native_groups = duplicate_groups(scan.native_hash)
    lines = [
        "# Data report: Fashion Product Images",
        "",
        f"Generated by `fashion-eda --data {_shown(data_dir)}` ({_shown(report.styles_csv)}). "
        "Plots are the PNGs next to this file.",
        "",
        "## Loader",
        "",
        _table(
            ["what", "count"],
            [
                ["label rows in styles.csv", f"{report.rows:,}"],
                [
                    "rows repaired (unquoted commas in productDisplayName, extra fields joined back)",
                    report.repaired_rows,
                ],
                ["rows without an image", len(report.missing_images)],
                ["unreadable images (decoded every image)", len(scan.unreadable)],
                ["duplicate ids", report.duplicate_ids],
                ["rows without a numeric id", getattr(report, "invalid_id_rows", 0)],
                ["**usable images**", f"**{len(frame):,}**"],
            ],
        ),
        "",
        f"Rows without an image: {report.missing_images[:20] or 'none'}. Unreadable: {scan.unreadable[:20] or 'none'}.",
        "",
        "Image modes: "
        + ", ".join(f"{m} {n:,}" for m, n in scan.modes.most_common())
        + ". Sizes (WxH): "
        + ", ".join(f"{w}x{h} {n:,}" for (w, h), n in scan.sizes.most_common(6))
        + (f", {len(scan.sizes) - 6} other sizes" if len(scan.sizes) > 6 else "")
        + ".",
        "Grayscale files are converted to RGB by the shared preprocessing; smaller images are padded white to "
        "the input aspect.",
        "",
        "## Missing values",
        "",
        "Empty or `NA` values become `None`; a row with a missing head label still trains the other heads "
        "(per-head mask, label -1). ![missing values](missing_values.png)",
        "",
        _table(["column", "empty/NA"], [[c, int(n)] for c, n in missing.items()]),
        "",
        "## Classes and imbalance",
        "",
        "![imbalance](imbalance.png) ![long tail](long_tail.png)",
        "",
        _table(
            ["head", "classes", "largest", "smallest", "max/min", "median", "classes < 10 images"],
            [
                [
                    r.head,
                    r.classes,
                    f"{r.largest} ({r.largest_n:,})",
                    f"{r.smallest} ({r.smallest_n:,})",
                    f"{r.ratio:,.0f}",
                    f"{r.median:,.0f}",
                    r.under_10,
                ]
                for r in table.itertuples()
            ],
        ),
        "",
        "Per-head class counts: " + ", ".join(f"[{h}](class_counts_{h}.png)" for h in HEADS) + ".",
        "",
        "## Pixel-identical images",
        "",
        f"Hash = sha1 of the decoded RGB pixels and their shape (`fashion.data.split.pixel_hash`). "
        f"**{len(result.groups)} groups cover {sum(map(len, result.groups)):,} ids** "
        f"(sizes: " + ", ".join(f"{n} of {s}" for s, n in sorted(Counter(map(len, result.groups)).items())) + "). "
        f"Hashing each file in its own mode without RGB conversion gives {len(native_groups)} groups / "
        f"{sum(map(len, native_groups)):,} ids"
        + (" (the same grouping)." if native_groups == result.groups else " (a different grouping).")
        + " ![duplicate groups](duplicate_groups.png)",
        "",
    ]
    claim = _sources_claim(Path(report.styles_csv).parent)
    if claim:
        stated_groups, stated_ids, pairs = claim
        ours = {tuple(g) for g in result.groups}
        found = [p for p in pairs if tuple(sorted(p)) in ours]
        lines += [
            f"The folder's SOURCES.md states {stated_groups} groups / {stated_ids:,} ids. It counts over the whole "
            f"original dataset, including the images held back from this folder, and says every group lies wholly "
            f"inside or wholly outside this folder; groups that lie wholly in the held-back part cannot be seen here, "
            f"which accounts for the {stated_groups - len(result.groups)} groups / "
            f"{stated_ids - sum(map(len, result.groups))} ids difference. The hash is not the cause: hashing without "
            f"RGB conversion gives the same groups (above), and {len(found)} of the {len(pairs)} conflicting pairs it "
            f"lists are groups here.",
            "",
        ]
    lines += ["Groups whose members carry different labels (at least one label in each is wrong for its image):", ""]
    lines += [_table(["head", "conflicting groups"], [[h, len(result.conflicts[h])] for h in HEADS]), ""]
    by_id = frame.set_index("id")
    structural: list[list[str]] = []
    other: list[list[str]] = []
    for group in sorted({tuple(g) for h in HEADS for g in result.conflicts[h]}):
        heads = [h for h in HEADS if list(group) in result.conflicts[h]]
        row = [
            " / ".join(map(str, group)),
            ", ".join(heads),
            "; ".join(f"{i}: " + ", ".join(f"{by_id.loc[i, h]}" for h in heads) for i in group),
        ]
        (structural if {"masterCategory", "subCategory", "articleType"} & set(heads) else other).append(row)
    header = ["ids", "heads that disagree", "labels"]
    if structural:
        lines += [
            "Groups that disagree on the category (masterCategory, subCategory or articleType):",
            "",
            _table(header, structural),
            "",
        ]
    if other:
        lines += [
            f"<details><summary>{len(other)} groups that disagree only on gender, baseColour or season</summary>",
            "",
            _table(header, other),
            "",
            "</details>",
            "",
        ]
    lines += ["## Split", ""]
    if result.split_counts is None or result.crossing_groups is None:
        lines += ["No split file given (`--split-file`).", ""]
    else:
        total = sum(result.split_counts.values())
        lines += [
            f"`{_shown(split_file)}`: "
            + ", ".join(f"{s} {n:,} ({n / max(1, total):.1%})" for s, n in result.split_counts.items())
            + f". Images of this folder not in the split file: {int(frame['split'].isna().sum())}. "
            f"Pixel-identical groups that cross splits: **{len(result.crossing_groups)}**"
            + (f" ({result.crossing_groups[:10]})" if result.crossing_groups else "")
            + ".",
            "",
            "![split sizes](split_sizes.png)",
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_eda(
    data_dir: str | Path, out_dir: str | Path, split_file: str | Path | None = None, progress: bool = False
) -> EdaResult:
    """Analyse ``data_dir`` and write the PNGs and report.md into ``out_dir``."""
    data_dir, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame, report = load_dataset(data_dir)
    scan = scan_images(frame, progress=progress)
    report.unreadable_images = sorted(scan.unreadable)
    frame = frame[~frame["id"].isin(scan.unreadable)].reset_index(drop=True)
    groups = duplicate_groups(scan.rgb_hash)
    conflicts = label_conflicts(frame, groups)

    split_counts = crossing = None
    if split_file is not None:
        frame = frame.merge(read_split(split_file), on="id", how="left")
        split_counts = {s: int((frame["split"] == s).sum()) for s in SPLITS}
        side = dict(zip(frame["id"], frame["split"]))
        crossing = [g for g in groups if len({side.get(i) for i in g}) > 1]

    files: list[Path] = []
    plot_class_counts(frame, out, files)
    plot_long_tail(frame, out, files)
    plot_missing(missing_per_column(frame), len(frame), out, files)
    plot_imbalance(imbalance(frame), out, files)
    plot_duplicates(groups, conflicts, out, files)
    if split_file is not None:
        plot_split(frame, out, files)
    result = EdaResult(report, frame, scan, groups, conflicts, split_counts, crossing, files)
    files.append(write_report(result, data_dir, out, Path(split_file) if split_file else None))
    return result
