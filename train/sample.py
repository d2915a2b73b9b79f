"""Cut a small real sample (Kaggle layout) out of a Fashion Product Images folder.

The committed ``data/sample`` was made with :func:`make_sample` on the shared data and the committed
split, so its images are test-split images where a class has them (unseen by training, good demo
examples). JPEG bytes are copied unchanged and the label rows keep the Kaggle ``styles.csv`` form.

    python -c "from fashion.train.sample import make_sample; make_sample('../shared/datasets/fashion-product-images', \
        'data/sample', 'data/splits/fashion-product-images.csv')"
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from fashion import HEADS
from fashion.train.dataset import find_layout, image_path, load_dataset, read_styles
from fashion.train.split import read_split

SPLIT_PREFERENCE = {"test": 0, "val": 1, "train": 2}
DEFAULT_SEED = 20261127


def _is_grayscale(path: str) -> bool:
    with Image.open(path) as image:  # reads the header only
        return image.mode in ("L", "LA", "1")


def choose_sample(data_dir: str | Path, split_file: str | Path | None = None, per_class: int = 3,
                  grayscale: int = 6, empty_labels: int = 2, seed: int = DEFAULT_SEED) -> list[int]:
    """Ids of up to ``per_class`` images per articleType, test split first, random within a split (seeded).

    ``grayscale`` classes get one grayscale image and ``empty_labels`` classes one row with an empty
    label (when such images exist), so the sample exercises those code paths too.
    """
    frame, _ = load_dataset(data_dir)
    if split_file is not None:
        frame = frame.merge(read_split(split_file), on="id", how="left")
        frame["split"] = frame["split"].fillna("train")
    else:
        frame["split"] = "test"
    rng = np.random.default_rng(seed)
    frame = frame.assign(shuffle=rng.permutation(len(frame)), rank=frame["split"].map(SPLIT_PREFERENCE))
    frame = frame.sort_values(["rank", "shuffle"])

    chosen: dict[str, list[int]] = {}
    for article, group in frame.groupby("articleType", sort=True):
        chosen[article] = [int(i) for i in group["id"].head(per_class)]

    by_id = frame.set_index("id")
    head_cols = list(HEADS)
    special: list[tuple[str, int]] = []  # (class, id) substitutions, at most one per class
    for head in head_cols:  # one row with an empty label per head that has any, while budget lasts
        empty = by_id[by_id[head].isna()]
        if len(special) < empty_labels and len(empty):
            special.append((empty["articleType"].iloc[0], int(empty.index[0])))
    gray_found = 0
    for image_id, row in by_id.iterrows():
        if gray_found >= grayscale:
            break
        if row["rank"] != 0 or any(c == row["articleType"] for c, _ in special):
            continue
        if _is_grayscale(row["path"]):
            special.append((row["articleType"], int(image_id)))
            gray_found += 1
    for article, image_id in special:
        ids = chosen[article]
        if image_id not in ids:
            ids[-1] = image_id
    return sorted(i for ids in chosen.values() for i in ids)


def write_sample(data_dir: str | Path, out_dir: str | Path, ids: list[int]) -> Path:
    """Copy the images (exact bytes) and styles.csv rows (Kaggle form, CSV-quoted) for ``ids``."""
    styles_csv, images_dir = find_layout(data_dir)
    header, rows, _ = read_styles(styles_csv)
    wanted = set(ids)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    kept = sorted((r for r in rows if r[0].strip().isdigit() and int(r[0]) in wanted), key=lambda r: int(r[0]))
    with open(out_dir / "styles.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(kept)
    for image_id in sorted(wanted):
        shutil.copyfile(image_path(images_dir, image_id), image_path(out_dir / "images", image_id))
    return out_dir


def make_sample(data_dir: str | Path, out_dir: str | Path, split_file: str | Path | None = None,
                per_class: int = 3, seed: int = DEFAULT_SEED) -> Path:
    """Choose and write the sample; regenerating with the same inputs gives the same files."""
    return write_sample(data_dir, out_dir, choose_sample(data_dir, split_file, per_class=per_class, seed=seed))
