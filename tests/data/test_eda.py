"""fashion-eda on the committed sample: every plot and the report exist and carry the real numbers."""

from __future__ import annotations

from collections import Counter

from click.testing import CliRunner
from PIL import Image

from fashion import HEADS
from fashion.data.dataset import load_dataset
from fashion.data.eda_cli import main
from fashion.data.split import pixel_hash
from tests.conftest import SPLIT_FILE

EXPECTED_PLOTS = [f"class_counts_{h}.png" for h in HEADS] + [
    "long_tail.png",
    "missing_values.png",
    "imbalance.png",
    "duplicate_groups.png",
    "split_sizes.png",
]


def test_fashion_eda_on_the_sample(tmp_path, sample_dir):
    out = tmp_path / "eda"
    result = CliRunner().invoke(
        main, ["--data", str(sample_dir), "--out", str(out), "--split-file", str(SPLIT_FILE), "--no-progress"]
    )
    assert result.exit_code == 0, result.output

    frame, report = load_dataset(sample_dir)
    for name in EXPECTED_PLOTS:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 150, name
    assert sum((out / n).stat().st_size for n in EXPECTED_PLOTS) < 1_500_000

    text = (out / "report.md").read_text(encoding="utf-8")
    assert f"| label rows in styles.csv | {report.rows:,} |" in text
    assert f"**{report.images:,}**" in text
    assert f"| baseColour | {report.empty_labels['baseColour']} |" in text
    assert f"| season | {report.empty_labels['season']} |" in text
    articles = frame["articleType"].value_counts()
    assert f"| articleType | {len(articles)} |" in text

    # Duplicate groups and conflicts computed independently with the split's own pixel hash.
    hashes = Counter(pixel_hash(p) for p in frame["path"])
    groups = [n for n in hashes.values() if n > 1]
    assert groups, "the sample carries pixel-identical pairs"
    assert f"**{len(groups)} groups cover {sum(groups):,} ids**" in text
    assert "4898 / 4899" in text and "12345 / 12346" in text  # conflicting articleType pairs kept in the sample
    assert "Pixel-identical groups that cross splits: **0**" in text
    assert report.summary() in result.output


def test_fashion_eda_help_and_without_split(tmp_path, sample_dir):
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "--data" in help_text and "--out" in help_text and "--split-file" in help_text
    out = tmp_path / "eda"
    result = CliRunner().invoke(main, ["--data", str(sample_dir), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not (out / "split_sizes.png").exists()
    assert "No split file given" in (out / "report.md").read_text(encoding="utf-8")


def test_cli_refuses_a_folder_that_is_not_kaggle_layout_with_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "Kaggle layout" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "report.md").exists()
