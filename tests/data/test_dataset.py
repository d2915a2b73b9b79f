"""The dataset reader on real rows: Kaggle quirks are repaired or counted, never silently dropped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from fashion import HEADS
from fashion.data.dataset import find_layout, load_dataset, read_styles
from fashion.data.labels import MISSING, build_vocabularies, encode

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"

# Real rows of the original Kaggle styles.csv whose productDisplayName holds commas (and one a bare
# quote); the original file writes them unquoted, which breaks a plain CSV reader.
ORIGINAL_COMMA_ROWS = [
    "44065,Men,Personal Care,Fragrance,Perfume and Body Mist,Blue,Spring,2017,Casual,"
    "Boss Men Perfume, After Shave Balm and Shower Gel Set",
    "23124,Unisex,Footwear,Flip Flops,Flip Flops,Navy Blue,Spring,2013,Casual,"
    "Converse Unisex Navy Blue Liv,Laugh,Love Flip-flops",
    "59768,Women,Accessories,Jewellery,Earrings,Gold,Winter,2016,Casual,"
    "Estelle Women Gold, Silver and Copper Toned Earrings",
]
ORIGINAL_QUOTE_ROW = (
    "7491,Women,Apparel,Bottomwear,Shorts,Pink,Summer,2011,Sports,Nike Women's EM Tempo 3.5\" Pink Short"
)


def _sample_lines(sample_dir: Path, n: int) -> list[str]:
    lines = (sample_dir / "styles.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER
    return [line for line in lines[1:] if '"' not in line][:n]


def _kaggle_folder(root: Path, sample_dir: Path, lines: list[str], with_images: set[int] | None = None) -> Path:
    """A Kaggle-layout folder with these styles.csv lines; every row gets a real sample JPEG unless excluded."""
    (root / "images").mkdir(parents=True)
    (root / "styles.csv").write_text("\n".join([HEADER] + lines) + "\n", encoding="utf-8")
    donors = sorted((sample_dir / "images").glob("*.jpg"))
    for k, line in enumerate(lines):
        key = line.split(",", 1)[0]
        if not key.isdigit():
            continue
        image_id = int(key)
        if with_images is None or image_id in with_images:
            source = sample_dir / "images" / f"{image_id}.jpg"
            shutil.copyfile(source if source.is_file() else donors[k], root / "images" / f"{image_id}.jpg")
    return root


def test_original_unquoted_commas_are_repaired_counted_and_kept(tmp_path, sample_dir):
    lines = _sample_lines(sample_dir, 20) + ORIGINAL_COMMA_ROWS + [ORIGINAL_QUOTE_ROW]
    folder = _kaggle_folder(tmp_path / "kaggle", sample_dir, lines)
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(folder / "styles.csv")  # what a naive reader does with the original file

    frame, report = load_dataset(folder)
    assert report.repaired_rows == len(ORIGINAL_COMMA_ROWS)
    assert report.rows == report.images == len(lines) == len(frame)
    names = frame.set_index("id")["productDisplayName"]
    assert names[44065] == "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    assert names[23124] == "Converse Unisex Navy Blue Liv,Laugh,Love Flip-flops"
    assert names[7491] == "Nike Women's EM Tempo 3.5\" Pink Short"
    row = frame.set_index("id").loc[59768]
    assert (row["articleType"], row["baseColour"], row["season"], row["usage"]) == (
        "Earrings",
        "Gold",
        "Winter",
        "Casual",
    )
    assert "3 rows repaired" in report.summary()


def test_empty_and_na_labels_become_none_and_are_counted(tmp_path, sample_dir):
    lines = _sample_lines(sample_dir, 6)
    fields = [line.split(",") for line in lines]
    fields[0][5] = ""  # baseColour empty
    fields[1][6] = "NA"  # season NA
    fields[2][1] = " "  # gender blank
    fields[3][8] = "NA"  # usage NA (not a head, still None)
    folder = _kaggle_folder(tmp_path / "kaggle", sample_dir, [",".join(f) for f in fields])
    frame, report = load_dataset(folder)
    assert len(frame) == 6, "a row with a missing label still trains the other heads"
    by_id = frame.set_index("id")
    ids = [int(f[0]) for f in fields]
    assert pd.isna(by_id.loc[ids[0], "baseColour"])
    assert pd.isna(by_id.loc[ids[1], "season"])
    assert pd.isna(by_id.loc[ids[2], "gender"])
    assert pd.isna(by_id.loc[ids[3], "usage"])
    assert by_id.loc[ids[0], "articleType"] == fields[0][4]
    assert report.empty_labels == {h: (1 if h in ("baseColour", "season", "gender") else 0) for h in HEADS}

    vocabularies = build_vocabularies(frame)
    assert "NA" not in vocabularies["season"] and "" not in vocabularies["baseColour"]
    encoded = encode(frame, vocabularies)
    position = {image_id: k for k, image_id in enumerate(frame["id"])}
    assert encoded["baseColour"][position[ids[0]]] == MISSING
    assert encoded["season"][position[ids[1]]] == MISSING
    assert encoded["gender"][position[ids[2]]] == MISSING
    assert encoded["articleType"][position[ids[0]]] >= 0, "the other heads keep their labels"


def test_rows_without_image_and_unreadable_images_are_counted(tmp_path, sample_dir):
    lines = _sample_lines(sample_dir, 8)
    ids = [int(line.split(",", 1)[0]) for line in lines]
    folder = _kaggle_folder(tmp_path / "kaggle", sample_dir, lines, with_images=set(ids[2:]))
    (folder / "images" / f"{ids[2]}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "images" / f"{ids[3]}.jpg").write_bytes(b"")
    full = (folder / "images" / f"{ids[4]}.jpg").read_bytes()
    (folder / "images" / f"{ids[4]}.jpg").write_bytes(full[: len(full) // 3])  # truncated

    frame, report = load_dataset(folder)
    assert report.missing_images == sorted(ids[:2])
    assert report.images == len(frame) == 6

    frame, report = load_dataset(folder, verify_images=True)
    assert report.missing_images == sorted(ids[:2])
    assert report.unreadable_images == sorted(ids[2:5])
    assert sorted(frame["id"]) == sorted(ids[5:])
    assert "2 rows without an image; 3 unreadable images" in report.summary()


def test_duplicate_and_non_numeric_ids_are_counted(tmp_path, sample_dir):
    lines = _sample_lines(sample_dir, 4)
    folder = _kaggle_folder(
        tmp_path / "kaggle", sample_dir, lines + [lines[0], "abc" + lines[1][lines[1].index(",") :]]
    )
    frame, report = load_dataset(folder)
    assert report.duplicate_ids == 1 and report.invalid_id_rows == 1
    assert len(frame) == 4


def test_nested_one_folder_down_layout_is_found(tmp_path, sample_dir):
    _kaggle_folder(tmp_path / "myntradataset", sample_dir, _sample_lines(sample_dir, 3))
    styles, images = find_layout(tmp_path)
    assert styles == tmp_path / "myntradataset" / "styles.csv"
    assert images == tmp_path / "myntradataset" / "images"
    frame, report = load_dataset(tmp_path)
    assert report.images == 3
    with pytest.raises(FileNotFoundError, match="Kaggle layout"):
        find_layout(tmp_path / "myntradataset" / "images")


def test_committed_sample_is_small_real_and_complete(sample_dir):
    frame, report = load_dataset(sample_dir, verify_images=True)
    assert report.images == report.rows == len(frame) >= 300
    assert not report.missing_images and not report.unreadable_images
    assert frame.groupby("articleType").size().max() <= 6  # 3 per class plus a few quirk rows
    assert frame["articleType"].nunique() >= 140
    assert report.empty_labels["baseColour"] >= 1 and report.empty_labels["season"] >= 1
    total = sum(p.stat().st_size for p in sample_dir.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024
    assert (sample_dir / "ATTRIBUTION.md").is_file()


@pytest.mark.slow
def test_shared_data_loader_numbers(shared_data):
    frame, report = load_dataset(shared_data)
    assert report.images == len(frame) == 40_149
    assert report.missing_images == [] and report.duplicate_ids == 0
    assert report.repaired_rows == 0, "the shared copy has its commas CSV-quoted already"
    assert report.empty_labels == {
        "gender": 0,
        "masterCategory": 0,
        "subCategory": 0,
        "articleType": 0,
        "baseColour": 15,
        "season": 20,
    }
    header, rows, _ = read_styles(shared_data / "styles.csv")
    assert len(rows) == 40_149 and header == HEADER.split(",")
    assert frame["articleType"].nunique() == 142


def _unquote_to_original_kaggle_form(quoted_csv: Path) -> tuple[str, int]:
    """Write every row the way the original Kaggle file does: fields joined by bare commas, no quoting."""
    import csv

    with open(quoted_csv, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    text = "\n".join(",".join(row) for row in rows) + "\n"
    return text, sum("," in row[-1] for row in rows[1:])


@pytest.mark.slow
def test_shared_data_in_original_kaggle_form_is_repaired_to_the_same_frame(shared_data, tmp_path):
    text, comma_names = _unquote_to_original_kaggle_form(shared_data / "styles.csv")
    assert comma_names == 20
    (tmp_path / "styles.csv").write_text(text, encoding="utf-8")
    (tmp_path / "images").symlink_to(shared_data / "images")

    original, report = load_dataset(tmp_path)
    quoted, _ = load_dataset(shared_data)
    assert report.repaired_rows == comma_names
    assert report.images == 40_149 and report.missing_images == []
    columns = [c for c in quoted.columns if c != "path"]
    pd.testing.assert_frame_equal(original[columns], quoted[columns])


def test_encode_values_counts_missing_and_unknown():
    from fashion.data.labels import encode_values

    encoded, missing, unknown = encode_values(["a", None, "zz", "b"], ["a", "b"])
    assert encoded.tolist() == [0, MISSING, MISSING, 1] and (missing, unknown) == (1, 1)
    assert encoded.dtype.kind == "i"
