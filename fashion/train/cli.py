"""fashion-train: fit the six-head model (CPU or GPU recipe), evaluate bundles, check a GPU machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fashion.data import paths
from fashion.data.cli_options import DataChoice, data_options
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from .data import build_train_data  # noqa: F401 - moved to train/data.py; re-exported for old imports
from .data import load_frame as _load
from .errors import TrainError

DEFAULT_SPLIT = str(paths.DEFAULT_SPLIT)
RECIPES = ("cpu", "gpu")
DATA_HELP = "Kaggle-layout folder."


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected HEIGHTxWIDTH, e.g. 128x96") from None
    if height < 16 or width < 16:
        raise click.BadParameter(f"{text!r}: height and width must be at least 16")
    return height, width


@run_cli
@click.group(context_settings=CONTEXT_SETTINGS)
def main():
    """Train and evaluate the six-head EfficientNetB0 fashion classifier."""


@main.command(context_settings=CONTEXT_SETTINGS)
@data_options(
    data="required",
    data_help=DATA_HELP,
    split_file_default=DEFAULT_SPLIT,
    limit=True,
    limit_help="Train on a seeded subset of this many training images (a first run in minutes).",
)
@click.option("--out", required=True, type=click.Path(), help="Bundle directory to write.")
@click.option("--recipe", type=click.Choice(RECIPES), default="cpu", show_default=True)
@click.option(
    "--size",
    "sizes",
    multiple=True,
    default=["128x96"],
    show_default=True,
    help="Input HEIGHTxWIDTH; the GPU recipe accepts several and bundles the first.",
)
@click.option(
    "--weights",
    default=None,
    help="ImageNet notop .weights.h5 (default: $FASHION_EFFICIENTNET_WEIGHTS, "
    "../shared/weights, then Keras's download).",
)
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--learning-rate", default=5e-4, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--label-smoothing", default=0.1, show_default=True, type=click.FloatRange(0, 1))
@click.option(
    "--class-weights", default="", help="Comma-separated heads to weight by count^-0.5, e.g. articleType,baseColour."
)
@click.option(
    "--gpu-seconds",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="GPU recipe: training seconds per size (time-based cosine; compilation not counted).",
)
@click.option(
    "--devices",
    default="1",
    show_default=True,
    help="GPU recipe: number of devices to train on data-parallel, or 'all' (JAX backend).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="GPU recipe: mixed bfloat16 (auto: on an accelerator).",
)
@click.option("--work-dir", default=None, type=click.Path(), help="Checkpoints and logs (default: runs/<bundle name>).")
@click.option("--cache-dir", default="cache", show_default=True, type=click.Path(), help="CPU recipe activation cache.")
@click.option(
    "--cut-layer",
    default="block5c_add",
    show_default=True,
    help="CPU recipe: layers above this one are fine-tuned on its cached activations.",
)
@click.option("--resume", is_flag=True, help="Continue a killed run from its last checkpoint.")
@click.option(
    "--sharp",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of sharper copies by id (e.g. fashion-product-images-sharp): added to the training images.",
)
@click.option(
    "--augment",
    type=click.Choice(["default", "robust"]),
    default="default",
    show_default=True,
    help="GPU recipe: augmentation (robust adds aspect jitter, a wider zoom and random blur).",
)
@click.option(
    "--init-from",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="GPU recipe: start from this trained bundle's weights instead of ImageNet's (same labels and size).",
)
@click.option("--backbone", type=click.Choice(["efficientnetb0", "tiny"]), default="efficientnetb0", hidden=True)
def fit(
    data_choice: DataChoice,
    out,
    recipe,
    sizes,
    weights,
    epochs,
    batch_size,
    learning_rate,
    label_smoothing,
    class_weights,
    gpu_seconds,
    devices,
    precision,
    work_dir,
    cache_dir,
    cut_layer,
    resume,
    sharp,
    augment,
    init_from,
    backbone,
):
    """Train on the split's train part, select on val, and write a bundle."""
    from fashion.data.paths import resolve_weights

    data, split_file, limit = str(data_choice.data_dir), str(data_choice.split_file), data_choice.limit
    heads = [h for h in class_weights.split(",") if h]
    parsed_sizes = [_parse_size(s) for s in sizes]
    if recipe == "cpu" and len(parsed_sizes) > 1:
        raise TrainError("the CPU recipe trains one --size; pass several only with --recipe gpu")
    if recipe == "cpu" and (gpu_seconds or devices != "1"):
        raise TrainError("--gpu-seconds and --devices belong to --recipe gpu")
    if recipe == "gpu" and heads:
        raise TrainError("--class-weights is a CPU recipe option")
    try:
        weights = resolve_weights(weights) if backbone != "tiny" else None
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from exc
    work = Path(work_dir or Path("runs") / Path(out).name)
    if recipe == "cpu" and init_from:
        raise TrainError("--init-from belongs to --recipe gpu")
    if recipe == "cpu" and augment != "default":
        raise TrainError("--augment belongs to --recipe gpu (the CPU recipe trains on cached activations)")
    train_data = build_train_data(data, split_file, sharp=sharp, limit=limit)
    trainer = _recipe(
        recipe,
        parsed_sizes,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        label_smoothing=label_smoothing,
        heads=heads,
        gpu_seconds=gpu_seconds,
        devices=devices,
        precision=precision,
        cache_dir=cache_dir,
        cut_layer=cut_layer,
        resume=resume,
        augment=augment,
        init_from=init_from,
        backbone=backbone,
    )
    result = trainer.fit(train_data, work)
    _publish(result, train_data, out, split_file, work, recipe, parsed_sizes[0])


