"""The standalone model's gate: top-1 agreement and accuracy against the Python runtime, per head and photo set.

On the test split, and on the same photos upscaled to 1080x1440 (where resize filters differ), the
standalone model's top-1 must agree with the Python runtime (Pillow preprocessing + FP32 ONNX) on at
least ``gates.STANDALONE_MIN_AGREEMENT`` of photos per head, and its accuracy must stay within
``gates.STANDALONE_MAX_ACCURACY_DELTA_PP`` of the runtime's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.bundle import Bundle

from ..errors import ExportError
from .graph import BATCH, FEATURE_MAP, FORMAT, INPUT, UPSCALED_SIZE


@dataclass
class GateSet:
    """Photos of one gate set: their files, labels per head (-1 unknown) and an optional upscale size."""

    name: str
    paths: list[Path]
    labels: dict[str, np.ndarray]
    upscale: tuple[int, int] | None = None  # (width, height)
    note: str = ""


def open_standalone(path: str | Path, heads: list[str], threads: int | None = None) -> Any:
    """The standalone model opened with the runtime's ONNX Runtime backend (CPU); ``infer(pixels)`` takes uint8."""
    from fashion.runtime.backends import get_backend
    from fashion.runtime.manifest import ArtifactEntry

    fields = {"format": FORMAT, "input": INPUT, "outputs": {head: head for head in heads}, "feature_map": FEATURE_MAP}
    return get_backend("onnxruntime").open(
        Path(path), ArtifactEntry.for_file(path, fields), providers=["cpu"], threads=threads
    )


def _photos(gate_set: GateSet) -> Iterator[tuple[int, np.ndarray]]:
    """(index, decoded RGB uint8 array) of every readable photo, upscaled when the set asks for it."""
    from PIL import Image

    from fashion.runtime.errors import InvalidImageError
    from fashion.runtime.preprocess import load_image

    for index, path in enumerate(gate_set.paths):
        try:
            image = load_image(path)
        except InvalidImageError:
            continue
        if gate_set.upscale:
            image = image.resize(gate_set.upscale, Image.Resampling.BICUBIC)
        yield index, np.asarray(image, dtype=np.uint8)


