"""fashion-predict on the tiny bundle and real sample photos: rows, folders, outputs, Ctrl-C, bundle problems."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from fashion import HEADS
from fashion.runtime import Classifier
from fashion.runtime.cli import main

HEIC_HEADER = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00heicmif1"


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:4]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def command() -> list[str]:
    script = Path(sys.executable).with_name("fashion-predict")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fashion.runtime.cli"]


def copy_bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


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
    assert not (tmp_path / "predictions.csv.partial").exists()  # renamed into place at the end


def test_every_file_of_a_folder_gets_a_row_and_hidden_files_are_skipped_knowingly(tiny_bundle, photos, tmp_path):
    folder = tmp_path / "shoot" / "day1"
    folder.mkdir(parents=True)
    with Image.open(photos[0]) as image:
        image.save(folder / "a.avif", format="AVIF")
        image.save(folder / "b.png")
    shutil.copy(photos[1], folder / "c.jfif")
    shutil.copy(photos[2], folder / "d.jpg")
    (folder / "e.heic").write_bytes(HEIC_HEADER + b"\x00" * 64)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "shoot" / ".cache").mkdir()
    (tmp_path / "shoot" / ".cache" / "x.jpg").write_bytes(photos[3].read_bytes())
    result = invoke(tiny_bundle, tmp_path / "shoot", "--consistent")
    assert result.exit_code == 1
    records = {Path(r["source"]).name: r for r in json.loads(result.stdout)}
    assert sorted(records) == ["a.avif", "b.png", "c.jfif", "d.jpg", "e.heic", "notes.txt"]
    assert all(records[name]["consistent"] for name in ("a.avif", "b.png", "c.jfif", "d.jpg"))
    assert "not an image file (type '.txt')" in records["notes.txt"]["error"]
    assert "pillow-heif" in records["e.heic"]["error"]
    assert "skipped 2 hidden file(s)" in result.stderr and "2 of 6 inputs failed" in result.stderr


def test_csv_has_top_k_label_and_probability_columns_per_head(tiny_bundle, photos, labels_count=5):
    result = invoke(tiny_bundle, photos[0], "--format", "csv", "--top-k", labels_count)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    with Classifier.load(tiny_bundle) as clf:
        expected = clf.predict(photos[0], top_k=labels_count)
    for head in HEADS:
        ranked = expected.heads[head].top_k
        for rank, (label, probability) in enumerate(ranked, start=1):
            assert rows[0][f"{head}_top{rank}"] == label
            assert abs(float(rows[0][f"{head}_top{rank}_probability"]) - probability) < 1e-6
        assert f"{head}_top{labels_count}" in rows[0]


def test_formula_like_file_names_are_escaped_in_csv(tiny_bundle, photos, tmp_path, monkeypatch):
    name = "=2+5+cmd|' -C calc'!A0.jpg"
    shutil.copy(photos[0], tmp_path / name)
    monkeypatch.chdir(tmp_path)
    result = invoke(tiny_bundle, name, "-", "--format", "csv")
    assert result.exit_code == 1  # "-" is no file: its row says so
    rows = list(csv.reader(io.StringIO(result.stdout)))[1:]
    assert [row[0] for row in rows] == ["'" + name, "'-"]
    assert rows[0][2] and not rows[0][1]  # predicted, only the cell text is protected
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


@pytest.mark.parametrize("where", ["missing-folder", "a-directory"])
def test_unusable_output_path_exits_2_before_any_prediction(tiny_bundle, photos, tmp_path, where):
    output = tmp_path / "no" / "such" / "out.json" if where == "missing-folder" else tmp_path
    result = invoke(tiny_bundle, *photos, "-o", output)
    assert result.exit_code == 2
    assert "--output" in result.stderr and ("does not exist" in result.stderr or "is a directory" in result.stderr)
    assert "predicting" not in result.stderr and not list(tmp_path.glob("**/*.partial"))


def test_ctrl_c_keeps_the_rows_done_and_says_where(tiny_bundle, photos, tmp_path):
    output = tmp_path / "predictions.csv"
    partial = tmp_path / "predictions.csv.partial"
    inputs = [str(p) for p in photos] * 1500  # long enough to be interrupted mid-run
    process = subprocess.Popen(
        command() + [str(tiny_bundle), *inputs, "--batch-size", "1", "--format", "csv", "-o", str(output)],
        stderr=subprocess.PIPE,
        text=True,
        # a runner started in the background (no job control) passes SIGINT on ignored, and Python then installs
        # no Ctrl-C handler: give the CLI the disposition a terminal gives it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not (partial.is_file() and partial.read_text().count("\n") >= 3):
        assert process.poll() is None, process.stderr.read()
        assert time.time() < deadline, "no rows written within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted after" in stderr and str(partial) in stderr
    rows = list(csv.DictReader(io.StringIO(partial.read_text())))
    assert 2 <= len(rows) < len(inputs) and all(row["articleType"] for row in rows)
    assert not output.exists()


def test_bundle_problems_exit_2_with_a_message(tiny_bundle, photos, tmp_path):
    (tmp_path / "bundle.json").write_text("{}")
    result = invoke(tmp_path, photos[0])
    assert result.exit_code == 2 and "Error: " in result.stderr and "schema_version" in result.stderr
    result = invoke(tiny_bundle, photos[0], "--precision", "int8")
    assert result.exit_code == 2 and "int8" in result.stderr
    assert invoke(tiny_bundle, photos[0], "--top-k", "0").exit_code == 2


@pytest.mark.parametrize("damage", ["labels-head-not-a-list", "input-without-height"])
def test_a_malformed_bundle_exits_2_without_a_traceback(tiny_bundle, photos, tmp_path, damage):
    from fashion.runtime.bundle import record_file

    bundle = copy_bundle(tiny_bundle, tmp_path)
    if damage == "labels-head-not-a-list":
        labels = json.loads((bundle / "labels.json").read_text())
        labels["gender"] = {"0": "Men"}
        (bundle / "labels.json").write_text(json.dumps(labels))
        record_file(bundle, "labels.json")  # a consistent sha256: the content itself is the problem
    else:
        manifest = json.loads((bundle / "bundle.json").read_text())
        del manifest["input"]["height"]
        (bundle / "bundle.json").write_text(json.dumps(manifest))
    done = subprocess.run(command() + [str(bundle), str(photos[0])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("Error: ")
    assert ("gender" in done.stderr) if damage.startswith("labels") else ("height" in done.stderr)


def test_missing_provider_names_the_cli_flag(tiny_bundle, photos):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here: the provider starts")
    result = invoke(tiny_bundle, photos[0], "--provider", "cuda")
    assert result.exit_code == 4
    assert "--allow-fallback" in result.stderr and "allow_fallback=True" not in result.stderr
    assert invoke(tiny_bundle, photos[0], "--provider", "cuda", "--allow-fallback").exit_code == 0


def test_check_lists_bundle_problems(tiny_bundle, tmp_path):
    result = invoke("--check", tiny_bundle)
    assert result.exit_code == 0, result.stderr
    assert "OK" in result.stdout
    bundle = copy_bundle(tiny_bundle, tmp_path)
    (bundle / "labels.json").write_text((bundle / "labels.json").read_text() + " ")
    result = invoke("--check", bundle)
    assert result.exit_code == 2
    assert "labels.json" in result.stderr and "problem" in result.stderr


def test_short_help_and_usage_errors():
    result = invoke("-h")
    assert result.exit_code == 0 and "--top-k" in result.stdout and "Exit status" in result.stdout
    assert invoke().exit_code == 2


def test_console_script_runs_with_a_progress_bar_on_stderr(tiny_bundle, sample_dir, tmp_path):
    images = sorted((sample_dir / "images").glob("*.jpg"))[:40]
    output = tmp_path / "out.json"
    done = subprocess.run(
        command() + [str(tiny_bundle), *map(str, images), "--batch-size", "8", "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(output.read_text())) == 40
    assert "predicting" in done.stderr and "40/40" in done.stderr
