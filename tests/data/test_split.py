"""The split keeps pixel-identical images on one side, is stratified and deterministic; the committed file is sound."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion.data.dataset import load_dataset
from fashion.data.split import SPLITS, attach_split, make_split, pixel_groups, pixel_hash, read_split, write_split
from tests.conftest import SPLIT_FILE


@pytest.fixture(scope="module")
def shared_hashed(shared_data):
    """The shared dataset frame with its pixel-hash group per row (decodes all 40,149 images, ~10-20 s)."""
    frame, _ = load_dataset(shared_data)
    return frame, pixel_groups(frame)


def test_pixel_hash_sees_decoded_pixels_not_file_bytes(tmp_path, sample_dir):
    source = sorted((sample_dir / "images").glob("*.jpg"))[0]
    pixels = Image.open(source).convert("RGB")
    pixels.save(tmp_path / "same.png")  # other format and bytes, same pixels
    (tmp_path / "copy.jpg").write_bytes(source.read_bytes())
    assert pixel_hash(source) == pixel_hash(tmp_path / "same.png") == pixel_hash(tmp_path / "copy.jpg")

    changed = np.asarray(pixels).copy()
    changed[0, 0, 0] ^= 1
    Image.fromarray(changed).save(tmp_path / "changed.png")
    assert pixel_hash(tmp_path / "changed.png") != pixel_hash(source)


def test_make_split_keeps_identical_images_together_and_is_deterministic(tmp_path, sample_dir):
    folder = tmp_path / "data"
    shutil.copytree(sample_dir, folder)
    frame, _ = load_dataset(folder)
    # Give every image of two classes a pixel-identical twin under a new id (same labels).
    twins = frame[frame["articleType"].isin(["Tshirts", "Watches"])].copy()
    twins["id"] = twins["id"] + 1_000_000
    for old, new in zip(twins["id"] - 1_000_000, twins["id"]):
        shutil.copyfile(folder / "images" / f"{old}.jpg", folder / "images" / f"{new}.jpg")
    with open(folder / "styles.csv", "a", encoding="utf-8") as handle:
        for row in twins.itertuples():
            handle.write(
                f"{row.id},{row.gender},{row.masterCategory},{row.subCategory},{row.articleType},"
                f"{row.baseColour},{row.season},{row.year},{row.usage},twin\n"
            )
    frame, report = load_dataset(folder)
    assert report.images == len(twins) * 2 + (len(frame) - 2 * len(twins))

    groups = pixel_groups(frame)
    first = make_split(frame, groups)
    second = make_split(frame, groups)
    pd.testing.assert_frame_equal(first, second)
    assert sorted(first["id"]) == sorted(frame["id"])
    side = dict(zip(first["id"], first["split"]))
    for new in twins["id"]:
        assert side[new] == side[new - 1_000_000]
    assert set(first["split"]) <= set(SPLITS)

    other = make_split(frame, groups, seed=1)
    assert not other.equals(first), "the seed matters"

    write_split(first, tmp_path / "split.csv")
    pd.testing.assert_frame_equal(read_split(tmp_path / "split.csv"), first.sort_values("id").reset_index(drop=True))
    assert len(attach_split(frame, first)) == len(frame)


def test_read_split_rejects_unknown_split_names(tmp_path):
    (tmp_path / "bad.csv").write_text("id,split\n1,train\n2,holdout\n")
    with pytest.raises(ValueError, match="holdout"):
        read_split(tmp_path / "bad.csv")


def test_committed_split_sizes():
    split = read_split(SPLIT_FILE)
    assert split["id"].is_unique
    assert split["split"].value_counts().to_dict() == {"train": 32113, "val": 4018, "test": 4018}


@pytest.mark.slow
def test_committed_split_covers_every_shared_id_exactly_once(shared_data):
    frame, _ = load_dataset(shared_data)
    split = read_split(SPLIT_FILE)
    assert split["id"].is_unique
    assert set(split["id"]) == set(frame["id"])


@pytest.mark.slow
def test_no_pixel_identical_pair_crosses_the_committed_split(shared_hashed):
    frame, groups = shared_hashed
    side = frame[["id"]].assign(group=groups.values).merge(read_split(SPLIT_FILE), on="id")
    assert len(side) == len(frame)
    sides_per_group = side.groupby("group")["split"].nunique()
    sizes = side.groupby("group").size()
    assert (sizes > 1).sum() == 648 and sizes[sizes > 1].sum() == 1422  # see docs/eda/report.md
    crossing = sides_per_group[sides_per_group > 1]
    assert crossing.empty, f"pixel-identical images on different sides: {list(crossing.index[:5])}"


@pytest.mark.slow
def test_committed_split_is_reproduced_by_make_split(shared_hashed):
    frame, groups = shared_hashed
    remade = make_split(frame, groups)
    committed = read_split(SPLIT_FILE).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(remade.reset_index(drop=True), committed)


@pytest.mark.slow
def test_committed_split_is_stratified_on_article_type(shared_data):
    frame, _ = load_dataset(shared_data)
    joined = attach_split(frame, read_split(SPLIT_FILE))
    table = pd.crosstab(joined["articleType"], joined["split"])
    sizes = table.sum(axis=1)
    assert (table.loc[sizes >= 30] > 0).all().all(), "every class with >= 30 images is in all three splits"
    fractions = table.loc[sizes >= 100].div(sizes[sizes >= 100], axis=0)
    assert fractions["val"].between(0.08, 0.12).all() and fractions["test"].between(0.08, 0.12).all()
