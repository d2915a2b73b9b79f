"""fashion-train: fit the six-head model (CPU or GPU recipe) and evaluate bundles."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

DEFAULT_SPLIT = "data/splits/fashion-product-images.csv"


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
        return height, width
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected HEIGHTxWIDTH, e.g. 128x96") from None


def _load(data: str, split_file: str | None):
    from fashion.data.dataset import load_dataset
    from fashion.data.labels import build_vocabularies
    from fashion.data.split import attach_split, read_split

    frame, report = load_dataset(data)
    click.echo(report.summary(), err=True)
    vocab = build_vocabularies(frame)
    if split_file:
        frame = attach_split(frame, read_split(split_file))
    return frame, vocab, report


@click.group()
def main():
    """Train and evaluate the six-head EfficientNetB0 fashion classifier."""


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Kaggle-layout folder.")
@click.option("--split", "split_file", default=DEFAULT_SPLIT, show_default=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(), help="Bundle directory to write.")
@click.option("--recipe", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--size", "sizes", multiple=True, default=["128x96"], show_default=True,
              help="Input HEIGHTxWIDTH; the GPU recipe accepts several and bundles the first.")
@click.option("--weights", default=None, help="ImageNet notop .weights.h5 (default: $FASHION_EFFICIENTNET_WEIGHTS, "
              "../shared/weights, then Keras's download).")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--learning-rate", default=5e-4, show_default=True)
@click.option("--label-smoothing", default=0.1, show_default=True)
@click.option("--class-weights", default="", help="Comma-separated heads to weight by count^-0.5, e.g. articleType,baseColour.")
@click.option("--gpu-seconds", default=None, type=float, help="GPU recipe: wall-clock seconds per size (time-based cosine).")
@click.option("--work-dir", default=None, type=click.Path(), help="Checkpoints and logs (default: runs/<bundle name>).")
@click.option("--cache-dir", default="cache", show_default=True, type=click.Path(), help="CPU recipe activation cache.")
@click.option("--cut-layer", default="block5c_add", show_default=True,
              help="CPU recipe: layers above this one are fine-tuned on its cached activations.")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last checkpoint.")
@click.option("--backbone", type=click.Choice(["efficientnetb0", "tiny"]), default="efficientnetb0", hidden=True)
def fit(data, split_file, out, recipe, sizes, weights, epochs, batch_size, learning_rate, label_smoothing,
        class_weights, gpu_seconds, work_dir, cache_dir, cut_layer, resume, backbone):
    """Train on the split's train part, select on val, and write a bundle."""
    from fashion.data.labels import hierarchy

    from .arrays import split_frame
    from .bundle_io import write_bundle
    from .evaluate import evaluate_frame, format_table
    from .model import resolve_weights

    frame, vocab, report = _load(data, split_file)
    weights = resolve_weights(weights) if backbone != "tiny" else None
    height, width = _parse_size(sizes[0])
    work = Path(work_dir or Path("runs") / Path(out).name)
    if recipe == "cpu":
        from .cpu_recipe import CpuRecipeConfig, run_cpu_recipe

        config = CpuRecipeConfig(height=height, width=width, epochs=epochs,
                                 cut_layer="stem_activation" if backbone == "tiny" else cut_layer, batch_size=batch_size,
                                 learning_rate=learning_rate, label_smoothing=label_smoothing,
                                 class_weight_heads=[h for h in class_weights.split(",") if h])
        model = run_cpu_recipe(frame, vocab, weights, work, config, cache_dir, resume=resume, backbone=backbone)
        training = {"recipe": "cpu", **asdict(config)}
    else:
        model, training = _fit_gpu(data, split_file, vocab, weights, [_parse_size(s) for s in sizes], work,
                                   epochs, batch_size, learning_rate, label_smoothing, gpu_seconds)
    val = split_frame(frame, "val")
    metrics = {"val": evaluate_frame(model, val, vocab, name="val")}
    click.echo(format_table(metrics["val"]))
    train_rows = frame[frame["split"] == "train"]
    training.update({"weights": str(weights), "train_images": int(len(train_rows)), "data": str(data),
                     "loader_report": {k: v for k, v in report.to_dict().items() if not isinstance(v, list)}})
    path = write_bundle(out, model, vocab, hierarchy(train_rows), training, metrics, split_file)
    click.echo(f"bundle written to {path}")
    log_csv = work / ("phase2" if recipe == "cpu" else f"{height}x{width}") / "log.csv"
    if log_csv.exists():
        from .finetune import plot_training_curves

        plot_training_curves(log_csv, work / "training_curves.png")
        click.echo(f"training curves: {work / 'training_curves.png'}")


def _fit_gpu(data, split_file, vocab, weights, sizes, work, epochs, batch_size, learning_rate, label_smoothing,
             gpu_seconds):
    import keras

    from .gpu_recipe import run_gpu_recipe
    from .model import build_model

    labels_file = work / "labels.json"
    work.mkdir(parents=True, exist_ok=True)
    labels_file.write_text(json.dumps(vocab))
    results = run_gpu_recipe(data, split_file, str(labels_file), weights, sizes, str(work), epochs=epochs,
                             batch_size=batch_size, learning_rate=learning_rate, label_smoothing=label_smoothing,
                             seconds_per_size=[gpu_seconds] * len(sizes) if gpu_seconds else None)
    keras.mixed_precision.set_global_policy("float32")
    height, width = sizes[0]
    model = build_model({h: len(c) for h, c in vocab.items()}, height, width, weights=None)
    model.load_weights(str(work / f"{height}x{width}" / "final.weights.h5"))
    return model, {"recipe": "gpu", "sizes": [f"{h}x{w}" for h, w in sizes], "results": results}


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Kaggle-layout folder.")
@click.option("--split", "split_file", default=None, type=click.Path(exists=True),
              help="Split file (id,split); omit to evaluate every image in --data.")
@click.option("--subset", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--out", default=None, type=click.Path(), help="Report directory (metrics.json, PNGs).")
@click.option("--record", is_flag=True, help="Also store the metrics in the bundle manifest.")
def evaluate(bundle, data, split_file, subset, out, record):
    """Accuracy, macro-F1 and top-3 per head, confusion matrices and a sample grid."""
    from fashion.runtime.bundle import load_manifest

    from .arrays import split_frame
    from .bundle_io import load_keras_model, update_metrics
    from .evaluate import evaluate_frame, format_table

    manifest = load_manifest(bundle)
    frame, _, _ = _load(data, split_file)
    name = subset if split_file else Path(data).name
    if split_file:
        frame = split_frame(frame, subset)
    model = load_keras_model(bundle)
    metrics = evaluate_frame(model, frame, manifest.labels, out, name=name, hierarchy=manifest.hierarchy)
    click.echo(format_table(metrics))
    if record:
        update_metrics(bundle, name, {k: v for k, v in metrics.items() if k != "top_confusions"})


if __name__ == "__main__":
    main()
