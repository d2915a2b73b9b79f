"""Probability-averaged ensembles of trained bundles, built as one Keras model (one bundle, one ONNX graph).

Members trained independently (the shipped model and a full fine-tune from ImageNet, say) make different
mistakes, so the mean of their softmax outputs per head beats each of them; a soup of two runs of the same
lineage does not (``results/model-v2-tta-ensemble-val.md``). Every member sees the same preprocessed input, so
members share the input size; the cost is one forward pass per member.

Graph: every member is split at its feature map (``top_activation``): ``member_i_trunk`` -> ``member_i_heads``;
the first member's map between the two is the layer named ``top_activation``; each head's output is an
``Average`` layer named by the head. A flipped member's trunk runs on the photos and their mirrors as one batch
(``MirrorBatch``), its heads on each half (``BatchHalf``), and the two are averaged. So the ensemble has the same
input, outputs and feature layer name as a single model, and export, the runtime's Keras seam and
class-activation maps work unchanged: the maps (feature map and head weights, :func:`cam_part`) are the first
member's.
"""

from __future__ import annotations

from collections.abc import Sequence

from fashion import HEADS

from .errors import TrainError
from .model import FEATURE_LAYER, POOL_LAYER, finalize_states

FIRST_HEADS = "member_0_heads"


def ensemble_model(members: Sequence, name: str = "fashion_ensemble", flip: Sequence[int] = ()):
    """One model averaging ``members``' softmax outputs per head (same input size and classes per head).

    ``flip``: indices of members that see each photo and its mirror as one batch of 2N and contribute the mean
    of the two (test-time flip inside the graph); every member weighs the same. A flipped first member's feature
    map (``top_activation``) is the photos' half.
    """
    import keras

    from fashion.layers import BatchHalf, MirrorBatch

    bad = [i for i in flip if not 0 <= i < len(members)]
    if bad:
        raise TrainError(f"flip: member {bad[0]} is not one of members 0..{len(members) - 1}")
    if len(members) < 2:
        raise TrainError(f"an ensemble needs at least two members, got {len(members)}")
    shape = tuple(members[0].input_shape[1:])
    for index, member in enumerate(members):
        if tuple(member.input_shape[1:]) != shape:
            raise TrainError(
                f"member {index}: input {tuple(member.input_shape[1:3])}, member 0: {shape[:2]} "
                "(every member must be trained at the same input size)"
            )
        for head in HEADS:
            if member.output[head].shape[-1] != members[0].output[head].shape[-1]:
                raise TrainError(
                    f"member {index}: {head} has {member.output[head].shape[-1]} classes, member 0 "
                    f"{members[0].output[head].shape[-1]}"
                )
        names = {layer.name for layer in member.layers}
        if FIRST_HEADS in names:
            raise TrainError(f"member {index} is an ensemble already: list its members instead")
        if FEATURE_LAYER not in names:
            raise TrainError(f"member {index}: no layer {FEATURE_LAYER!r} to take the feature map from")
    inputs = keras.Input(shape, name="image")
    outputs = []
    for index, member in enumerate(members):
        features = member.get_layer(FEATURE_LAYER).output
        trunk = keras.Model(member.input, features, name=f"member_{index}_trunk")
        heads = keras.Model(features, {h: member.output[h] for h in HEADS}, name=f"member_{index}_heads")
        # the first member's map of the photos themselves is the ensemble's feature layer (class-activation maps)
        own_map = FEATURE_LAYER if index == 0 else f"member_{index}_map"
        if index in flip:
            maps = trunk(MirrorBatch(name=f"member_{index}_mirror")(inputs))
            own = heads(BatchHalf(0, name=own_map)(maps))
            mirrored = heads(BatchHalf(1, name=f"member_{index}_mirrored_map")(maps))
            outputs.append(
                {h: keras.layers.Average(name=f"member_{index}_{h}_mean")([own[h], mirrored[h]]) for h in HEADS}
            )
        else:
            outputs.append(heads(keras.layers.Identity(name=own_map)(trunk(inputs))))
    averaged = {h: keras.layers.Average(name=h)([out[h] for out in outputs]) for h in HEADS}
    model = keras.Model(inputs, averaged, name=name)
    finalize_states(model)
    return model


def cam_part(model):
    """The (sub)model whose ``avg_pool`` and head Dense layers map the feature map: the model itself, or an
    ensemble's first member's heads."""
    try:
        model.get_layer(POOL_LAYER)
        return model
    except ValueError:
        pass
    try:
        return model.get_layer(FIRST_HEADS)
    except ValueError:
        raise TrainError(f"{model.name}: neither a layer {POOL_LAYER!r} nor an ensemble's {FIRST_HEADS!r}") from None


__all__ = ["cam_part", "ensemble_model"]
