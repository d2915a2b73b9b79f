"""Read a Fashion Product Images folder in Kaggle layout (full or small variant).

    <data>/styles.csv          id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName
    <data>/images/<id>.jpg

The original styles.csv has rows whose productDisplayName holds unquoted commas; those extra
fields are joined back into the last column (never dropped) and counted. Rows without an image,
unreadable images and empty/NA labels are counted; a missing label is stored as None so that
head is masked while the row still trains the others.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fashion import HEADS
from fashion.runtime.errors import InvalidImageError
from fashion.runtime.preprocess import load_image

from .errors import DataFormatError
from .paths import find_layout

__all__ = ["DatasetReport", "find_layout", "load_dataset", "read_styles"]

MISSING_VALUES = {"", "NA", "N/A", "nan", "NaN", "None", "null"}


@dataclass
class DatasetReport:
    """What loading found; every count is reported, nothing is dropped silently."""

    styles_csv: str
    images_dir: str
    rows: int = 0
    repaired_rows: int = 0
    missing_images: list[int] = field(default_factory=list)
    unreadable_images: list[int] = field(default_factory=list)
    duplicate_ids: int = 0
    invalid_id_rows: int = 0
    empty_labels: dict[str, int] = field(default_factory=dict)
    images: int = 0

    def summary(self) -> str:
        empty = ", ".join(f"{h}={n}" for h, n in self.empty_labels.items() if n) or "none"
        return (
            f"{self.images:,} images usable from {self.rows:,} label rows ({self.styles_csv}); "
            f"{self.repaired_rows} rows repaired (unquoted commas); "
            f"{len(self.missing_images)} rows without an image; {len(self.unreadable_images)} unreadable images; "
            f"{self.duplicate_ids} duplicate ids; {self.invalid_id_rows} rows without a numeric id; "
            f"empty labels: {empty}"
        )

    def to_dict(self) -> dict:
        return {
            "styles_csv": self.styles_csv,
            "images_dir": self.images_dir,
            "rows": self.rows,
            "images": self.images,
            "repaired_rows": self.repaired_rows,
            "missing_images": self.missing_images,
            "unreadable_images": self.unreadable_images,
            "duplicate_ids": self.duplicate_ids,
            "invalid_id_rows": self.invalid_id_rows,
            "empty_labels": self.empty_labels,
        }


def read_styles(styles_csv: str | Path) -> tuple[list[str], list[list[str]], int]:
    """Parse styles.csv; return (header, rows, number of rows repaired by joining extra fields)."""
    text = Path(styles_csv).read_text(encoding="utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    width = len(header)
    rows, repaired = [], 0
    for fields in reader:
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) > width:
            fields = fields[: width - 1] + [",".join(fields[width - 1 :])]
            repaired += 1
        elif len(fields) < width:
            fields = fields + [""] * (width - len(fields))
        rows.append(fields)
    return header, rows, repaired


def _clean(value: str) -> str | None:
    value = value.strip()
    return None if value in MISSING_VALUES else value


def image_path(images_dir: Path, image_id: int) -> Path:
    return images_dir / f"{image_id}.jpg"


def load_dataset(
    data_dir: str | os.PathLike[str], verify_images: bool = False, progress: bool = False
) -> tuple[pd.DataFrame, DatasetReport]:
    """Load labels and image paths. Columns: id, path, the six heads (None where missing), and the rest.

    ``verify_images`` decodes every image so unreadable files are counted (and excluded) now
    rather than failing mid-training.
    """
    styles_csv, images_dir = find_layout(data_dir)
    header, rows, repaired = read_styles(styles_csv)
    missing_heads = [h for h in HEADS + ("id",) if h not in header]
    if missing_heads:
        raise DataFormatError(f"{styles_csv}: missing columns {missing_heads}")
    report = DatasetReport(
        styles_csv=str(styles_csv), images_dir=str(images_dir), rows=len(rows), repaired_rows=repaired
    )

    records: list[dict[str, object]] = []
    seen: Counter[int] = Counter()
    for fields in rows:
        record = dict(zip(header, fields))
        try:
            image_id = int(record["id"])
        except ValueError:
            report.invalid_id_rows += 1
            continue
        seen[image_id] += 1
        if seen[image_id] > 1:
            continue
        cleaned: dict[str, object] = {key: _clean(value) for key, value in record.items()}
        cleaned["id"] = image_id
        cleaned["path"] = str(image_path(images_dir, image_id))
        records.append(cleaned)
    report.duplicate_ids = sum(n - 1 for n in seen.values() if n > 1)

    frame = pd.DataFrame.from_records(records)
    exists = frame["path"].map(lambda p: Path(p).is_file())
    report.missing_images = sorted(int(i) for i in frame.loc[~exists, "id"])
    frame = frame[exists]
    if verify_images:
        report.unreadable_images = _unreadable(frame, progress)
        frame = frame[~frame["id"].isin(report.unreadable_images)]
    frame = frame.sort_values("id").reset_index(drop=True)
    report.empty_labels = {head: int(frame[head].isna().sum()) for head in HEADS}
    report.images = len(frame)
    return frame, report


def _unreadable(frame: pd.DataFrame, progress: bool) -> list[int]:
    from tqdm import tqdm

    bad = []
    for image_id, path in tqdm(
        zip(frame["id"], frame["path"]), total=len(frame), disable=not progress, desc="verifying images", unit="img"
    ):
        try:
            load_image(path)
        except InvalidImageError:
            bad.append(int(image_id))
    return sorted(bad)
