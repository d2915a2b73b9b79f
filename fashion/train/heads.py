"""Refine a trained bundle's fine heads: a colour branch, hierarchy conditioning, logit adjustment.

The trunk and the coarse heads (gender, masterCategory, subCategory, season) of a trained bundle
stay as they are. On the trunk's pooled features (computed once, for each training image and its
mirror) this step re-fits the two fine heads with extra inputs, each switchable for an ablation:

- ``colour``: :class:`fashion.layers.ColourStatistics` of the raw input (foreground colour
  histogram and moments) through a small embedding into the baseColour head;
- ``hierarchy``: the subCategory and masterCategory probabilities into the articleType head;
- ``logit_adjust``: per fine head, subtract ``tau * log(train prior)`` from the logits (baked into
  the Dense bias, so it costs nothing at run time), ``tau`` chosen on the validation split: the
  largest macro-F1 that keeps validation accuracy within ``LOGIT_ADJUST_MAX_ACC_DROP``.

Every variant starts from the bundle's own fine heads (new input rows start at zero), so "refit"
(no extra input) measures what re-fitting alone does. The chosen variant is assembled into one
Keras model (input ``image``, one softmax per head, as every bundle) and written as a new bundle.
The pooled features come first in every head's input, so the first rows of a head's kernel still
give its class-activation map.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm import tqdm

from fashion import HEADS
from fashion.layers import ColourStatistics

from .cpu_recipe import sample_weights
from .evaluate import score
from .model import POOL_LAYER, compile_model
from .recipe import TrainData, decode_part

FINE_HEADS = ("articleType", "baseColour")
BUNDLE = "bundle"  # the candidate that keeps the bundle's own fine heads
COARSE_INPUTS = ("subCategory", "masterCategory")  # fed into articleType with hierarchy conditioning
LOGIT_ADJUST_TAUS = tuple(round(0.1 * i, 1) for i in range(11))
LOGIT_ADJUST_MAX_ACC_DROP = 0.002  # validation accuracy a head may lose for a better macro-F1
VARIANTS = {  # "frozen": the pooled-feature rows keep the bundle's weights; only the new inputs (and bias) learn
    "refit": {"colour": False, "hierarchy": False, "frozen": False},
    "colour": {"colour": True, "hierarchy": False, "frozen": False},
    "hierarchy": {"colour": False, "hierarchy": True, "frozen": False},
    "colour+hierarchy": {"colour": True, "hierarchy": True, "frozen": False},
    "colour-residual": {"colour": True, "hierarchy": False, "frozen": True},
    "colour+hierarchy-residual": {"colour": True, "hierarchy": True, "frozen": True},
}


class KeepRows(keras.constraints.Constraint):
    """Puts the first rows of a kernel back to fixed values after every update (those rows do not learn)."""

    def __init__(self, rows: np.ndarray):
        self.rows = np.asarray(rows, np.float32)

    def __call__(self, w):
        ops = keras.ops
        return ops.concatenate([ops.convert_to_tensor(self.rows), w[len(self.rows) :]], axis=0)


@dataclass
class HeadsConfig:
    """Options of the head refinement (stored in the new bundle's training record)."""

    epochs: int = 30
    learning_rate: float = 1e-3
    batch_size: int = 256
    label_smoothing: float = 0.1
    dropout: float = 0.2
    colour_embedding: int = 128
    class_weight_heads: tuple[str, ...] = FINE_HEADS
    class_weight_power: float = 0.5
    seed: int = 0


@dataclass
class Features:
    """Inputs of the heads for one part: pooled trunk features, colour statistics, coarse-head probabilities."""

    pooled: np.ndarray
    colour: np.ndarray
    coarse: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


def _batched(fn, array: np.ndarray, batch: int = 128, desc: str | None = None) -> np.ndarray:
    starts = range(0, len(array), batch)
    if desc:
        starts = tqdm(starts, desc=desc, unit="batch", total=len(starts))
    return np.concatenate([keras.ops.convert_to_numpy(fn(array[s : s + batch].astype(np.float32))) for s in starts])


def part_features(model: keras.Model, part, mirrored: bool, workers: int | None = None) -> Features:
    """Decode ``part`` at the model's input size; pooled features (and of the mirror), colour, coarse probs."""
    height, width = (int(d) for d in model.input_shape[1:3])
    decoded = decode_part(part, height, width, workers)
    pooled_model = keras.Model(model.input, model.get_layer(POOL_LAYER).output)
    colour = ColourStatistics(name="colour_statistics")
    images = decoded.images
    pooled = _batched(lambda x: pooled_model(x, training=False), images, desc="pooled features")
    colour_features = _batched(colour, images, batch=256)  # a mirror has the same colour statistics
    labels = decoded.labels
    if mirrored:
        mirror = _batched(
            lambda x: pooled_model(x, training=False), images[:, :, ::-1], desc="pooled features, mirrored"
        )
        pooled = np.concatenate([pooled, mirror])
        colour_features = np.concatenate([colour_features, colour_features])
        labels = {h: np.concatenate([v, v]) for h, v in labels.items()}
    coarse = {head: _softmax(_logits_of(model, head, pooled)) for head in COARSE_INPUTS}
    return Features(pooled.astype(np.float32), colour_features.astype(np.float32), coarse, labels)


def cached_features(model, part, mirrored: bool, workers, cache: Path | None, name: str) -> Features:
    """``part_features``, read from / written to ``<cache>_<name>.npz`` when ``cache`` is given."""
    path = Path(f"{cache}_{name}.npz") if cache else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return Features(
                data["pooled"],
                data["colour"],
                {h: data[f"coarse/{h}"] for h in COARSE_INPUTS},
                {h[len("labels/") :]: data[h] for h in data.files if h.startswith("labels/")},
            )
    features = part_features(model, part, mirrored, workers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"pooled": features.pooled, "colour": features.colour}
        arrays.update({f"coarse/{h}": v for h, v in features.coarse.items()})
        arrays.update({f"labels/{h}": v for h, v in features.labels.items()})
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        partial.rename(path)
    return features


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _head_inputs(features: Features, heads: keras.Model) -> dict[str, np.ndarray]:
    arrays = {"pooled": features.pooled, "colour": features.colour}
    arrays.update({f"p_{h}": features.coarse[h] for h in COARSE_INPUTS})
    return {name: arrays[name] for name in heads.input}


def heads_model(model: keras.Model, colour_size: int, variant: dict, config: HeadsConfig) -> keras.Model:
    """The fine heads of ``variant`` over precomputed inputs, initialised from ``model``'s own fine heads."""
    pooled_size = int(model.get_layer(POOL_LAYER).output.shape[-1])
    pooled = keras.Input((pooled_size,), name="pooled")
    colour = keras.Input((colour_size,), name="colour")
    coarse = {h: keras.Input((int(model.get_layer(h).output.shape[-1]),), name=f"p_{h}") for h in COARSE_INPUTS}
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(pooled)
    layers = fine_head_layers(model, variant, config, training=True)
    outputs = apply_fine_heads(layers, x, colour, coarse)
    inputs = {"pooled": pooled}
    if variant["colour"]:
        inputs["colour"] = colour
    if variant["hierarchy"]:
        inputs.update({f"p_{h}": coarse[h] for h in COARSE_INPUTS})
    return keras.Model(inputs, outputs, name="fine_heads")


def fine_head_layers(
    model: keras.Model, variant: dict, config: HeadsConfig, training: bool = False
) -> dict[str, keras.layers.Layer]:
    """New Dense layers for the fine heads (named like the heads), initialised to reproduce ``model``'s.

    ``training`` with a "frozen" variant: the pooled-feature rows of a head with new inputs stay fixed.
    """
    layers: dict[str, keras.layers.Layer] = {}
    if variant["colour"]:
        layers["colour_embedding"] = keras.layers.Dense(
            config.colour_embedding, activation="swish", name="colour_embedding"
        )
    for head in FINE_HEADS:
        kernel, bias = model.get_layer(head).get_weights()
        extra = 0
        if head == "baseColour" and variant["colour"]:
            extra = config.colour_embedding
        if head == "articleType" and variant["hierarchy"]:
            extra = sum(int(model.get_layer(h).output.shape[-1]) for h in COARSE_INPUTS)
        start = np.concatenate([kernel, np.zeros((extra, kernel.shape[1]), kernel.dtype)])
        frozen = training and extra and variant.get("frozen")
        layer = keras.layers.Dense(
            kernel.shape[1],
            activation="softmax",
            name=head,
            dtype="float32",
            kernel_constraint=KeepRows(kernel) if frozen else None,
        )
        layer.build((None, start.shape[0]))
        layer.set_weights([start, bias])
        layers[head] = layer
    return layers


def apply_fine_heads(layers: dict, x, colour, coarse: dict) -> dict:
    """Wire the fine heads: pooled features first in every head's input (class-activation maps read those rows)."""
    outputs = {}
    colour_input = [layers["colour_embedding"](colour)] if "colour_embedding" in layers else []
    outputs["baseColour"] = layers["baseColour"](
        keras.layers.Concatenate(name="baseColour_inputs")([x, *colour_input]) if colour_input else x
    )
    article_in = [x]
    if layers["articleType"].kernel.shape[0] > x.shape[-1]:
        article_in += [coarse[h] for h in COARSE_INPUTS]
    outputs["articleType"] = layers["articleType"](
        keras.layers.Concatenate(name="articleType_inputs")(article_in) if len(article_in) > 1 else x
    )
    return outputs


def fit_variant(
    model: keras.Model, train: Features, val: Features, variant: dict, config: HeadsConfig, num_classes: dict
) -> tuple[keras.Model, dict[str, np.ndarray]]:
    """Train the variant's fine heads; return the heads model and its validation probabilities."""
    keras.utils.set_random_seed(config.seed)
    heads = heads_model(model, train.colour.shape[1], variant, config)
    steps = config.epochs * int(np.ceil(len(train.pooled) / config.batch_size))
    compile_model(
        heads,
        keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02),
        config.label_smoothing,
        heads=FINE_HEADS,
    )
    every_head = sample_weights(train.labels, config, num_classes)  # the recipe's class weights
    weights = {h: every_head[h] for h in FINE_HEADS}
    heads.fit(
        _head_inputs(train, heads),
        {h: train.labels[h] for h in FINE_HEADS},
        sample_weight=weights,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=0,
    )
    probs = heads.predict(_head_inputs(val, heads), batch_size=1024, verbose=0)
    return heads, {h: np.asarray(probs[h], np.float32) for h in FINE_HEADS}