def _recipe(recipe: str, sizes, **options):
    """The recipe object with its options dataclass (the CLI's only recipe-specific code)."""
    o = options
    if recipe == "cpu":
        from .cpu_recipe import CpuRecipe, CpuRecipeConfig

        height, width = sizes[0]
        config = CpuRecipeConfig(
            height=height,
            width=width,
            epochs=o["epochs"],
            batch_size=o["batch_size"],
            cut_layer="stem_activation" if o["backbone"] == "tiny" else o["cut_layer"],
            learning_rate=o["learning_rate"],
            label_smoothing=o["label_smoothing"],
            class_weight_heads=o["heads"],
            backbone=o["backbone"],
        )
        return CpuRecipe(config, weights=o["weights"], cache_dir=o["cache_dir"], resume=o["resume"])
    from .gpu_recipe import GpuRecipe, GpuRecipeConfig
    from .pipeline import AugmentSpec

    config = GpuRecipeConfig(
        augment=AugmentSpec.robust() if o.get("augment") == "robust" else AugmentSpec(),
        init_from=str(Path(o["init_from"]).resolve()) if o.get("init_from") else None,
        sizes=sizes,
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        learning_rate=o["learning_rate"],
        label_smoothing=o["label_smoothing"],
        seconds_per_size=o["gpu_seconds"],
        devices=o["devices"],
        mixed_precision=o["precision"],
        backbone=o["backbone"],
    )
    return GpuRecipe(config, weights=o["weights"], resume=o["resume"])


