"""Robustness suite: one or more bundles scored per head on the split and on its named shifts, side by side.

Sets (``fashion.data.evalsets``): the split's thumbnails, the sharp copies of its ids (with the thumbnails
of the same ids for a paired comparison), the thumbnails under named shifts (background, framing, aspect,
blur, JPEG quality) and other shops' photos. Each bundle runs through the runtime (``Classifier``: the
artifact ``precision`` picks; ``backend="keras"`` scores a bundle's Keras model through the same seam).
Results are written as JSON and Markdown after every bundle, so a long run keeps what it measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashion.metrics import accuracy
from fashion.metrics.accuracy import rank
from fashion.runtime.classifier import Classifier

from .system import machine_summary

#: Heads whose macro-F1 the report shows beside the accuracy (the long-tailed ones).
F1_HEADS = ("articleType", "baseColour")
BATCH = 64


@dataclass
class RobustnessConfig:
    bundles: list[str]
    data: str | None = None
    split_file: str | None = None
    split: str = "test"
    sharp: str | None = None
    other_shops: str | None = None
    shifts: Sequence[str] | None = None  # None: every shift in fashion.data.evalsets.SHIFTS
    precision: str = "auto"  # or fp32/fp16/int8, or "keras" (the bundle's Keras model, e.g. before export)
    backend: str = "auto"
    limit: int | None = None
    threads: int | None = None
    names: list[str] = field(default_factory=list)  # display names of the bundles (default: folder names)


def _frame(config: RobustnessConfig, bundle) -> tuple[Any, dict[str, Any]]:
    """The split's rows: ``--split-file``, else the split file ``bundle`` (the first one) recorded, else the default."""
    from fashion.data.cli_options import DataChoice
    from fashion.data.dataset import load_dataset
    from fashion.data.images import seeded_subset
    from fashion.data.split import attach_split, read_split

    choice = DataChoice(
        data_dir=Path(config.data) if config.data is not None else None,
        split_file=Path(config.split_file) if config.split_file is not None else None,
        split=config.split,
        limit=config.limit,
    ).with_bundle(bundle)
    data_dir, split_file = choice.resolved_data_dir(), choice.resolved_split_file()
    frame, _ = load_dataset(data_dir)
    frame = attach_split(frame, read_split(split_file))
    rows = frame[frame["split"] == config.split].sort_values("id").reset_index(drop=True)
    if config.limit:
        rows = rows.iloc[seeded_subset(np.arange(len(rows)), config.limit)].reset_index(drop=True)
    return rows, {"data": Path(data_dir).name, "split_file": Path(split_file).name, "split": config.split}


def _load(bundle_dir: str, config: RobustnessConfig) -> Classifier:
    """The runtime's classifier; ``precision="keras"`` runs the bundle's Keras model through the Keras backend
    (a bundle straight out of training, before export)."""
    if config.precision != "keras":
        return Classifier.load(bundle_dir, backend=config.backend, precision=config.precision, threads=config.threads)
    from fashion.runtime.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    engine = Classifier._open(bundle, "keras", {"threads": config.threads})
    return Classifier(bundle, engine, "keras", config.threads)


def score_set(clf: Classifier, images) -> dict[str, Any]:
    """Per head: accuracy (and macro-F1 for the long-tailed heads) of ``clf`` on decoded ``images``."""
    heads = clf.heads
    outputs: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    batch = images.batch()
    for start in range(0, len(batch), BATCH):
        probs = clf.infer(batch[start : start + BATCH])
        for head in heads:
            outputs[head].append(np.asarray(probs[head]))
    result: dict[str, Any] = {"n": len(images)}
    for head in heads:
        scores = accuracy.head_scores(images.labels[head], rank(np.concatenate(outputs[head])))
        result[head] = {"n": scores["n"], "accuracy": scores["accuracy"]}
        if head in F1_HEADS:
            result[head]["macro_f1"] = scores["macro_f1"]
    return result


