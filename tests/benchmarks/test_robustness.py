"""The robustness suite on a tiny real bundle: every set scored per head, JSON and Markdown written."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from fashion.benchmarks.robustness import RobustnessConfig, run_robustness
from fashion.data.evalsets import SHIFTS


def test_robustness_scores_every_set_for_two_bundles(tmp_path, tiny_bundle, sample_dir):
    ids = pd.read_csv(sample_dir / "styles.csv", usecols=["id"])["id"]
    split = tmp_path / "split.csv"
    pd.DataFrame({"id": ids, "split": "test"}).to_csv(split, index=False)
    sharp = tmp_path / "sharp"
    sharp.mkdir()
    for image_id in ids[:5]:
        shutil.copy(sample_dir / "images" / f"{image_id}.jpg", sharp / f"{image_id}.jpg")
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    config = RobustnessConfig(
        bundles=[str(tiny_bundle), str(tiny_bundle)],
        names=["new", "old"],
        data=str(sample_dir),
        split_file=str(split),
        sharp=str(sharp),
    )
    logged: list[str] = []
    result = run_robustness(config, out_json, out_md, log=logged.append)
    sets = result["bundles"]["new"]["sets"]
    assert list(sets) == ["thumbnail", "thumbnail@sharp-ids", "sharp", *SHIFTS]
    assert sets["sharp"]["n"] == 5 and sets["thumbnail"]["n"] == len(ids)
    assert 0 <= sets["blur"]["gender"]["accuracy"] <= 1
    assert sets == result["bundles"]["old"]["sets"], "the same bundle scores the same on the same pixels"
    assert json.loads(out_json.read_text())["bundles"]["new"]["artifact"]
    markdown = out_md.read_text()
    assert "## new minus old" in markdown and "| sharp |" in markdown and "+0.0" in markdown
    assert len(logged) == 2 * len(sets)


def test_fashion_bench_robustness_mode(tmp_path, tiny_bundle, sample_dir):
    from click.testing import CliRunner

    from fashion.benchmarks.cli import main

    ids = pd.read_csv(sample_dir / "styles.csv", usecols=["id"])["id"]
    split = tmp_path / "split.csv"
    pd.DataFrame({"id": ids, "split": "test"}).to_csv(split, index=False)
    md = tmp_path / "r.md"
    args = ["robustness", str(tiny_bundle), "--data", str(sample_dir), "--split-file", str(split)]
    result = CliRunner().invoke(main, [*args, "--baseline", str(tiny_bundle), "--markdown", str(md), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "| blur |" in result.output and md.read_text().count("## ") == 3
    refused = CliRunner().invoke(main, [str(tiny_bundle), "--sharp", str(sample_dir)])
    assert refused.exit_code == 2 and "fashion-bench robustness BUNDLE --sharp" in refused.output