def _publish(result, train_data, out, split_file, work, recipe, size) -> None:
    """Score the recipe's own validation predictions, write the bundle and the training curves."""
    from .bundle_io import write_bundle
    from .evaluate import evaluate_predictions, format_table

    metrics = {
        "val": evaluate_predictions(
            result.val_probs, result.val_labels, train_data.vocabularies, "val", hierarchy=train_data.hierarchy
        )
    }
    click.echo(format_table(metrics["val"]))
    training = {**result.training, **train_data.description}
    # named after its folder: two bundles served side by side (fashion-serve names models by bundle) must differ
    path = write_bundle(
        out,
        result.model,
        train_data.vocabularies,
        train_data.hierarchy,
        training,
        metrics,
        split_file,
        name=Path(out).name,
    )
    click.echo(f"bundle written to {path}")
    height, width = size
    log_csv = work / ("phase2" if recipe == "cpu" else f"{height}x{width}") / "log.csv"
    if log_csv.exists():
        try:
            from .finetune import plot_training_curves

            plot_training_curves(log_csv, work / "training_curves.png")
            click.echo(f"training curves: {work / 'training_curves.png'}")
        except ImportError as exc:  # matplotlib is optional on a GPU image
            click.echo(f"training curves skipped ({exc})", err=True)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@data_options(
    data="required",
    data_help=DATA_HELP,
    split_file_help="Split CSV (id,split); omit (and --split) to evaluate every image in --data.",
    split="test",
    split_help="Part of --split-file to evaluate (given alone: of the bundle's recorded split file, else the "
    "committed one).",
    old_subset=True,
    bundle_arg="bundle",
)
@click.option("--out", default=None, type=click.Path(), help="Report directory (metrics.json, PNGs).")
@click.option("--record", is_flag=True, help="Also store the metrics in the bundle manifest.")
@click.option(
    "--sharp",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Also score the sharper copies of the split's ids (folder of <id>.jpg), as '<split>-sharp'.",
)
@click.option(
    "--other-shops",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Also score other shops' photos (folder with labels.csv), as 'other-shops' and 'other-shops-product'.",
)
def evaluate(bundle, data_choice: DataChoice, out, record, sharp, other_shops):
    """Accuracy, macro-F1 and top-3 per head, confusion matrices and a sample grid.

    With --sharp and --other-shops the same report is made for the sharp copies and for other shops'
    photos (each in its own folder under --out, each recorded under its own name with --record).
    """
    from fashion import HEADS
    from fashion.data.errors import DataError
    from fashion.data.evalsets import other_shops_frame, sharp_frame
    from fashion.runtime.bundle import load_manifest

    from .bundle_io import load_keras_model, update_metrics
    from .evaluate import evaluate_frame, format_table

    data, subset = str(data_choice.data_dir), data_choice.split
    split_file = str(data_choice.split_file) if data_choice.split_file is not None else None
    if split_file is None and data_choice.split_explicit:  # --split test alone means a split, not every image
        try:
            split_file = str(data_choice.resolved_split_file())
        except DataError as exc:
            raise TrainError(str(exc)) from exc
    manifest = load_manifest(bundle)
    frame, _, _ = _load(data, split_file)
    name = subset if split_file else Path(data).name
    if split_file:
        frame = frame[frame["split"] == subset].reset_index(drop=True)
        if frame.empty:
            raise TrainError(f"{split_file}: no '{subset}' rows")
    frames = {name: frame}
    try:
        if sharp:
            frames[f"{name}-sharp"] = sharp_frame(frame, sharp)
        if other_shops:
            others = other_shops_frame(other_shops, HEADS)
            frames["other-shops"] = others
            frames["other-shops-product"] = others[others["setting"] == "product"].reset_index(drop=True)
    except DataError as exc:
        raise TrainError(str(exc)) from exc
    model = load_keras_model(bundle)
    for set_name, rows in frames.items():
        if rows.empty:
            click.echo(f"{set_name}: no images, skipped", err=True)
            continue
        report_dir = None if out is None else (Path(out) if set_name == name else Path(out) / set_name)
        metrics = evaluate_frame(
            model,
            rows,
            manifest.labels,
            report_dir,
            name=set_name,
            hierarchy=manifest.hierarchy,
            photos=not set_name.startswith("other-shops"),  # validation only: their licences forbid passing them on
        )
        click.echo(f"== {set_name} ({metrics['images']} images)")
        click.echo(format_table(metrics))
        if record:
            update_metrics(bundle, set_name, {k: v for k, v in metrics.items() if k != "top_confusions"})


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@data_options(data="required", data_help=DATA_HELP, split_file_default=DEFAULT_SPLIT)
@click.option("--out", required=True, type=click.Path(), help="Bundle directory to write (not BUNDLE itself).")
@click.option(
    "--alphas",
    default="0.6,0.7,0.8,0.9,1.0",
    show_default=True,
    help="Weights of the fine-tuned trunk to try (1.0 = the bundle as it is); the best mean val accuracy ships.",
)
@click.option("--weights", default=None, help="The ImageNet notop .weights.h5 the bundle was fine-tuned from.")
@click.option(
    "--with",
    "other",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Average with this trained bundle instead (same lineage, e.g. the one --init-from started from): "
    "every variable, heads included, is mixed.",
)
@click.option("--backbone", type=click.Choice(["efficientnetb0", "tiny"]), default="efficientnetb0", hidden=True)
def average(bundle, data_choice: DataChoice, out, alphas, weights, other, backbone):
    """Average the fine-tuned trunk with its ImageNet weights (WiSE-FT); alpha chosen on val."""
    data, split_file = str(data_choice.data_dir), str(data_choice.split_file)
    from fashion.data.paths import resolve_weights
    from fashion.runtime.bundle import load_manifest

    from .average import averaged_model, pretrained_like, scan_alphas
    from .bundle_io import load_keras_model
    from .pipeline import predict_padded
    from .recipe import TrainResult

    try:
        values = sorted({float(a) for a in alphas.split(",") if a.strip()})
    except ValueError:
        raise TrainError(f"--alphas {alphas!r}: expected comma-separated numbers, e.g. 0.7,0.8,1.0") from None
    if not values or not all(0.0 <= a <= 1.0 for a in values):
        raise TrainError(f"--alphas {alphas!r}: every alpha must be within [0, 1]")
    if Path(out).resolve() == Path(bundle).resolve():
        raise TrainError("--out must be a new bundle directory, not BUNDLE")
    try:
        weights = resolve_weights(weights) if backbone != "tiny" else None
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from exc
    manifest = load_manifest(bundle)
    train_data = build_train_data(data, split_file)
    if train_data.vocabularies != manifest.labels:
        raise TrainError(f"{bundle}: its labels differ from the vocabularies of {data}")
    model = load_keras_model(bundle)
    height, width = (int(d) for d in model.input_shape[1:3])
    val = train_data.decoded("val", height, width)
    if other is not None:
        partner = load_manifest(other)
        if partner.labels != manifest.labels:
            raise TrainError(f"--with {other}: its labels differ from {bundle}'s")
        pretrained = load_keras_model(other)
        if tuple(pretrained.input_shape[1:]) != tuple(model.input_shape[1:]):
            raise TrainError(f"--with {other}: input {pretrained.input_shape[1:3]}, {bundle}: {model.input_shape[1:3]}")
    else:
        pretrained = pretrained_like(model, weights, backbone)
    mix = other is not None
    scan = scan_alphas(
        model, pretrained, values, val.images, val.labels, log=click.echo, backbone=backbone, heads_too=mix
    )
    best = max(scan, key=lambda row: (round(row["mean"], 6), row["alpha"]))
    click.echo(f"chosen on val: alpha {best['alpha']}")
    chosen = averaged_model(model, pretrained, best["alpha"], backbone, mix) if best["alpha"] < 1.0 else model
    training = {
        **dict(manifest.manifest.training or {}),
        "average": {
            "alpha": best["alpha"],
            "scan": scan,
            "from": Path(bundle).name,
            "with": Path(other).name if other else "imagenet",
        },
    }
    probs = predict_padded(chosen, val.images, 128)
    work = Path("runs") / Path(out).name
    result = TrainResult(chosen, training, probs, val.labels, work)
    _publish(result, train_data, out, split_file, work, "gpu", (height, width))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@data_options(data="required", data_help=DATA_HELP, split_file_default=DEFAULT_SPLIT)