def run_robustness(config: RobustnessConfig, out_json: Path | None = None, out_md: Path | None = None, log=print):
    """Score every bundle on every set; write the JSON/Markdown after each bundle. Returns the result dict."""
    from fashion.data.evalsets import SHIFTS, evaluation_sets, load_set

    result: dict[str, Any] = {"machine": machine_summary(), "sets": {}, "bundles": {}}
    decoded: dict[tuple[str, Any], Any] = {}  # (set name, preprocessor) -> images, shared by bundles alike
    frame = None  # the first bundle's split, scored by every bundle (as fashion-bench --baseline does)
    for position, bundle_dir in enumerate(config.bundles):
        name = config.names[position] if position < len(config.names) else Path(bundle_dir).name
        if name in result["bundles"]:  # e.g. a bundle against its own copy: keep both columns
            name = f"{name} (baseline)"
        clf = _load(bundle_dir, config)
        if frame is None:
            frame, result["source"] = _frame(config, clf.bundle)
        sets = evaluation_sets(
            frame,
            clf.preprocessor,
            clf.heads,
            sharp=config.sharp,
            other_shops=config.other_shops,
            shifts=tuple(SHIFTS) if config.shifts is None else tuple(config.shifts),
        )
        entry: dict[str, Any] = {"bundle": str(bundle_dir), "artifact": clf.artifact, "sets": {}}
        began = time.perf_counter()
        for evalset in sets:
            key = (evalset.name, evalset.preprocessor)
            if key not in decoded:
                decoded[key] = load_set(evalset, clf.bundle.labels)
            images = decoded[key]
            entry["sets"][evalset.name] = score_set(clf, images)
            result["sets"][evalset.name] = {"note": evalset.note, "images": len(images)}
            log(f"{name} {evalset.name}: {_brief(entry['sets'][evalset.name], clf.heads)}")
        entry["seconds"] = round(time.perf_counter() - began, 1)
        result["bundles"][name] = entry
        _write(result, out_json, out_md)
    return result


def _brief(scores: dict[str, Any], heads: Sequence[str]) -> str:
    return " ".join(f"{h[:6]} {_fmt(scores[h]['accuracy'])}" for h in heads)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _write(result: dict[str, Any], out_json: Path | None, out_md: Path | None) -> None:
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    if out_md is not None:
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(render_markdown(result))


def render_markdown(result: dict[str, Any]) -> str:
    """One table per bundle (accuracy per head per set, deltas to the thumbnail row in pp), then new - old."""
    cpu = result.get("machine", {}).get("cpu", {})
    lines = [
        "# Robustness: accuracy per head on the split and its shifts",
        "",
        f"Machine: {cpu.get('model', '?')}; generated by `fashion.benchmarks.robustness` "
        f"(command in results/README.md). Source: {json.dumps(result.get('source', {}))}.",
        "",
    ]
    names = list(result["bundles"])
    for name in names:
        entry = result["bundles"][name]
        sets = entry["sets"]
        heads = [h for h in next(iter(sets.values())) if h != "n"]
        lines += [f"## {name} ({entry['artifact']})", ""]
        lines.append("| set | n | " + " | ".join(heads) + " | articleType mF1 | baseColour mF1 |")
        lines.append("|---|---|" + "---|" * (len(heads) + 2))
        base = sets.get("thumbnail")
        for set_name, scores in sets.items():
            cells = []
            for head in heads:
                value = scores[head]["accuracy"]
                cell = _fmt(value)
                reference = base[head]["accuracy"] if base and set_name != "thumbnail" else None
                if value is not None and reference is not None and set_name not in ("sharp",):
                    cell += f" ({100 * (value - reference):+.1f})"
                cells.append(cell)
            f1 = [_fmt(scores.get(h, {}).get("macro_f1"), 3) for h in F1_HEADS]
            lines.append(f"| {set_name} | {scores['n']} | " + " | ".join(cells) + " | " + " | ".join(f1) + " |")
        if "sharp" in sets and "thumbnail@sharp-ids" in sets:
            pair = [
                f"{h} {100 * (sets['sharp'][h]['accuracy'] - sets['thumbnail@sharp-ids'][h]['accuracy']):+.1f}"
                for h in heads
                if sets["sharp"][h]["accuracy"] is not None
            ]
            lines += ["", "Sharp copies minus the thumbnails of the same ids (pp): " + ", ".join(pair) + "."]
        lines.append("")
    if len(names) >= 2:
        new, old = names[0], names[1]
        new_sets, old_sets = result["bundles"][new]["sets"], result["bundles"][old]["sets"]
        heads = [h for h in next(iter(new_sets.values())) if h != "n"]
        lines += [f"## {new} minus {old} (accuracy, pp)", "", "| set | " + " | ".join(heads) + " |"]
        lines.append("|---|" + "---|" * len(heads))
        for set_name in new_sets:
            if set_name not in old_sets:
                continue
            cells = []
            for head in heads:
                a, b = new_sets[set_name][head]["accuracy"], old_sets[set_name][head]["accuracy"]
                cells.append("-" if a is None or b is None else f"{100 * (a - b):+.1f}")
            lines.append(f"| {set_name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Numbers in parentheses: percentage points against the thumbnail row of the same bundle.")
    return "\n".join(lines) + "\n"


__all__ = ["RobustnessConfig", "render_markdown", "run_robustness", "score_set"]