def log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


def choose_tau(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray) -> tuple[float, dict]:
    """The logit-adjustment strength with the best validation macro-F1 within the accuracy allowance."""
    from fashion.metrics.accuracy import head_scores

    logits = np.log(np.clip(probs, 1e-12, 1.0))
    table = {}
    for tau in LOGIT_ADJUST_TAUS:
        ranked = np.argsort(-(logits - tau * prior), axis=1, kind="stable")[:, :3]
        table[tau] = head_scores(labels, ranked)
    floor = table[0.0]["accuracy"] - LOGIT_ADJUST_MAX_ACC_DROP
    allowed = [t for t in LOGIT_ADJUST_TAUS if table[t]["accuracy"] >= floor]
    best = max(allowed, key=lambda t: (table[t]["macro_f1"], -t))
    return best, {
        str(t): {"accuracy": table[t]["accuracy"], "macro_f1": table[t]["macro_f1"]} for t in LOGIT_ADJUST_TAUS
    }


def assemble(
    model: keras.Model, heads: keras.Model, variant: dict, taus: dict[str, float], priors: dict
) -> keras.Model:
    """One classifier: ``model``'s trunk and coarse heads, the refined fine heads (+ colour branch), adjusted biases."""
    config = HeadsConfig()
    if variant["colour"]:
        config.colour_embedding = int(heads.get_layer("colour_embedding").units)
    layers = fine_head_layers(model, variant, config)
    image = model.input
    x = model.get_layer("head_dropout").output
    colour = ColourStatistics(name="colour_statistics")(image) if variant["colour"] else None
    coarse = {h: model.get_layer(h).output for h in COARSE_INPUTS}
    fine = apply_fine_heads(layers, x, colour, coarse)  # builds the layers; their trained weights go in next
    for name, layer in layers.items():
        weights = heads.get_layer(name).get_weights()
        if name in taus and taus[name]:
            weights = [weights[0], weights[1] - taus[name] * priors[name]]
        layer.set_weights(weights)
    outputs = {h: fine[h] if h in fine else model.get_layer(h).output for h in HEADS}
    return keras.Model(image, outputs, name=model.name)


