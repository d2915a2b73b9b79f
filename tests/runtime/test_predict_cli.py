"""fashion-predict on the tiny bundle and real sample photos."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion import HEADS
from fashion.runtime import Classifier
from fashion.runtime.cli import main


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:4]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_json_output_matches_the_library(tiny_bundle, photos):
    result = invoke(tiny_bundle, *photos, "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["source"] for r in records] == [str(p) for p in photos]
    with Classifier.load(tiny_bundle) as clf:
        for record, photo in zip(records, photos):
            expected = clf.predict(photo, top_k=2)
            assert {h: record["heads"][h]["label"] for h in HEADS} == expected.labels()
            assert all(len(record["heads"][h]["top_k"]) <= 2 for h in HEADS)


def test_a_failed_input_gives_exit_1_and_the_others_are_still_written(tiny_bundle, photos, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(photos[0].read_bytes()[:200])
    out = tmp_path / "predictions.csv"
    result = invoke(tiny_bundle, photos[0], tmp_path / "broken.jpg", photos[1], "--format", "csv", "--output", out)
    assert result.exit_code == 1
    assert "broken.jpg" in result.stderr and "1 of 3 inputs failed" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [Path(r["source"]).name for r in rows] == [photos[0].name, "broken.jpg", photos[1].name]
    assert rows[1]["error"] and not rows[1]["articleType"]
    assert rows[0]["articleType"] and not rows[0]["error"] and 0 < float(rows[0]["articleType_confidence"]) <= 1


def test_directories_are_searched_for_images(tiny_bundle, photos, tmp_path):
    folder = tmp_path / "shoot" / "day1"
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    (folder / "notes.txt").write_text("not an image")
    result = invoke(tiny_bundle, tmp_path / "shoot", "--consistent")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert sorted(Path(r["source"]).name for r in records) == sorted(p.name for p in photos)
    assert all(r["consistent"] for r in records)


def test_unusable_bundle_or_options_exit_2(tiny_bundle, photos, tmp_path):
    (tmp_path / "bundle.json").write_text("{}")
    result = invoke(tmp_path, photos[0])
    assert result.exit_code == 2 and "schema_version" in result.stderr
    result = invoke(tiny_bundle, photos[0], "--precision", "int8")
    assert result.exit_code == 2 and "no onnx artifact for precision int8" in result.stderr
    assert invoke(tiny_bundle, photos[0], "--top-k", "0").exit_code == 2


def test_console_script_runs_with_a_progress_bar_on_stderr(tiny_bundle, sample_dir):
    images = sorted((sample_dir / "images").glob("*.jpg"))[:40]
    script = Path(sys.executable).with_name("fashion-predict")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fashion.runtime.cli"]
    done = subprocess.run(command + [str(tiny_bundle), *map(str, images), "--batch-size", "8"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 40
    assert "predicting" in done.stderr and "40/40" in done.stderr