def _batches(gate_set: GateSet, size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """Photos grouped by pixel size (one standalone call takes photos of one size)."""
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for index, array in _photos(gate_set):
        group = pending.setdefault(array.shape, [])
        group.append((index, array))
        if len(group) == size:
            yield [i for i, _ in group], np.stack([a for _, a in group])
            del pending[array.shape]
    for group in pending.values():
        yield [i for i, _ in group], np.stack([a for _, a in group])


def measure(
    classifier: Any,
    standalone: Any,
    gate_set: GateSet,
    heads: list[str],
    advance: Callable[[int], Any] = lambda _: None,
) -> dict[str, Any]:
    """Top-1 agreement and accuracy of the ``standalone`` backend vs the runtime ``classifier`` on one set.

    Both see the same decoded photo: the runtime pads and resizes it with Pillow, the standalone model
    inside its graph. ``advance(n)`` is called after each batch of ``n`` photos (a progress bar).
    """
    from PIL import Image

    from fashion.metrics import compare_outputs
    from fashion.runtime.preprocess import fit_to_input, to_batch

    from ..gates import head_accuracy

    height, width = classifier.input_size
    reference: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    candidate: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    kept: list[int] = []
    for indices, pixels in _batches(gate_set, BATCH):
        expected = classifier.infer(to_batch([fit_to_input(Image.fromarray(p), height, width) for p in pixels]))
        got = standalone.infer(pixels)
        for head in heads:
            reference[head].append(expected[head])
            candidate[head].append(got[head])
        kept += indices
        advance(len(indices))
    if not kept:
        raise ExportError(f"standalone gate set {gate_set.name}: no readable photos")
    ref = {head: np.concatenate(chunks) for head, chunks in reference.items()}
    cand = {head: np.concatenate(chunks) for head, chunks in candidate.items()}
    labels = {head: np.asarray(gate_set.labels[head])[kept] for head in heads}
    agreement = compare_outputs(ref, cand, heads)
    acc_ref, acc_cand = head_accuracy(ref, labels, heads), head_accuracy(cand, labels, heads)
    rows = {}
    for head in heads:
        a, b = acc_ref[head]["accuracy"], acc_cand[head]["accuracy"]
        rows[head] = {
            "top1_agreement": agreement[head].top1_agreement,
            "max_abs_diff": agreement[head].max_abs_diff,
            "accuracy_runtime": a,
            "accuracy_standalone": b,
            "labelled": acc_ref[head]["n"],
            "accuracy_delta_pp": None if a is None or b is None else round((b - a) * 100, 4),
        }
    result: dict[str, Any] = {"images": len(kept), "heads": rows}
    if gate_set.upscale:
        result["upscaled_to"] = f"{gate_set.upscale[0]}x{gate_set.upscale[1]}"
    if gate_set.note:
        result["note"] = gate_set.note
    return result


def judge(
    sets: dict[str, dict[str, Any]], min_agreement: float | None = None, max_delta_pp: float | None = None
) -> Any:
    """The gate's verdict over every measured set (thresholds from fashion.export.gates by default)."""
    from .. import gates

    min_agreement = gates.STANDALONE_MIN_AGREEMENT if min_agreement is None else min_agreement
    max_delta_pp = gates.STANDALONE_MAX_ACCURACY_DELTA_PP if max_delta_pp is None else max_delta_pp
    problems = []
    for name, measured in sets.items():
        for head, row in measured["heads"].items():
            if row["top1_agreement"] < min_agreement:
                problems.append(f"{name}/{head}: top-1 agreement {row['top1_agreement']:.2%} < {min_agreement:.2%}")
            delta = row["accuracy_delta_pp"]
            if delta is not None and abs(delta) > max_delta_pp:
                problems.append(f"{name}/{head}: accuracy differs by {delta:+.2f} pp (limit {max_delta_pp:g} pp)")
    record = {
        "reference": "Python runtime (fashion.runtime preprocessing with Pillow + onnx_fp32)",
        "min_top1_agreement": min_agreement,
        "max_accuracy_delta_pp": max_delta_pp,
        "sets": sets,
    }
    lowest = min((r["top1_agreement"] for m in sets.values() for r in m["heads"].values()), default=1.0)
    summary = (
        "; ".join(problems)
        if problems
        else (
            f"top-1 agreement with the runtime >= {lowest:.2%} on "
            + ", ".join(f"{name} ({m['images']} photos)" for name, m in sets.items())
        )
    )
    return gates.Verdict(not problems, record, summary)


def run_gate(
    bundle_dir: Path,
    model_path: Path,
    sets: list[GateSet],
    log: Callable[[str], None] = print,
    threads: int | None = None,
    progress: bool = True,
) -> Any:
    """Measure every set against the runtime and judge; returns a fashion.export.gates.Verdict.

    ``progress``: a bar per set on stderr (photos done, rate, time left); the gate takes about a minute per
    4,000 photos on two cores.
    """
    from tqdm import tqdm

    from fashion.runtime import Classifier

    measured = {}
    with Classifier.load(bundle_dir, precision="fp32", threads=threads) as classifier:
        standalone = open_standalone(model_path, list(classifier.heads), threads)
        try:
            for gate_set in sets:
                size = f" upscaled to {gate_set.upscale[0]}x{gate_set.upscale[1]}" if gate_set.upscale else ""
                log(f"standalone gate: {gate_set.name}: {len(gate_set.paths)} photos{size}")
                with tqdm(
                    total=len(gate_set.paths),
                    desc=f"standalone gate {gate_set.name}",
                    unit="photo",
                    disable=not progress,
                    leave=False,
                ) as bar:
                    measured[gate_set.name] = measure(
                        classifier, standalone, gate_set, list(classifier.heads), advance=bar.update
                    )
        finally:
            standalone.close()
    return judge(measured)


def gate_sets(
    bundle: Bundle,
    data_dir: str | Path | None = None,
    split_file: str | Path | None = None,
    subset: str = "test",
    limit: int = 0,
    upscaled_limit: int = 0,
) -> list[GateSet]:
    """The photos of ``subset`` as they are, and (a seeded subset of) the same photos upscaled to 1080x1440."""
    from fashion.data.cli_options import DataChoice
    from fashion.data.images import LabelledData, seeded_subset

    choice = DataChoice(
        data_dir=Path(data_dir) if data_dir is not None else None,
        split_file=Path(split_file) if split_file is not None else None,
    ).with_bundle(bundle)
    split = choice.resolved_split_file()  # --split-file, else the bundle's, else the committed default
    data = LabelledData.open(choice.resolved_data_dir(), split, bundle.labels, bundle.input_size)
    positions = data.select(subset, limit or None)
    if not len(positions):
        raise ExportError(f"no {subset} photos in {split}")
    paths = [Path(p) for p in data.frame["path"].to_numpy()[positions]]
    labels = {head: values[positions] for head, values in data.labels.items()}
    note = "" if not limit or data.count(subset) <= limit else f"seeded subset of {len(positions)} {subset} photos"
    original = GateSet(subset, paths, labels, note=note)
    chosen = np.flatnonzero(np.isin(positions, seeded_subset(positions, upscaled_limit or None)))
    note = "" if len(chosen) == len(positions) else f"seeded subset of {len(chosen)} of the {len(positions)} photos"
    upscaled = GateSet(
        f"{subset}_{UPSCALED_SIZE[0]}x{UPSCALED_SIZE[1]}",
        [paths[i] for i in chosen],
        {head: values[chosen] for head, values in labels.items()},
        upscale=UPSCALED_SIZE,
        note=note,
    )
    return [original, upscaled]
