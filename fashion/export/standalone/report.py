"""results/standalone.{json,md}: the gate's table and batch-1 latency, runtime vs standalone, per photo size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.manifest import ArtifactEntry
from fashion.runtime.timing import median_ms

from .gate import open_standalone
from .graph import FILE


def measure_latency(
    bundle_dir: Path, paths: list[Path], sizes: list[tuple[int, int] | None], threads: int = 1, rounds: int = 3
) -> dict[str, Any]:
    """Batch-1 median latency from a decoded photo to probabilities: runtime vs standalone, per photo size.

    Runtime: Pillow pad + resize (fashion.runtime.preprocess) then the FP32 ONNX; standalone: the pixels as
    they are. Decoding is left out of both. The two take turns photo by photo, so load from other processes
    on a shared machine slows both alike.
    """
    from PIL import Image

    from fashion.runtime import Classifier
    from fashion.runtime.preprocess import fit_to_input, load_image

    table: dict[str, Any] = {"threads": threads, "rounds": rounds, "photos": len(paths), "sizes": {}}
    with Classifier.load(bundle_dir, precision="fp32", threads=threads) as classifier:
        height, width = classifier.input_size
        standalone = open_standalone(Path(bundle_dir) / FILE, list(classifier.heads), threads)
        for size in sizes:
            photos = [load_image(p) for p in paths]
            if size:
                photos = [photo.resize(size, Image.Resampling.BICUBIC) for photo in photos]
            calls = {
                "runtime": lambda pair: classifier.infer(fit_to_input(pair[0], height, width)[None].astype(np.float32)),
                "standalone": lambda pair: standalone.infer(pair[1]),
            }
            pairs = [(photo, np.asarray(photo)[None]) for photo in photos]
            label = "as is" if size is None else f"{size[0]}x{size[1]}"
            medians = median_ms(calls, pairs, rounds=rounds)
            table["sizes"][label] = {key: round(value, 3) for key, value in medians.items()}
        standalone.close()
    return table


def write_report(
    entry: ArtifactEntry, out_dir: Path, command: str, latency: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """results/standalone.{json,md}: the gate's agreement/accuracy table for photos as they are and upscaled."""
    from fashion.runtime.bundle import atomic_write_json

    gate = entry.extra["gate"]
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "standalone.json", out_dir / "standalone.md"
    atomic_write_json(
        json_path,
        {
            "command": command,
            "artifact": {"file": entry.file, "sha256": entry.sha256, "bytes": entry.bytes},
            "source": entry.extra["source"],
            "gate": gate,
            "latency_ms_batch1": latency,
        },
    )
    lines = [
        "# Standalone model vs the Python runtime",
        "",
        f"`{entry.file}` ({(entry.bytes or 0) / 1e6:.1f} MB, sha256 `{entry.sha256[:16]}…`): uint8 pixels of the "
        "decoded photo in, pad + antialiased resize inside the graph, then the FP32 network. Reference: "
        f"{gate['reference']}, on the same decoded photos.",
        "",
        f"Gate: per head, top-1 agreement >= {gate['min_top1_agreement']:.1%} and accuracy within "
        f"{gate['max_accuracy_delta_pp']:g} pp, on every set. Result: **passed** (a refused model is not written).",
        "",
        f"Command: `{command}`",
        "",
    ]
    for name, measured in gate["sets"].items():
        size = f", upscaled to {measured['upscaled_to']} (Pillow bicubic)" if measured.get("upscaled_to") else ""
        note = f"; {measured['note']}" if measured.get("note") else ""
        lines += [
            f"## {name}: {measured['images']} photos{size}{note}",
            "",
            "| head | top-1 agreement | accuracy (runtime) | accuracy (standalone) | difference (pp) | "
            "max abs diff (prob.) |",
            "|---|---|---|---|---|---|",
        ]
        for head, row in measured["heads"].items():
            a, b, delta = row["accuracy_runtime"], row["accuracy_standalone"], row["accuracy_delta_pp"]
            shown_delta = "n/a" if delta is None else f"{delta:+.2f}"
            lines.append(
                f"| {head} | {row['top1_agreement']:.2%} | {_pct(a)} | {_pct(b)} | {shown_delta} | "
                f"{row['max_abs_diff']:.2e} |"
            )
        lines.append("")
    if latency:
        lines += [
            f"## Batch-1 latency, decoded photo to probabilities ({latency['threads']} thread(s), median of "
            f"{latency['photos']} photos x {latency['rounds']})",
            "",
            "Runtime: Pillow pad + resize, then the FP32 ONNX; standalone: the photo's pixels as they are. "
            "Both in ONNX Runtime on this machine's CPU, taking turns photo by photo.",
            "",
            "| photo size | runtime (ms) | standalone (ms) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {size} | {row['runtime']:.2f} | {row['standalone']:.2f} |" for size, row in latency["sizes"].items()
        ]
        lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return json_path, md_path


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