def refine(
    model: keras.Model,
    train_data: TrainData,
    variants: list[str],
    ship: str,
    config: HeadsConfig | None = None,
    logit_adjust: bool = True,
    log=print,
    cache: Path | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Fit every variant, score each on val (with and without logit adjustment); assemble ``ship``.

    ``ship="auto"``: of the bundle's own heads (with logit adjustment only) and every variant, the one whose
    adjusted fine heads have the best mean of validation accuracy and macro-F1 over articleType and
    baseColour. ``cache``: a file prefix for the features (``<prefix>_train.npz``/``_val.npz``), so another
    run on the same bundle and split skips the trunk passes. Returns the assembled model and the report.
    """
    config = config or HeadsConfig()
    started = time.time()
    log("features of the training images (and mirrors) ...")
    train = cached_features(model, train_data.train, True, train_data.workers, cache, "train")
    log("features of the validation images ...")
    val = cached_features(model, train_data.val, False, train_data.workers, cache, "val")
    num_classes = train_data.num_classes
    priors = {h: log_prior(train.labels[h], num_classes[h]) for h in FINE_HEADS}
    base_probs = {h: _softmax(_logits_of(model, h, val.pooled)) for h in FINE_HEADS}
    colours = train_data.vocabularies["baseColour"]
    val_labels = {h: val.labels[h] for h in FINE_HEADS}
    rows: dict[str, Any] = {}
    fitted = {}
    for name in [BUNDLE, *variants]:
        t0 = time.time()
        if name == BUNDLE:  # no re-fit: the bundle's own fine heads (logit adjustment still applies)
            heads, probs = None, base_probs
        else:
            heads, probs = fit_variant(model, train, val, VARIANTS[name], config, num_classes)
        labels = val_labels
        taus, tau_tables, adjusted = {}, {}, {}
        for head in FINE_HEADS:
            tau, tau_tables[head] = choose_tau(probs[head], labels[head], priors[head]) if logit_adjust else (0.0, {})
            taus[head] = tau
            adjusted[head] = _softmax(np.log(np.clip(probs[head], 1e-12, 1)) - tau * priors[head])
        rows[name] = {
            "heads": _score(probs, labels, colours),
            "logit_adjusted": {"taus": taus, "heads": _score(adjusted, labels, colours), "tau_scan": tau_tables},
            "seconds": round(time.time() - t0, 1),
        }
        fitted[name] = (heads, taus)
        log(
            f"{name}: {json.dumps({h: round(v['accuracy'], 4) for h, v in rows[name]['logit_adjusted']['heads'].items()})}"
        )
    if ship == "auto":
        ship = max([BUNDLE, *variants], key=lambda n: _fine_score(rows[n]["logit_adjusted"]["heads"]))
    heads, taus = fitted[ship]
    if ship == BUNDLE:
        assembled = model
        for head, tau in taus.items():
            kernel, bias = model.get_layer(head).get_weights()
            model.get_layer(head).set_weights([kernel, bias - tau * priors[head]])
    else:
        assembled = assemble(model, heads, VARIANTS[ship], taus, priors)
    report = {
        "config": asdict(config),
        "variants": rows,
        "shipped_variant": ship,
        "logit_adjust_taus": taus,
        "seconds": round(time.time() - started, 1),
        "selection": "validation split: mean of accuracy and macro-F1 over articleType and baseColour",
    }
    return assembled, report


def _score(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray], colour_vocab: list[str]) -> dict:
    """Accuracy, macro-F1, top-3 per fine head; baseColour also by shade family (fashion.metrics.colour)."""
    from fashion.metrics.colour import family_scores

    scores = score(probs, labels)
    if "baseColour" in probs:
        families = family_scores(labels["baseColour"], probs["baseColour"].argmax(axis=1), colour_vocab)
        scores["baseColour"]["family_accuracy"] = families["accuracy"]
        scores["baseColour"]["family_macro_f1"] = families["macro_f1"]
    return scores


def _fine_score(heads: dict) -> float:
    return float(np.mean([heads[h][k] for h in FINE_HEADS for k in ("accuracy", "macro_f1")]))


def _logits_of(model: keras.Model, head: str, pooled: np.ndarray) -> np.ndarray:
    kernel, bias = model.get_layer(head).get_weights()
    return pooled @ kernel + bias
