"""``fashion-predict``: predict the six attributes of product photos from the command line.

    fashion-predict models/fashion-effnetb0 shirt.jpg photos/ --format csv --output predictions.csv

Directories are searched recursively for images. Every input gets a row; inputs that cannot be
read get an error instead of a prediction, and the exit status is 1 when any input failed.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from .classifier import Classifier
from .errors import FashionError
from .results import BatchItem

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files as given (so a bad one is reported), directories replaced by the images inside them."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def to_json(items: list[BatchItem]) -> str:
    return json.dumps([item.to_dict() for item in items], indent=2) + "\n"


def to_csv(items: list[BatchItem], heads: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", "error"] + [f"{h}{suffix}" for h in heads for suffix in ("", "_confidence")])
    for item in items:
        row = [item.source, item.error or ""]
        for head in heads:
            if item.prediction is None:
                row += ["", ""]
            else:
                p = item.prediction.heads[head]
                row += [p.label, f"{p.confidence:.6f}"]
        writer.writerow(row)
    return buffer.getvalue()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes listed per head.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True)
@click.option("--provider", "providers", multiple=True,
              help="ONNX Runtime provider (cpu, cuda, tensorrt); repeat to give a preference order.")
@click.option("--allow-fallback", is_flag=True, help="Run on the CPU if the requested provider is unavailable.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: all cores).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--consistent", is_flag=True,
              help="Decode masterCategory/subCategory/articleType as a combination seen in training.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write here instead of standard output.")
def main(bundle, inputs, fmt, top_k, backend, precision, providers, allow_fallback, threads, batch_size,
         consistent, output):
    """Predict gender, categories, article type, colour and season for images in INPUTS (files or folders)."""
    paths = expand_inputs(list(inputs))
    if not paths:
        raise click.UsageError("no images found in the given inputs")
    try:
        clf = Classifier.load(bundle, backend=backend, precision=precision, providers=list(providers) or None,
                              threads=threads, allow_fallback=allow_fallback)
    except (FashionError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    items: list[BatchItem] = []
    with clf, tqdm(total=len(paths), unit="img", desc="predicting", file=sys.stderr,
                   disable=len(paths) < 2) as progress:
        for first in range(0, len(paths), batch_size):
            chunk = paths[first : first + batch_size]
            items += clf.predict_batch(chunk, batch_size=batch_size, top_k=top_k, consistent=consistent)
            progress.update(len(chunk))
        heads = clf.heads

    text = to_json(items) if fmt == "json" else to_csv(items, heads)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    failed = [item for item in items if not item.ok]
    for item in failed:
        click.echo(f"failed: {item.error}", err=True)
    if failed:
        click.echo(f"{len(failed)} of {len(items)} inputs failed", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
