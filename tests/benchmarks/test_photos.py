"""The real-size photo checks, end to end on the tiny real bundle and committed sample photos (small sizes)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashion.benchmarks.cli import main as bench_main
from fashion.benchmarks.photos.batch import scaling_bench
from fashion.benchmarks.photos.bench import photo_bench
from fashion.benchmarks.photos.cli import main
from fashion.benchmarks.photos.fast_check import fast_decode_check
from fashion.benchmarks.photos.gate import vips_decode_check
from fashion.benchmarks.photos.inputs import upscale
from fashion.benchmarks.photos.render import (
    render_fast_decode_markdown,
    render_photo_markdown,
    render_scaling_markdown,
    render_vips_decode_markdown,
)
from fashion.runtime import vips_decode


@pytest.fixture(scope="module")
def split_file(sample_dir, tmp_path_factory) -> Path:
    """Every committed sample photo in the 'test' split."""
    path = tmp_path_factory.mktemp("split") / "split.csv"
    with open(sample_dir / "styles.csv", newline="", encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    path.write_text("id,split\n" + "".join(f"{i},test\n" for i in ids), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "PNG-RGBA", "WEBP"])
def test_upscale_writes_the_requested_size_and_format(sample_dir, fmt):
    photo = Image.open(next((sample_dir / "images").glob("*.jpg"))).convert("RGB")
    decoded = Image.open(io.BytesIO(upscale(photo, (240, 320), fmt)))
    assert decoded.size == (240, 320) and decoded.format == fmt.split("-")[0]
    if fmt == "PNG-RGBA":  # the white background is transparent, the product is not
        alpha = np.asarray(decoded)[..., 3]
        assert decoded.mode == "RGBA" and alpha.min() == 0 and alpha.max() == 255
    with pytest.raises(ValueError, match="unknown format"):
        upscale(photo, (24, 32), "TIFF")


def test_fast_decode_check_compares_exact_and_fast(tiny_bundle, sample_dir, split_file):
    # the tiny model's input is 32x24, so 240x320 photos are 10x larger: JPEG draft 1/2 with gap 3
    result = fast_decode_check(
        tiny_bundle, sample_dir, split_file, subset=8, sizes=[(240, 320)], gaps=[2.0, 3.0], log=lambda _: None
    )
    assert result["photos"] == 8 and result["subset"]["size"] == 8
    assert {row["variant"] for row in result["comparisons"]} == {"fast_gap2", "fast_gap3"}
    for row in result["comparisons"]:
        assert 0 < row["pixel_max_abs_diff"] <= 16 and row["pixel_mean_abs_diff"] < 2
        assert set(row["drop_pp"]) == set(result["accuracy"]["original"])
        assert all(0.0 <= value <= 1.0 for value in row["top1_agreement"].values())
    assert set(result["verdict"]) == {"fast_gap2", "fast_gap3"}
    assert result["cpu"]["model"] and json.loads(json.dumps(result))
    markdown = render_fast_decode_markdown(result)
    assert "seeded random subset" in markdown and "| 240x320 | fast_gap3 |" in markdown


@pytest.mark.skipif(not vips_decode.available(), reason="pyvips not installed")
def test_vips_decode_check_compares_libvips_with_the_exact_path_per_format(tiny_bundle, sample_dir, split_file):
    result = vips_decode_check(
        tiny_bundle, sample_dir, split_file, subset=4, sizes=[(240, 320)], log=lambda _: None, chunk=2, pillow_fast=True
    )
    formats = ("JPEG", "PNG", "PNG-RGBA", "WEBP")
    assert result["photos"] == 4 and result["subset"]["size"] == 4
    assert sorted((row["cell"], row["variant"]) for row in result["comparisons"]) == sorted(
        (f"240x320/{f}", v) for f in formats for v in ("libvips", "pillow_fast")
    )
    assert result["libvips_decodes"] == {"decoded": 16, "refused": 0}  # every cell went through libvips
    for row in result["comparisons"]:
        assert row["pixel_max_abs_diff"] <= 16 and row["pixel_mean_abs_diff"] < 2
        assert all(0.0 <= value <= 1.0 for value in row["top1_agreement"].values())
    assert set(result["accuracy"]) == {"original"} | {
        f"240x320/{f}/{v}" for f in formats for v in ("exact", "libvips", "pillow_fast")
    }
    assert set(result["verdict_by_format"]) == set(formats)  # libvips rows only
    assert set(result["libvips_vs_pillow_fast_top1_agreement"]) == {f"240x320/{f}" for f in formats}
    assert result["libvips"].startswith("libvips") and json.loads(json.dumps(result))
    markdown = render_vips_decode_markdown(result)
    assert "seeded random subset" in markdown and "| 240x320/PNG-RGBA | Pillow fast path |" in markdown
    assert "Verdict: libvips" in markdown and "libvips vs the Pillow fast path, image by image" in markdown


def test_photo_bench_measures_every_format_and_names_its_decoder(tiny_bundle, sample_dir):
    photos = sorted((sample_dir / "images").glob("*.jpg"))[:4]
    result = photo_bench(
        tiny_bundle,
        photos,
        sizes=[(240, 320), (400, 300)],
        per_cell=1,
        repeats=2,
        batch_photos=8,
        batch_size=4,
        batch_size_wh=(240, 320),
        batch_folders=["PNG", "mixed"],
        rounds=2,
        log=lambda _: None,
    )
    formats = ("JPEG", "PNG", "PNG-RGBA", "WEBP")
    assert set(result["latency"]) == {f"{size}/{fmt}" for size in ("240x320", "400x300") for fmt in formats}
    for modes in result["latency"].values():
        assert set(modes) == {"exact", "Pillow fast", "now"}
        for row in modes.values():
            assert row["calls"] == 2 and 0 < row["p50_ms"] <= row["p90_ms"]
    decoders = result["decoders"]["400x300/WEBP"]
    assert decoders["exact"].startswith("Pillow") and decoders["Pillow fast"].startswith("Pillow")
    assert decoders["now"].startswith("libvips" if vips_decode.available() else "Pillow")
    assert result["decoders"]["400x300/JPEG"]["now"].startswith("Pillow")  # as fast: JPEG stays with Pillow
    assert set(result["batch"]) == {"PNG", "mixed"}
    for folder in result["batch"].values():
        before, now = folder["before (Pillow, no decode-ahead)"], folder["now (default)"]
        assert before["images"] == now["images"] == 8 and before["failed"] == now["failed"] == 0
        assert before["decode_ahead"] is False and now["decode_ahead"] is (now["decode_threads"] > 1)
        assert before["cores_busy"] > 0 and len(before["rounds_images_per_s"]) == 2
    assert len(result["batch"]["mixed"]["now (default)"]["decoders"]) == (2 if vips_decode.available() else 1)
    targets = result["targets"]
    assert (
        set(targets["400x300"]["vs_jpeg"]) == {"PNG", "PNG-RGBA", "WEBP"}
        and targets["mixed_batch_speedup"]["value"] > 0
    )
    assert result["artifact_choice"]["artifact"] == "onnx_fp32" and result["model_only_p50_ms"] > 0
    assert (
        set(result["jpeg_check_ms"]) == {"240x320/JPEG", "400x300/JPEG"} and min(result["jpeg_check_ms"].values()) > 0
    )
    markdown = render_photo_markdown(result)
    assert "| 400x300/PNG-RGBA |" in markdown and "| mixed | now (default) |" in markdown
    assert "Targets at 400x300" in markdown and "Mixed folder, now vs before" in markdown
    assert json.loads(json.dumps(result))


def test_scaling_bench_pins_one_fresh_process_per_core_count(tiny_bundle, sample_dir):
    import os

    photos = sorted((sample_dir / "images").glob("*.jpg"))[:3]
    too_many = len(os.sched_getaffinity(0)) + 1
    result = scaling_bench(
        tiny_bundle,
        photos,
        [1, too_many],
        batch_photos=5,
        batch_size=2,
        size_wh=(240, 320),
        rounds=1,
        log=lambda _: None,
    )
    assert result["skipped_cores"] == [too_many]
    (row,) = result["rows"]
    # the pinned process sees one CPU, so the runtime's defaults give the model and the decoder one thread each
    assert row["cores"] == row["usable_cores"] == 1 and row["model_threads"] == 1
    for mode in row["modes"].values():
        assert mode["images"] == 5 and mode["failed"] == 0 and mode["images_per_s"] > 0
        assert mode["decode_threads"] == 1 and mode["overlap_with_model"] is False
    markdown = render_scaling_markdown(result)
    assert "| 1 |" in markdown and f"Not run (more than this machine's CPUs): {too_many}." in markdown


@pytest.mark.skipif(not vips_decode.available(), reason="pyvips not installed")
def test_vips_check_formats_option_covers_only_those_and_says_so(tiny_bundle, sample_dir, split_file, tmp_path):
    out = tmp_path / "eval" / "vips"
    args = ["vips-check", str(tiny_bundle), "--data", str(sample_dir), "--split-file", str(split_file)]
    args += ["--subset", "2", "--formats", "webp,JPEG", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads(Path(f"{out}.json").read_text(encoding="utf-8"))
    assert saved["upscale"]["formats"] == ["WEBP", "JPEG"] and saved["photos"] == 2
    assert {row["cell"].split("/")[1] for row in saved["comparisons"]} == {"WEBP", "JPEG"}
    assert set(saved["verdict_by_format"]) == {"WEBP", "JPEG"}
    assert not any("PNG" in key for key in saved["accuracy"])
    assert saved["upscale"]["encoders"] == "JPEG q90, WebP q90 method 0"  # only what was written
    assert saved["command"] == "python -m fashion.benchmarks.photos " + " ".join(args)
    markdown = Path(f"{out}.md").read_text(encoding="utf-8")
    assert f"Generated by `{saved['command']}`" in markdown and "--formats webp,JPEG" in markdown
    assert "| 2400x3200/WEBP | libvips |" in markdown and "/PNG" not in markdown
    assert markdown in result.output  # printed as well


def test_vips_check_refuses_unknown_formats_and_a_missing_libvips(tiny_bundle, sample_dir, tmp_path, monkeypatch):
    out = tmp_path / "vips"
    base = ["vips-check", str(tiny_bundle), "--data", str(sample_dir), "--out", str(out)]
    bad = CliRunner().invoke(main, [*base, "--formats", "JPEG,TIFF"])
    assert bad.exit_code == 2 and "unknown format(s) TIFF (choose from JPEG,PNG,PNG-RGBA,WEBP)" in bad.output
    assert len([line for line in bad.output.splitlines() if line.startswith("Error:")]) == 1
    monkeypatch.setattr(vips_decode, "available", lambda: False)
    missing = CliRunner().invoke(main, [*base, "--formats", "PNG"])
    assert missing.exit_code == 4 and "Error: libvips is not available" in missing.output
    assert not Path(f"{out}.json").exists()


def test_module_entry_point_runs_through_click(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fashion.benchmarks.photos", "vips-check", "-h"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--formats" in done.stdout and "--pillow-fast" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "fashion.benchmarks.photos"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("Error: Missing command.")


def test_photo_bench_without_photos_of_the_split_is_a_usage_error(tiny_bundle, sample_dir, tmp_path):
    split_file = tmp_path / "split.csv"
    split_file.write_text("id,split\n1,train\n", encoding="utf-8")
    args = ["photos", str(tiny_bundle), "--data", str(sample_dir), "--split-file", str(split_file), "--quiet"]
    result = CliRunner().invoke(bench_main, args)
    assert result.exit_code == 2 and "no photos of split 'test' found" in result.output