@click.option("--out", required=True, type=click.Path(), help="Bundle directory to write (none of BUNDLES).")
@click.option(
    "--flip",
    "flip",
    multiple=True,
    type=click.IntRange(min=1),
    help="Position (1-based) of a bundle that sees each photo and its mirror in one batch of 2 and contributes "
    "their mean (test-time flip in the graph). Repeatable.",
)
def ensemble(bundles, data_choice: DataChoice, out, flip):
    """One bundle averaging the softmax outputs of BUNDLES (two or more, same labels and input size).

    The first bundle's feature map and head weights make the class-activation maps. Scored on val.
    """
    data, split_file = str(data_choice.data_dir), str(data_choice.split_file)
    from fashion.runtime.bundle import load_manifest
    from fashion.runtime.manifest.migration import describe_bundle

    from .bundle_io import load_keras_model
    from .ensemble import ensemble_model
    from .pipeline import predict_padded
    from .recipe import TrainResult

    if len(bundles) < 2:
        raise TrainError(f"an ensemble needs at least two bundles, got {len(bundles)}")
    if any(position > len(bundles) for position in flip):
        raise TrainError(f"--flip {max(flip)}: there are only {len(bundles)} bundles")
    if Path(out).resolve() in {Path(b).resolve() for b in bundles}:
        raise TrainError("--out must be a new bundle directory, not one of BUNDLES")
    train_data = build_train_data(data, split_file)
    manifests = [load_manifest(b) for b in bundles]
    for bundle, manifest in zip(bundles, manifests):
        if manifest.labels != train_data.vocabularies:
            raise TrainError(f"{bundle}: its labels differ from the vocabularies of {data}")
    model = ensemble_model([load_keras_model(b) for b in bundles], flip=[position - 1 for position in flip])
    height, width = (int(d) for d in model.input_shape[1:3])
    val = train_data.decoded("val", height, width)
    probs = predict_padded(model, val.images, 128)
    training = {
        "recipe": "ensemble",
        "height": height,
        "width": width,
        "members": [
            {**describe_bundle(b), "flip": position in flip, "training": dict(m.manifest.training or {})}
            for position, (b, m) in enumerate(zip(bundles, manifests), start=1)
        ],
    }
    work = Path("runs") / Path(out).name
    _publish(
        TrainResult(model, training, probs, val.labels, work), train_data, out, split_file, work, "gpu", (height, width)
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@data_options(data="required", data_help=DATA_HELP, split_file_default=DEFAULT_SPLIT)
@click.option("--out", required=True, type=click.Path(), help="Bundle directory to write (not BUNDLE itself).")
@click.option(
    "--variants",
    default="refit,colour,hierarchy,colour+hierarchy,colour-residual,colour+hierarchy-residual",
    show_default=True,
    help="Comma-separated variants to fit and score on val (the ablation); see fashion/train/heads.py.",
)
@click.option(
    "--ship",
    default="auto",
    show_default=True,
    help="Variant written to --out ('bundle': its own heads, logit adjustment only); auto = best mean val "
    "accuracy and macro-F1 over articleType and baseColour.",
)
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--no-logit-adjust", is_flag=True, help="Keep the heads' biases as trained (no tau search on val).")
@click.option(
    "--cache-dir", default="cache", show_default=True, type=click.Path(), help="Features cache (per bundle and split)."
)
def refine(bundle, data_choice: DataChoice, out, variants, ship, epochs, learning_rate, no_logit_adjust, cache_dir):
    """Re-fit the fine heads of a trained bundle with a colour branch and hierarchy conditioning (see README)."""
    data, split_file = str(data_choice.data_dir), str(data_choice.split_file)
    from fashion.runtime.bundle import load_manifest

    from .bundle_io import load_keras_model
    from .heads import BUNDLE, VARIANTS, HeadsConfig, refine

    names = [v for v in variants.split(",") if v]
    unknown = [v for v in [*names, ship] if v not in VARIANTS and v not in ("auto", BUNDLE)]
    if unknown or not names:
        raise TrainError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}"
        )
    if ship not in ("auto", BUNDLE) and ship not in names:
        names.append(ship)
    if Path(out).resolve() == Path(bundle).resolve():
        raise TrainError("--out must be a new bundle directory, not BUNDLE")
    manifest = load_manifest(bundle)
    train_data = build_train_data(data, split_file)
    if train_data.vocabularies != manifest.labels:
        raise TrainError(
            f"{bundle}: its labels differ from the vocabularies of {data}; refine on the data it was trained on"
        )
    model = load_keras_model(bundle)
    from fashion.runtime.bundle import sha256_file

    digest = sha256_file(manifest.artifact_path("keras"))[:16]
    cache = Path(cache_dir) / f"refine_{digest}_{sha256_file(split_file)[:8]}"
    refined, report = refine(
        model,
        train_data,
        names,
        ship,
        HeadsConfig(epochs=epochs, learning_rate=learning_rate),
        logit_adjust=not no_logit_adjust,
        log=click.echo,
        cache=cache,
    )
    report["source_bundle"] = Path(bundle).name
    report["source_val"] = (manifest.manifest.metrics or {}).get("val", {}).get("heads", {})
    report_file = Path(out).with_name(Path(out).name + ".refine.json")
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    click.echo(f"shipping {report['shipped_variant']!r}; ablation on val: {report_file}")
    from .recipe import TrainResult

    size = _input_size(refined)
    training = {
        **dict(manifest.manifest.training or {}),
        "refine": {k: v for k, v in report.items() if k != "variants"},
    }
    val_labels = train_data.decoded("val", *size).labels
    result = TrainResult(refined, training, _predict_val(refined, train_data), val_labels, Path(out))
    _publish(result, train_data, out, split_file, Path(out), "refine", size)


