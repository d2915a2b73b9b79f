"""fashion-bench BUNDLE --baseline OLD: two tiny real bundles (different input sizes) on the committed sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fashion import HEADS
from fashion.benchmarks import report
from fashion.benchmarks.bench import BaselineMismatch, check_same_ids
from fashion.benchmarks.cli import main
from fashion.runtime.bundle import atomic_write_json, load_manifest, record_file

FAST = ["--backends", "onnx-fp32", "--iters", "3", "--warmup", "1", "--batch-sizes", "1", "--limit", "48", "--quiet"]


@pytest.fixture(scope="module")
def wide_bundle(tmp_path_factory, sample_dir) -> Path:
    """A second tiny bundle at 48x36 instead of 32x24 (same labels and seeded weights, another graph)."""
    from tests.fixtures import tiny_bundle as fixture

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fixture, "HEIGHT", 48)
        patch.setattr(fixture, "WIDTH", 36)
        return fixture.make_tiny_bundle(tmp_path_factory.mktemp("wide_bundle"), sample_dir)


def _bench(bundle: Path, baseline: Path, sample_dir: Path, out: Path, *extra: str):
    result = CliRunner().invoke(
        main,
        [
            str(bundle),
            "--baseline",
            str(baseline),
            "--data",
            str(sample_dir),
            *FAST,
            "--json",
            str(out / "bench.json"),
            "--markdown",
            str(out / "bench.md"),
            *extra,
        ],
    )
    payload = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else None
    return result, payload


@pytest.fixture(scope="module")
def sized_run(wide_bundle, tiny_bundle, sample_dir, tmp_path_factory):
    """New 48x36 bundle vs old 32x24 bundle in one run."""
    out = tmp_path_factory.mktemp("baseline")
    result, payload = _bench(wide_bundle, tiny_bundle, sample_dir, out)
    return result, payload, out


def test_each_bundle_runs_at_its_own_size_on_the_same_images(sized_run, wide_bundle, tiny_bundle):
    result, payload, _ = sized_run
    assert result.exit_code == 0, result.output
    old = payload["baseline"]
    assert payload["bundle"]["input_size"] == [48, 36] and old["bundle"]["input_size"] == [32, 24]
    assert payload["bundle"]["path"] == str(wide_bundle) and old["bundle"]["path"] == str(tiny_bundle)
    assert payload["data"]["images"] == old["data"]["images"] == 48
    assert payload["settings"]["baseline"] == str(tiny_bundle) and old["settings"]["baseline"] is None
    for key in ("threads", "warmup", "iters", "batch_sizes", "limit"):
        assert payload["settings"][key] == old["settings"][key], key
    # the CPU is recorded once: the baseline points at the shared machine section
    assert payload["machine"]["cpu"]["model"] and isinstance(old["machine"], str)
    new_row, old_row = payload["rows"][0], old["rows"][0]
    assert new_row["status"] == old_row["status"] == "ok"
    assert new_row["sha256"] != old_row["sha256"], "two different graphs were measured"
    assert new_row["latency_ms"]["n"] == old_row["latency_ms"]["n"] == 3


def test_comparison_ratios_are_new_over_old(sized_run):
    _, payload, _ = sized_run
    new_row, old_row = payload["rows"][0], payload["baseline"]["rows"][0]
    compared = payload["comparison"]["onnx-fp32"]
    assert set(payload["comparison"]) == {"onnx-fp32"}
    assert compared["latency_p50_ratio"] > 0
    assert compared["latency_p50_ratio"] == pytest.approx(new_row["latency_ms"]["p50"] / old_row["latency_ms"]["p50"])
    assert set(compared["throughput_ratios"]) == {"1"} and compared["throughput_ratios"]["1"] > 0
    assert set(compared["accuracy_delta_pp"]) == set(HEADS) == set(compared["macro_f1_delta"])
    for head in HEADS:
        new, old = new_row["accuracy"][head], old_row["accuracy"][head]
        assert compared["accuracy_delta_pp"][head] == pytest.approx(100 * (new["accuracy"] - old["accuracy"]))
        assert compared["macro_f1_delta"][head] == pytest.approx(new["macro_f1"] - old["macro_f1"])


def test_table_and_markdown_show_the_baseline_section(sized_run):
    result, payload, out = sized_run
    markdown = (out / "bench.md").read_text()
    assert "### vs baseline tiny-test-model (32x24)" in markdown
    assert "| p50 old ms | p50 new ms | p50 new/old |" in markdown.replace("| Format ", "")
    assert "| articleType |" in markdown and "per head, onnx-fp32 row:" in markdown
    assert "vs baseline tiny-test-model (32x24)" in result.output and "p50 new/old" in result.output
    # the single-bundle table is unchanged: the first section is exactly what a run without --baseline prints
    single = {key: value for key, value in payload.items() if key not in ("baseline", "comparison")}
    assert markdown.startswith(report.render_markdown(single) + "\n\n### vs baseline")
    assert "vs baseline" not in report.render_text(single)


def test_a_copy_of_itself_scores_exactly_the_same(tiny_bundle, sample_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    result, payload = _bench(tiny_bundle, copy, sample_dir, tmp_path, "--split", "val")
    assert result.exit_code == 0, result.output
    # the split file the bundle resolved is the one the baseline reads too
    old_data = payload["baseline"]["data"]
    assert old_data["split"] == payload["data"]["split"] == "val"
    assert (
        old_data["split_file"] == payload["data"]["split_file"] and old_data["images"] == payload["data"]["images"] > 0
    )
    compared = payload["comparison"]["onnx-fp32"]
    assert compared["accuracy_delta_pp"] == {head: 0.0 for head in HEADS}
    assert compared["macro_f1_delta"] == {head: 0.0 for head in HEADS}
    assert compared["latency_p50_ratio"] > 0 and compared["throughput_ratios"]["1"] > 0


def test_other_labels_are_refused_before_any_row_runs(tiny_bundle, sample_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    labels = json.loads((other / "labels.json").read_text())
    labels["season"] = list(reversed(labels["season"]))
    atomic_write_json(other / "labels.json", labels)
    record_file(other, "labels.json")  # a valid bundle, only its vocabulary differs
    assert load_manifest(other).labels["season"] != load_manifest(tiny_bundle).labels["season"]
    out = tmp_path / "out"
    out.mkdir()
    result, payload = _bench(tiny_bundle, other, sample_dir, out)
    assert result.exit_code == 2
    assert "labels.json differs" in result.output and "season" in result.output
    assert payload is None and "Traceback" not in result.output


def test_other_image_ids_are_refused():
    check_same_ids(np.array([3, 1, 2]), np.array([3, 1, 2]), "old")
    with pytest.raises(BaselineMismatch, match="1 ids only in the bundle's set") as caught:
        check_same_ids(np.array([3, 1, 2]), np.array([3, 1, 4]), "old")
    assert caught.value.exit_code == 2


def test_baseline_with_ab_or_photos_is_refused(tiny_bundle):
    result = CliRunner().invoke(main, [str(tiny_bundle), "--baseline", str(tiny_bundle), "--photos"])
    assert result.exit_code == 2 and "fashion-bench photos BUNDLE" in result.output
    result = CliRunner().invoke(main, ["photos", str(tiny_bundle), "--baseline", str(tiny_bundle)])
    assert result.exit_code == 2 and "--baseline" in result.output
