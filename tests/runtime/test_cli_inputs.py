"""fashion-predict's inputs: odd file names, folder entries that are not files, paths that would hang or flood
the reader, swapped arguments, JSON Lines. Local and --server (a fake KServe server on loopback) alike."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion.runtime import Classifier
from fashion.runtime.cli import main
from fashion.runtime.inputs import MAX_FILE_BYTES
from tests.runtime.kserve_fake import FakeKServe


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    with Classifier.load(tiny_bundle, threads=1) as classifier:
        yield classifier


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:4]


@pytest.fixture(scope="module")
def fake(clf):
    with FakeKServe(clf) as server:
        yield server


def invoke(*args):
    return CliRunner().invoke(main, [os.fsdecode(a) for a in args], catch_exceptions=False)


def where(mode: str, tiny_bundle: Path, fake: FakeKServe) -> list[str]:
    return [str(tiny_bundle)] if mode == "local" else ["--server", fake.url]


@pytest.mark.parametrize("mode", ["local", "server"])
def test_a_non_utf8_file_name_keeps_every_row(tiny_bundle, fake, photos, tmp_path, mode):
    """101 files, one named with a Latin-1 byte: was UnicodeEncodeError and 0 of 101 rows in the CSV."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    for number in range(100):
        shutil.copy(photos[number % 4], folder / f"{number:03d}.jpg")
    odd = os.fsdecode(b"caf\xe9.jpg")
    shutil.copy(photos[0], os.path.join(folder, odd))
    out = tmp_path / "out.csv"
    result = invoke(*where(mode, tiny_bundle, fake), folder, "--format", "csv", "-o", out)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 101 and all(row["articleType"] for row in rows)
    assert str(folder / "caf\\udce9.jpg") in [row["source"] for row in rows]  # escaped as JSON escapes it
    as_json = invoke(*where(mode, tiny_bundle, fake), os.path.join(folder, odd))
    assert json.loads(as_json.stdout)[0]["source"] == os.path.join(folder, odd)


@pytest.mark.parametrize("mode", ["local", "server"])
def test_every_folder_entry_gets_a_row_saying_what_it_is(tiny_bundle, fake, photos, tmp_path, mode):
    """A dangling .jpg link, a FIFO and a link to /dev/zero were dropped without a row or a skipped line."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    shutil.copy(photos[0], folder / "a.jpg")
    (folder / "b-dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(folder / "c-fifo.jpg")
    (folder / "d-zero.jpg").symlink_to("/dev/zero")
    (folder / "e-folder-link").symlink_to(tmp_path)
    result = invoke(*where(mode, tiny_bundle, fake), folder, "--format", "jsonl")
    assert result.exit_code == 1, result.stderr
    rows = {Path(r["source"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(rows) == ["a.jpg", "b-dangling.jpg", "c-fifo.jpg", "d-zero.jpg", "e-folder-link"]
    assert "heads" in rows["a.jpg"]
    assert "broken symbolic link" in rows["b-dangling.jpg"]["error"]
    assert "a FIFO (named pipe)" in rows["c-fifo.jpg"]["error"]
    assert "a character device (a symbolic link to /dev/zero)" in rows["d-zero.jpg"]["error"]
    assert "symbolic link to a folder" in rows["e-folder-link"]["error"]
    assert "4 of 5 inputs failed" in result.stderr


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("fashion-predict")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "fashion.runtime.cli"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("mode", ["local", "server"])
def test_dev_zero_fifo_and_huge_files_given_by_name_are_refused_quickly(tiny_bundle, fake, tmp_path, mode):
    """Was MemoryError at 5.4 GB RSS for a link to /dev/zero and a hang for a FIFO (--server)."""
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.jpg")
    with open(tmp_path / "huge.jpg", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    names = ["zero.jpg", "pipe.jpg", "huge.jpg"]
    done = _run(where(mode, tiny_bundle, fake) + [str(tmp_path / n) for n in names] + ["--format", "csv"])
    assert done.returncode == 1, done.stderr
    errors = [row["error"] for row in csv.DictReader(io.StringIO(done.stdout))]
    assert "character device" in errors[0] and "FIFO" in errors[1] and "byte limit" in errors[2]
    assert "Traceback" not in done.stderr


def test_swapped_arguments_and_a_bundle_with_server_are_named(tiny_bundle, sample_dir):
    images = sample_dir / "images"
    swapped = invoke(images, tiny_bundle)
    assert swapped.exit_code == 2
    assert "look swapped" in swapped.stderr and f"fashion-predict {tiny_bundle} {images}" in swapped.stderr
    with_server = invoke("--server", "http://127.0.0.1:1", tiny_bundle, images)
    assert with_server.exit_code == 2 and "is a model bundle" in with_server.stderr
    missing = invoke(sample_dir / "nope", images)
    assert missing.exit_code == 2 and "not a bundle directory" in missing.stderr


def test_jsonl_is_one_object_per_line_equal_to_the_json_array(tiny_bundle, photos, tmp_path):
    lines = invoke(tiny_bundle, *photos, tmp_path / "missing.jpg", "--format", "jsonl").stdout.splitlines()
    array = json.loads(invoke(tiny_bundle, *photos, tmp_path / "missing.jpg").stdout)

    def timeless(record: dict) -> dict:
        return {key: value for key, value in record.items() if key != "latency_ms"}

    assert [timeless(json.loads(line)) for line in lines] == [timeless(r) for r in array] and len(lines) == 5
    assert array[-1]["error"].endswith("missing.jpg: no such file")


def test_resume_needs_a_resumable_file(tiny_bundle, photos, tmp_path):
    assert invoke(tiny_bundle, photos[0], "--resume").exit_code == 2
    bad = invoke(tiny_bundle, photos[0], "--resume", "-o", tmp_path / "x.json", "--format", "json")
    assert bad.exit_code == 2 and "csv or jsonl" in bad.stderr