def _input_size(model) -> tuple[int, int]:
    return int(model.input_shape[1]), int(model.input_shape[2])


def _predict_val(model, train_data):
    from .pipeline import predict_padded

    decoded = train_data.decoded("val", *_input_size(model))
    return predict_padded(model, decoded.images, 128)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Markdown file to write.")
def ablation(spec, out):
    """Write the model ablation table (val scores per head, p50 latency) from the results a SPEC file lists."""
    from .ablation import write_ablation

    try:
        path = write_ablation(spec, out)
    except (KeyError, FileNotFoundError, json.JSONDecodeError) as exc:
        raise TrainError(f"{spec}: a listed result is missing or lacks a field ({type(exc).__name__}: {exc})") from exc
    click.echo(f"ablation table written to {path}")


@main.command("gpu-check", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Kaggle-layout subset with a split.csv (made by `scripts/gpu_check.sh prepare`).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON file to write.")
@click.option("--size", "sizes", multiple=True, default=["128x96", "224x168"], show_default=True)
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--devices", default="1", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@click.option("--work-dir", default=None, type=click.Path(), help="Run directory (default: runs/gpu-check).")
@click.option(
    "--weights",
    default=None,
    help="ImageNet notop .weights.h5; default: none (random init) on the "
    "efficientnetb0 backbone, so the check needs no download.",
)
@click.option("--backbone", type=click.Choice(["efficientnetb0", "tiny"]), default="efficientnetb0", hidden=True)
def gpu_check(data, out, sizes, epochs, batch_size, devices, precision, work_dir, weights, backbone):
    """Train the GPU recipe a fixed number of epochs per size; write compile s, img/s, val accuracy, memory."""
    from .gpu_check import run_gpu_check

    report = run_gpu_check(
        data,
        out,
        [_parse_size(s) for s in sizes],
        epochs=epochs,
        batch_size=batch_size,
        devices=devices,
        precision=precision,
        work_dir=work_dir,
        weights=weights,
        backbone=backbone,
    )
    click.echo(f"gpu check written to {out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
