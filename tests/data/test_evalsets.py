"""Named evaluation sets: sharp copies by id, deterministic shifts of real photos, other shops' labels."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from fashion import HEADS
from fashion.data.dataset import load_dataset
from fashion.data.errors import DataError
from fashion.data.evalsets import (
    BACKGROUNDS,
    SHIFTS,
    ShiftedPreprocessor,
    evaluation_sets,
    load_set,
    other_shops_frame,
    sharp_frame,
)
from fashion.data.labels import build_vocabularies
from fashion.runtime.preprocess import Preprocessor


@pytest.fixture(scope="module")
def sample(sample_dir):
    frame, _ = load_dataset(sample_dir)
    return frame.sort_values("id").reset_index(drop=True), build_vocabularies(frame)


def _other_shops(tmp_path, sample_dir):
    folder = tmp_path / "others"
    (folder / "images").mkdir(parents=True)
    photos = sorted((sample_dir / "images").glob("*.jpg"))[:3]
    for i, p in enumerate(photos, 1):
        shutil.copy(p, folder / "images" / f"{i:03d}.jpg")
    pd.DataFrame(
        {
            "id": [1, 2, 3],
            "file": [f"images/{i:03d}.jpg" for i in (1, 2, 3)],
            "setting": ["product", "model", "product"],
            "masterCategory": ["Apparel", "Footwear", ""],
            "gender": ["Men", "", "Women"],
        }
    ).to_csv(folder / "labels.csv", index=False)
    return folder


def test_every_shift_changes_the_photo_deterministically(sample_dir):
    prep = Preprocessor(height=64, width=48)
    path = sorted((sample_dir / "images").glob("*.jpg"))[0]
    plain = prep(path)
    for name in SHIFTS:
        shifted = ShiftedPreprocessor.of(prep, name)
        once, again = shifted(path), shifted(path)
        assert once.shape == plain.shape and once.dtype == np.uint8
        assert np.array_equal(once, again), f"{name} is deterministic"
        assert np.abs(once.astype(int) - plain).mean() > 0.5, f"{name} changes the photo"
    with pytest.raises(DataError, match="unknown shift"):
        ShiftedPreprocessor.of(prep, "sepia")(path)


def test_background_shift_recolours_the_white_studio_background(sample_dir):
    prep = ShiftedPreprocessor.of(Preprocessor(height=80, width=60, fit="resize"), "background")
    path = sorted((sample_dir / "images").glob("*.jpg"))[0]
    out = prep(path)
    corner = tuple(int(v) for v in out[0, 0])
    assert any(np.abs(np.array(corner) - np.array(c)).max() <= 30 for c in BACKGROUNDS), corner


def test_sharp_copies_by_id_and_the_paired_sets(tmp_path, sample_dir, sample):
    frame, vocab = sample
    sharp = tmp_path / "sharp" / "images"
    sharp.mkdir(parents=True)
    for image_id in frame["id"][:4]:
        shutil.copy(sample_dir / "images" / f"{image_id}.jpg", sharp / f"{image_id}.jpg")
    rows = sharp_frame(frame, tmp_path / "sharp")
    assert list(rows["id"]) == list(frame["id"][:4])
    assert all(str(sharp) in p for p in rows["path"])
    sets = evaluation_sets(frame, Preprocessor(height=32, width=24), HEADS, sharp=tmp_path / "sharp", shifts=["blur"])
    assert [s.name for s in sets] == ["thumbnail", "thumbnail@sharp-ids", "sharp", "blur"]
    paired, sharp_set = (load_set(s, vocab) for s in sets[1:3])
    assert list(paired.ids) == list(sharp_set.ids)
    for head in HEADS:
        assert np.array_equal(paired.labels[head], sharp_set.labels[head])


def test_other_shops_labels_blank_means_missing(tmp_path, sample_dir, sample):
    _, vocab = sample
    frame = other_shops_frame(_other_shops(tmp_path, sample_dir), HEADS)
    assert list(frame["setting"]) == ["product", "model", "product"]
    assert pd.isna(frame["gender"][1]) and frame["season"].isna().all()
    sets = evaluation_sets(frame.iloc[:0], Preprocessor(height=32, width=24), HEADS, other_shops=tmp_path / "others")
    names = [s.name for s in sets]
    assert names[-2:] == ["other-shops", "other-shops-product"]
    product = load_set(sets[-1], vocab)
    assert len(product) == 2 and (product.labels["season"] == -1).all()
    with pytest.raises(DataError, match="no labels.csv"):
        other_shops_frame(tmp_path, HEADS)
