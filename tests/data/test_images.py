"""The one labelled-image loader on the committed sample: subsets, skipped images, -1 labels, parallel decode."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fashion.data.dataset import load_dataset
from fashion.data.errors import DataError
from fashion.data.images import LabelledData, decode_images, from_frame, load_labelled
from fashion.data.labels import MISSING, build_vocabularies
from fashion.data.paths import DEFAULT_SPLIT, REPO_ROOT
from fashion.runtime.preprocess import build_preprocessor, preprocess

SIZE = (40, 30)
SPLIT = REPO_ROOT / DEFAULT_SPLIT


@pytest.fixture(scope="module")
def vocabularies(sample_dir):
    frame, _ = load_dataset(sample_dir)
    return build_vocabularies(frame)


@pytest.fixture(scope="module")
def broken_copy(tmp_path_factory, sample_dir) -> tuple[Path, list[int]]:
    """A copy of 30 sample rows where two images are corrupt (garbage bytes, truncated JPEG)."""
    root = tmp_path_factory.mktemp("broken")
    lines = (sample_dir / "styles.csv").read_text(encoding="utf-8").splitlines()
    keep = lines[:31]
    (root / "images").mkdir()
    (root / "styles.csv").write_text("\n".join(keep) + "\n", encoding="utf-8")
    ids = [int(line.split(",")[0]) for line in keep[1:]]
    for image_id in ids:
        shutil.copy(sample_dir / "images" / f"{image_id}.jpg", root / "images" / f"{image_id}.jpg")
    bad = sorted(ids)[3], sorted(ids)[10]
    (root / "images" / f"{bad[0]}.jpg").write_bytes(b"this is not a jpeg")
    data = (sample_dir / "images" / f"{bad[1]}.jpg").read_bytes()
    (root / "images" / f"{bad[1]}.jpg").write_bytes(data[: len(data) // 3])
    return root, list(bad)


def test_unreadable_images_are_skipped_and_reported(broken_copy, vocabularies):
    root, bad = broken_copy
    result = load_labelled(root, None, None, vocabularies, SIZE, workers=2)
    assert len(result) == 28 and result.images.shape == (28, 40, 30, 3) and result.images.dtype == np.uint8
    assert sorted(i for i, _ in result.skipped) == bad
    assert all(reason for _, reason in result.skipped)
    assert result.report["unreadable_images"] == sorted(bad) and result.report["requested"] == 30
    assert not set(bad) & set(result.ids.tolist())
    assert all(len(values) == 28 for values in result.labels.values())


def test_images_match_the_runtime_preprocessing_and_ids_are_sorted(sample_dir, vocabularies):
    result = load_labelled(sample_dir, SPLIT, "val", vocabularies, SIZE, limit=5, workers=2)
    assert list(result.ids) == sorted(result.ids)
    for image_id, image in zip(result.ids, result.images):
        assert np.array_equal(image, preprocess(sample_dir / "images" / f"{image_id}.jpg", *SIZE))
    batch = result.batch()
    assert batch.dtype == np.float32 and batch.shape == (5, 40, 30, 3)


def test_seeded_subset_is_deterministic_and_depends_on_the_seed(sample_dir, vocabularies):
    data = LabelledData.open(sample_dir, SPLIT, vocabularies, SIZE, workers=2)
    first = data.images("test", limit=12)
    again = data.images("test", limit=12)
    other = data.images("test", limit=12, seed=1)
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.images, again.images)
    assert not np.array_equal(first.ids, other.ids)
    assert data.count("test") == 310 and len(data.images("val")) == 37


def test_fill_from_tops_up_from_other_splits(sample_dir, vocabularies):
    data = LabelledData.open(sample_dir, SPLIT, vocabularies, SIZE, workers=1)
    result = data.images("val", limit=50, fill_from=("train",))
    assert len(result) == 50
    splits = data.frame.set_index("id").loc[result.ids, "split"]
    assert (splits == "val").sum() == 37 and (splits == "train").sum() == 13


def test_labels_are_ints_with_minus_one_for_missing_and_unknown(sample_dir, vocabularies):
    frame, _ = load_dataset(sample_dir)
    narrowed = {head: classes for head, classes in vocabularies.items()}
    narrowed["gender"] = [c for c in vocabularies["gender"] if c != "Women"]
    result = from_frame(frame, narrowed, SIZE, workers=2)
    for values in result.labels.values():
        assert values.dtype.kind == "i"
    women = (frame.set_index("id").loc[result.ids, "gender"] == "Women").to_numpy()
    assert women.any() and (result.labels["gender"][women] == MISSING).all()
    assert (result.labels["gender"][~women] >= 0).all()
    assert result.report["unknown_labels"]["gender"] == int(women.sum())
    assert result.report["missing_labels"]["baseColour"] == 1 and (result.labels["baseColour"] == MISSING).sum() == 1
    names = result.label_names(narrowed, "gender")
    assert names.count(None) == int(women.sum())


def test_subset_without_split_file_or_unknown_rows_is_a_data_error(sample_dir, vocabularies, tmp_path):
    data = LabelledData.open(sample_dir, None, vocabularies, SIZE)
    with pytest.raises(DataError, match="split"):
        data.images("val")
    other = tmp_path / "split.csv"
    other.write_text("id,split\n1,train\n")
    with pytest.raises(DataError, match="none of its images"):
        LabelledData.open(sample_dir, other, vocabularies, SIZE)


def test_decode_keeps_positions_and_honours_the_spec(broken_copy):
    root, bad = broken_copy
    good = [p for p in sorted((root / "images").glob("*.jpg")) if int(p.stem) not in bad][:3]
    paths = [root / "images" / f"{bad[0]}.jpg"] + good
    spec = build_preprocessor({"fit": "center_crop_then_resize"}, *SIZE)
    decoded = decode_images(paths, SIZE, workers=2, preprocessor=spec)
    assert [p for p, _ in decoded.failed] == [0] and decoded.ok.tolist() == [False, True, True, True]
    assert (decoded.images[0] == 255).all()
    assert np.array_equal(decoded.images[3], spec(paths[3]))
    serial = decode_images(paths, SIZE, workers=1, preprocessor=spec)
    assert np.array_equal(serial.images, decoded.images)
