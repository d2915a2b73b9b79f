"""Regenerate the committed small real sample (data/sample) from a full Kaggle-layout dataset.

Up to ``per_class`` images per articleType, taken from the committed split's test side where the
class has enough test images (so demo examples are images the model never saw), topped up from
val, then train. A few grayscale images, one row with an empty label per head that has any, the
pixel-identical groups with conflicting labels and a few productDisplayNames with commas are added
so tests and the EDA see those quirks. JPEG bytes are copied unchanged and the
styles.csv lines are copied verbatim (same quoting as the source file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import numpy as np
import pandas as pd
from PIL import Image

from fashion import HEADS
from fashion.data.dataset import find_layout, load_dataset
from fashion.data.paths import SPLIT_SEED
from fashion.data.split import read_split
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

SAMPLE_SEED = SPLIT_SEED  # the committed sample was drawn with the project seed
SPLIT_PREFERENCE = ("test", "val", "train")
# Pixel-identical pairs whose articleTypes disagree (SOURCES.md); they exercise the conflict report.
CONFLICT_GROUPS = ((4898, 4899), (12345, 12346))
# productDisplayNames with commas (one or several, with and without spaces) and one with a double
# quote: unquoted in the original Kaggle styles.csv, so tests can rebuild that form from real rows.
QUOTED_NAME_ROWS = (44065, 23124, 23127, 7491)

ATTRIBUTION = """\
# Sample data: attribution

These {n} images and their `styles.csv` rows are a small, unmodified subset of
*Fashion Product Images (Small)* by Param Aggarwal (Myntra catalogue photos, 60x80 JPEGs):
https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-small
(full-size version: https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-dataset).

- Licence: given as **MIT** on the Kaggle listing according to third-party READMEs that cite it
  (Kaggle itself could not be checked; one other third-party README says CC0). Treat it as MIT,
  unverified. The photos are Myntra product shots.
- Source of these bytes: the project's shared copy of the dataset (its SOURCES.md traces every file
  to public snapshots of the Kaggle data). Only non-image JPEG metadata had been stripped there;
  the files here are byte-identical to that copy.
- Selection: `fashion.data.sample.make_sample` (seed {seed}): up to {per_class} images per articleType,
  preferring the committed split's **test** side ({from_test} of {n} images are test images), plus
  {grey} grayscale images, rows with an empty label ({empties}),
  the pixel-identical pairs with conflicting articleTypes {conflicts}, and rows whose
  productDisplayName holds commas or a double quote ({quoted}; CSV-quoted here, unquoted in the original).
- `styles.csv` keeps the original header and the rows' text verbatim.

Regenerate (same inputs give the same files):

```
.venv/bin/python -m fashion.data.sample ../shared/datasets/fashion-product-images
```
"""


def _grayscale_ids(frame: pd.DataFrame) -> set[int]:
    grey = set()
    for image_id, path in zip(frame["id"], frame["path"]):
        with Image.open(path) as image:  # reads the header only
            if image.mode != "RGB":
                grey.add(int(image_id))
    return grey


def choose_sample(
    frame: pd.DataFrame,
    per_class: int = 3,
    grayscale: int = 4,
    seed: int = SAMPLE_SEED,
    conflict_groups=CONFLICT_GROUPS,
) -> list[int]:
    """Pick sample ids from a loaded dataset frame that has a ``split`` column."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for article_type in sorted(frame["articleType"].dropna().unique()):
        members = frame[frame["articleType"] == article_type]
        picked: list[int] = []
        for split_name in SPLIT_PREFERENCE:
            ids = sorted(int(i) for i in members.loc[members["split"] == split_name, "id"])
            need = per_class - len(picked)
            if need <= 0:
                break
            picked += [ids[i] for i in sorted(rng.permutation(len(ids))[:need])]
        chosen += picked
    test = frame[frame["split"] == "test"]
    grey = sorted(_grayscale_ids(test) - set(chosen))
    chosen += [grey[i] for i in sorted(rng.permutation(len(grey))[:grayscale])]
    for head in HEADS:  # one row with an empty label per head, test side first
        empty = frame[frame[head].isna()].assign(rank=lambda f: f["split"].map(SPLIT_PREFERENCE.index))
        if len(empty):
            chosen.append(int(empty.sort_values(["rank", "id"])["id"].iloc[0]))
    present = set(frame["id"])
    chosen += [i for i in QUOTED_NAME_ROWS if i in present]
    for group in conflict_groups:
        chosen += [i for i in group if i in present and i not in chosen]
    return sorted(set(chosen))


def make_sample(
    data_dir: str | Path,
    split_file: str | Path,
    out_dir: str | Path,
    per_class: int = 3,
    grayscale: int = 4,
    seed: int = SAMPLE_SEED,
) -> list[int]:
    """Write ``out_dir``/styles.csv, images/<id>.jpg and ATTRIBUTION.md; return the chosen ids."""
    frame, _ = load_dataset(data_dir)
    frame = frame.merge(read_split(split_file), on="id", how="left")
    ids = choose_sample(frame, per_class=per_class, grayscale=grayscale, seed=seed)

    out_dir = Path(out_dir)
    images_out = out_dir / "images"
    if images_out.exists():
        shutil.rmtree(images_out)
    images_out.mkdir(parents=True)
    styles_csv, images_dir = find_layout(data_dir)
    wanted = set(ids)
    lines = styles_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [lines[0]] + [
        line for line in lines[1:] if line.split(",", 1)[0].strip().isdigit() and int(line.split(",", 1)[0]) in wanted
    ]
    (out_dir / "styles.csv").write_text("".join(kept), encoding="utf-8")
    for image_id in ids:
        shutil.copyfile(images_dir / f"{image_id}.jpg", images_out / f"{image_id}.jpg")

    split_of = dict(zip(frame["id"], frame["split"]))
    grey = _grayscale_ids(frame[frame["id"].isin(wanted)])
    sample = frame[frame["id"].isin(wanted)]
    empties = ", ".join(
        f"{h}: {', '.join(map(str, sample.loc[sample[h].isna(), 'id']))}" for h in HEADS if sample[h].isna().any()
    )
    conflicts = ", ".join("/".join(map(str, g)) for g in CONFLICT_GROUPS)
    (out_dir / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(
            n=len(ids),
            seed=seed,
            per_class=per_class,
            grey=len(grey),
            empties=empties,
            conflicts=conflicts,
            quoted=", ".join(map(str, QUOTED_NAME_ROWS)),
            from_test=sum(split_of.get(i) == "test" for i in ids),
        ),
        encoding="utf-8",
    )
    return ids


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("data_dir", required=False)
def main(data_dir: str | None) -> None:
    """Rewrite data/sample from the full dataset at DATA_DIR (default: the usual places, see fashion.data.paths)."""
    from .paths import DEFAULT_SPLIT, REPO_ROOT, SAMPLE_DIR, resolve_data_dir

    chosen = make_sample(
        resolve_data_dir(data_dir, option="DATA_DIR"), REPO_ROOT / DEFAULT_SPLIT, REPO_ROOT / SAMPLE_DIR
    )
    click.echo(f"wrote {len(chosen)} images to {REPO_ROOT / SAMPLE_DIR}")


if __name__ == "__main__":
    main()
