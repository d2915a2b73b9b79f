"""The tf.data pipeline yields the runtime's exact preprocessing, keeps -1 labels and augments sanely."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")

from fashion import HEADS  # noqa: E402
from fashion.data.dataset import load_dataset  # noqa: E402
from fashion.data.labels import MISSING, build_vocabularies, encode  # noqa: E402
from fashion.runtime.preprocess import preprocess  # noqa: E402
from fashion.train.pipeline import dataset_from_frame, label_preserving_augment, make_dataset  # noqa: E402

HEIGHT, WIDTH = 128, 96


@pytest.fixture(scope="module")
def sample_frame(sample_dir):
    frame, _ = load_dataset(sample_dir)
    with_gaps = frame[frame[list(HEADS)].isna().any(axis=1)]
    grayscale = frame[[_mode(p) == "L" for p in frame["path"]]]
    assert len(with_gaps) and len(grayscale), "the sample carries empty labels and grayscale images"
    picked = frame.iloc[::40]
    return pd.concat([picked, with_gaps, grayscale.head(2)]).drop_duplicates("id").reset_index(drop=True)


def _mode(path: str) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return image.mode


def test_pipeline_matches_runtime_preprocessing_and_keeps_missing_labels(sample_frame):
    vocabularies = build_vocabularies(sample_frame)
    encoded = encode(sample_frame, vocabularies)
    dataset = make_dataset(list(sample_frame["path"]), encoded, HEIGHT, WIDTH, batch_size=5)
    assert dataset.element_spec[0].shape.as_list() == [None, HEIGHT, WIDTH, 3]
    images, labels = [], {head: [] for head in HEADS}
    for batch_images, batch_labels in dataset:
        assert batch_images.dtype == tf.float32
        images.append(batch_images.numpy())
        for head in HEADS:
            labels[head].append(batch_labels[head].numpy())
    images = np.concatenate(images)
    expected = np.stack([preprocess(p, HEIGHT, WIDTH) for p in sample_frame["path"]]).astype(np.float32)
    assert images.shape == (len(sample_frame), HEIGHT, WIDTH, 3)
    assert np.abs(images - expected).max() <= 1.0
    assert images.min() >= 0 and images.max() <= 255
    for head in HEADS:
        np.testing.assert_array_equal(np.concatenate(labels[head]), encoded[head])
    assert (np.concatenate(labels["baseColour"]) == MISSING).any() or (np.concatenate(labels["season"]) == MISSING).any()


def test_pipeline_without_labels_and_cache_twice(sample_frame, tmp_path):
    paths = list(sample_frame["path"][:4])
    dataset = make_dataset(paths, None, HEIGHT, WIDTH, batch_size=4, cache=str(tmp_path / "cache"))
    first = next(iter(dataset)).numpy()
    second = next(iter(dataset)).numpy()  # served from the file cache
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[0], preprocess(paths[0], HEIGHT, WIDTH).astype(np.float32))


def test_training_pipeline_shuffles_and_augments_within_range(sample_frame):
    vocabularies = build_vocabularies(sample_frame)
    dataset = dataset_from_frame(sample_frame, vocabularies, HEIGHT, WIDTH, training=True, seed=7,
                                 batch_size=len(sample_frame))
    images, labels = next(iter(dataset))
    images = images.numpy()
    assert images.shape == (len(sample_frame), HEIGHT, WIDTH, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    clean = np.stack([preprocess(p, HEIGHT, WIDTH) for p in sample_frame["path"]]).astype(np.float32)
    assert not np.allclose(np.sort(images.reshape(len(images), -1).mean(1)),
                           np.sort(clean.reshape(len(clean), -1).mean(1))), "augmentation changed the images"
    # Shuffled rows still carry their own labels: the multiset of label tuples is unchanged.
    encoded = encode(sample_frame, vocabularies)
    got = sorted(zip(*(labels[h].numpy().tolist() for h in HEADS)))
    want = sorted(zip(*(encoded[h].tolist() for h in HEADS)))
    assert got == want


def test_augment_fills_with_white_and_flip_is_a_mirror(sample_frame):
    clean = np.stack([preprocess(p, HEIGHT, WIDTH) for p in sample_frame["path"][:8]]).astype(np.float32)
    batch = tf.constant(clean)

    flipped = label_preserving_augment(seed=1, max_shift=0, max_zoom=0, max_brightness=0, max_contrast=0)(batch).numpy()
    for original, out in zip(clean, flipped):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])
    assert any(not np.array_equal(out, original) for original, out in zip(clean, flipped))

    # Shifts and zooms pull in the white studio background, never black; the centre stays the product.
    move = label_preserving_augment(seed=2, flip=False, max_shift=0.1, max_zoom=0.1, max_brightness=0,
                                    max_contrast=0)
    black = tf.zeros((16, HEIGHT, WIDTH, 3))
    out = move(black).numpy()
    assert out.shape == black.shape
    assert (out == 255).any(axis=(1, 2, 3)).all(), "every moved image shows white fill"
    assert np.all(out[:, HEIGHT // 2, WIDTH // 2] == 0)
    r, g, b = out[..., 0], out[..., 1], out[..., 2]
    assert np.array_equal(r, g) and np.array_equal(g, b), "no hue change: grey stays grey"

    tone = label_preserving_augment(seed=3, flip=False, max_shift=0, max_zoom=0)(batch).numpy()
    assert tone.min() >= 0 and tone.max() <= 255
    assert np.abs(tone - clean).max() <= 12 + 0.1 * 128 + 1e-3, "brightness/contrast stay mild"


def test_labels_must_match_paths(sample_frame):
    with pytest.raises(ValueError, match="entries"):
        make_dataset(list(sample_frame["path"]), {"gender": np.zeros(2, np.int32)}, HEIGHT, WIDTH)
