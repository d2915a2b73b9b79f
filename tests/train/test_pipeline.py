"""The one input pipeline: fixed-shape padded batches, the label-preserving augmentation layer, padded prediction."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fashion import HEADS  # noqa: E402
from fashion.runtime.preprocess import preprocess  # noqa: E402
from fashion.train.pipeline import (  # noqa: E402
    ArrayBatches,
    AugmentSpec,
    LabelPreservingAugment,
    pad_batch,
    predict_padded,
    training_model,
)

HEIGHT, WIDTH = 32, 24


@pytest.fixture(scope="module")
def clean(sample_dir):
    paths = sorted((sample_dir / "images").glob("*.jpg"))[:8]
    return np.stack([preprocess(p, HEIGHT, WIDTH) for p in paths])


def _augment(spec: AugmentSpec, images: np.ndarray, seed: int) -> np.ndarray:
    layer = LabelPreservingAugment(spec, seed=seed)
    return keras.ops.convert_to_numpy(layer(images, training=True))


def test_outside_training_the_layer_only_casts(clean):
    out = LabelPreservingAugment(AugmentSpec(), seed=0)(clean, training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), clean.astype(np.float32))


def test_flip_is_a_mirror_and_some_images_flip(clean):
    out = _augment(AugmentSpec(max_shift=0, max_zoom=0, max_brightness=0, max_contrast=0), clean, seed=1)
    mirrored = [np.array_equal(o, c[:, ::-1]) for o, c in zip(out, clean.astype(np.float32))]
    same = [np.array_equal(o, c) for o, c in zip(out, clean.astype(np.float32))]
    assert all(m or s for m, s in zip(mirrored, same))
    assert any(mirrored) and not all(same)


def test_shift_and_zoom_fill_with_white_keep_the_centre_and_the_hue():
    black = np.zeros((16, HEIGHT, WIDTH, 3), np.uint8)
    out = _augment(AugmentSpec(flip=False, max_shift=0.1, max_zoom=0.1, max_brightness=0, max_contrast=0), black, 2)
    assert out.shape == black.shape
    assert (out == 255).any(axis=(1, 2, 3)).mean() > 0.5, "moved images show white fill (never black)"
    assert np.all(out[:, HEIGHT // 2, WIDTH // 2] == 0), "the centre stays the product"
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]), "grey stays grey"


def test_zoom_goes_both_ways_within_its_range():
    """One zoom definition: factors in [1 - max_zoom, 1 + max_zoom] (in shows less white, out shows more)."""
    square = np.zeros((64, HEIGHT, WIDTH, 3), np.uint8)
    out = _augment(AugmentSpec(flip=False, max_shift=0, max_zoom=0.2, max_brightness=0, max_contrast=0), square, 3)
    white = (out[..., 0] > 127).mean(axis=(1, 2))
    assert (white == 0).any(), "zooming in keeps the frame filled"
    assert (white > 0).any(), "zooming out shows background"
    assert white.max() < 1 - 1 / 1.2**2 + 0.1


def test_brightness_and_contrast_stay_mild(clean):
    out = _augment(AugmentSpec(flip=False, max_shift=0, max_zoom=0), clean, seed=4)
    assert out.min() >= 0 and out.max() <= 255
    assert np.abs(out - clean).max() <= 12 + 0.1 * 128 + 1e-3
    assert not np.allclose(out, clean)


def test_batches_have_one_shape_and_pad_with_missing_labels():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=3)
    labels = {head: np.arange(10, dtype=np.int32) for head in HEADS}
    batches = ArrayBatches(images, labels, batch_size=4, shuffle=True, seed=5)
    assert len(batches) == 3
    seen = []
    for index in range(len(batches)):
        x, y = batches[index]
        assert x.shape == (4, 1, 1, 3) and x.dtype == np.uint8
        real = y["gender"] >= 0
        assert all(np.array_equal(y[h], y["gender"]) for h in HEADS), "rows keep their own labels"
        np.testing.assert_array_equal(x[real, 0, 0, 0], y["gender"][real])
        seen += list(y["gender"][real])
    assert sorted(seen) == list(range(10)), "every image once per epoch, padding never counted"
    first_order = batches.order.copy()
    batches.on_epoch_end()
    assert not np.array_equal(first_order, batches.order), "a new order each epoch"
    batches.set_epoch(0)
    np.testing.assert_array_equal(first_order, batches.order)  # a resumed run replays the same order


def test_pad_batch_only_pads():
    images = np.zeros((3, 2, 2, 3), np.uint8)
    padded, labels = pad_batch(images, {"gender": np.array([0, 1, 2], np.int32)}, 5)
    assert padded.shape == (5, 2, 2, 3)
    np.testing.assert_array_equal(labels["gender"], [0, 1, 2, -1, -1])
    assert pad_batch(images, None, 3) is images


def test_wrapper_shares_weights_and_padded_prediction_equals_a_direct_call(clean):
    from fashion.train.model import build_model

    keras.utils.set_random_seed(0)
    model = build_model({h: 3 for h in HEADS}, HEIGHT, WIDTH, backbone="tiny")
    wrapper = training_model(model, AugmentSpec(), seed=0)
    assert {v.path for v in model.trainable_weights} <= {v.path for v in wrapper.trainable_weights}
    probs = predict_padded(wrapper, clean[:5], batch_size=4)  # 5 images: one full batch and one padded
    direct = model(clean[:5].astype(np.float32), training=False)
    for head in HEADS:
        assert probs[head].shape == (5, 3)
        np.testing.assert_allclose(probs[head], keras.ops.convert_to_numpy(direct[head]), atol=1e-5)
    float_probs = predict_padded(model, clean[:5], batch_size=4)
    np.testing.assert_allclose(float_probs["gender"], probs["gender"], atol=1e-5)


def test_blur_smooths_edges_keeps_the_mean_and_the_hue():
    """Random blur (sharp vs blurry photos): a hard edge softens, flat colour and grey stay as they were."""
    edge = np.zeros((16, HEIGHT, WIDTH, 3), np.uint8)
    edge[:, :, WIDTH // 2 :] = 255
    spec = AugmentSpec(flip=False, max_shift=0, max_zoom=0, max_brightness=0, max_contrast=0, blur_probability=1.0)
    out = _augment(spec, edge, seed=5)
    ramp = out[:, HEIGHT // 2, WIDTH // 2 - 2 : WIDTH // 2 + 2, 0]
    assert ((ramp > 1) & (ramp < 254)).any(axis=1).all(), "every image's edge is softened"
    np.testing.assert_allclose(out[:, :, :2], 0, atol=1e-3)  # far from the edge nothing moves
    np.testing.assert_allclose(out[:, :, -2:], 255, atol=1e-3)
    assert np.array_equal(out[..., 0], out[..., 1]), "grey stays grey"


def test_blur_probability_zero_and_robust_spec():
    edge = np.zeros((8, HEIGHT, WIDTH, 3), np.uint8)
    edge[:, :, WIDTH // 2 :] = 255
    plain = AugmentSpec(flip=False, max_shift=0, max_zoom=0, max_brightness=0, max_contrast=0)
    np.testing.assert_allclose(_augment(plain, edge, seed=6), edge, atol=1e-3)
    robust = AugmentSpec.robust()
    assert robust.blur_probability > 0 and robust.max_aspect > 0
    out = _augment(robust, edge, seed=7)
    assert out.shape == edge.shape and out.min() >= 0 and out.max() <= 255


def test_progress_prints_rate_and_eta():
    from fashion.train.gpu_recipe import Progress

    lines: list[str] = []
    progress = Progress(epochs=2, steps_per_epoch=10, batch_size=8, every=0.0, log=lines.append)
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        for step in range(10):
            progress.on_train_batch_begin(step)
    assert lines and lines[-1].startswith("epoch 2/2 step 9/10") and "img/s, ETA" in lines[-1]


def test_progress_eta_ends_with_the_time_window_when_it_comes_first(clock):
    """--gpu-seconds: a run whose window ends before its last epoch shows the window's end as its ETA."""
    from fashion.train.callbacks import Progress, TimeCosine

    window = TimeCosine(1e-3, seconds=100.0, clock=clock)
    window.start = 0.0
    lines: list[str] = []
    progress = Progress(
        epochs=30, steps_per_epoch=1000, batch_size=8, every=0.0, log=lines.append, window=window, clock=clock
    )
    progress.on_epoch_begin(0)
    progress.on_train_batch_begin(0)
    clock.now = 40.0
    progress.on_train_batch_begin(10)  # 30 epochs at this rate: hours; the window: 60 s left
    assert lines[-1].endswith("ETA 1m00s (validation not included, end of the time window)"), lines[-1]
    long = TimeCosine(1e-3, seconds=1e9, clock=clock)
    long.start = 0.0
    progress = Progress(
        epochs=1, steps_per_epoch=20, batch_size=8, every=0.0, log=lines.append, window=long, clock=clock
    )
    progress.on_epoch_begin(0)
    progress.on_train_batch_begin(0)
    clock.now = 50.0
    progress.on_train_batch_begin(10)
    assert "time window" not in lines[-1]
