"""fashion-bench on the tiny real ONNX bundle and the committed sample images (no TensorFlow needed)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fashion import HEADS
from fashion.benchmarks import report, system
from fashion.benchmarks.bench import accuracy_failures, parse_thresholds
from fashion.benchmarks.cli import main
from fashion.benchmarks.flops import count_macs
from fashion.benchmarks.rows import DEFAULT_ROWS, ROWS, parse_rows, skip_reason
from fashion.runtime.bundle import load_manifest
from fashion.runtime.preprocess import preprocess

SAMPLE_STYLES = Path(__file__).resolve().parents[2] / "data" / "sample" / "styles.csv"
FAST = ["--iters", "5", "--warmup", "1", "--batch-sizes", "1,4", "--quiet"]


@pytest.fixture(scope="module")
def bench_run(tiny_bundle, sample_dir, tmp_path_factory):
    """One real run with an accuracy gate no model can pass: exit code, output, JSON and plot paths."""
    out = tmp_path_factory.mktemp("bench")
    result = CliRunner().invoke(
        main,
        [
            str(tiny_bundle),
            "--data",
            str(sample_dir),
            *FAST,
            "--json",
            str(out / "bench.json"),
            "--plot",
            str(out / "bench.png"),
            "--markdown",
            str(out / "bench.md"),
            "--min-accuracy",
            "articleType=1.01",
        ],
    )
    return result, json.loads((out / "bench.json").read_text()), out


def _rows(payload):
    return {row["name"]: row for row in payload["rows"]}


def test_rows_ran_or_say_why_not(bench_run):
    _, payload, _ = bench_run
    rows = _rows(payload)
    assert list(rows) == list(DEFAULT_ROWS) and "onnx-fp32-tta" not in rows  # tta rows only on request
    onnx = rows["onnx-fp32"]
    assert onnx["status"] == "ok", onnx.get("reason")
    assert onnx["info"]["providers"] == ["CPUExecutionProvider"]
    assert onnx["info"]["threads"] == payload["settings"]["threads"] >= 1
    assert 0 < onnx["latency_ms"]["p50"] <= onnx["latency_ms"]["p99"]
    assert onnx["latency_ms"]["n"] == 5
    assert set(onnx["throughput"]) == {"1", "4"} and all(v["img_per_s"] > 0 for v in onnx["throughput"].values())
    assert onnx["cold_start_s"] > 0 and onnx["peak_rss_mb"] > 10 and onnx["size_mb"] > 0
    assert "no Keras model (model.keras) in bundle" in rows["keras"]["reason"]
    assert "no ONNX INT8 artifact in bundle" in rows["onnx-int8"]["reason"]
    for name in ("trt-fp16", "trt-int8"):
        assert rows[name]["status"] == "skipped" and "TensorRT" in rows[name]["reason"]
    assert all(row["reason"] for row in payload["rows"] if row["status"] != "ok")


def test_run_records_what_really_ran(bench_run, tiny_bundle):
    _, payload, _ = bench_run
    assert payload["bundle"]["manifest_sha256"] == system_sha(tiny_bundle)
    assert payload["settings"]["warmup"] == 1 and payload["settings"]["iters"] == 5
    assert payload["machine"]["cpu"]["cores"] >= 1 and payload["machine"]["libraries"]["onnxruntime"]
    with open(SAMPLE_STYLES, newline="", encoding="utf-8") as handle:
        ids = [row[0] for row in list(csv.reader(handle))[1:]]
    assert payload["data"]["images"] == sum((SAMPLE_STYLES.parent / "images" / f"{i}.jpg").is_file() for i in ids)
    assert payload["summary"]["fastest_cpu_row"] == "onnx-fp32"
    assert payload["notes"], "a tiny untrained test model must be flagged as not representative"
    floor = payload["compute_floor"]
    assert floor["macs"] > 0 and floor["floor_ms"] > 0


def system_sha(bundle_dir):
    from fashion.runtime.bundle import sha256_file

    return sha256_file(bundle_dir / "bundle.json")


def _independent_scores(bundle_dir, sample_dir, head):
    """Accuracy, macro-F1 and top-3 of one head computed without fashion.benchmarks."""
    import onnxruntime as ort
    from sklearn.metrics import f1_score

    bundle = load_manifest(bundle_dir)
    height, width = bundle.input_size
    vocabulary = bundle.labels[head]
    with open(sample_dir / "styles.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index(head)
    truth, images = [], []
    for fields in rows[1:]:
        label = fields[column].strip()
        path = sample_dir / "images" / f"{fields[0]}.jpg"
        if label in vocabulary and path.is_file():
            truth.append(vocabulary.index(label))
            images.append(preprocess(path, height, width))
    session = ort.InferenceSession(str(bundle.artifact_path("onnx_fp32")), providers=["CPUExecutionProvider"])
    probabilities = session.run([head], {"image": np.stack(images).astype(np.float32)})[0]
    truth = np.array(truth)
    top1 = probabilities.argmax(axis=1)
    top3 = np.argsort(-probabilities, axis=1)[:, :3]
    return {
        "n": len(truth),
        "accuracy": float(np.mean(top1 == truth)),
        "macro_f1": float(f1_score(truth, top1, average="macro")),
        "top3": float(np.mean([t in row for t, row in zip(truth, top3)])),
    }


def test_accuracy_matches_an_independent_computation(bench_run, tiny_bundle, sample_dir):
    _, payload, _ = bench_run
    scores = _rows(payload)["onnx-fp32"]["accuracy"]
    for head in HEADS:
        for metric in ("accuracy", "macro_f1", "top3"):
            assert 0.0 <= scores[head][metric] <= 1.0
    expected = _independent_scores(tiny_bundle, sample_dir, "articleType")
    got = scores["articleType"]
    assert got["n"] == expected["n"]
    for metric in ("accuracy", "macro_f1", "top3"):
        assert got[metric] == pytest.approx(expected[metric], abs=1e-9), metric
    # the one empty baseColour label in the sample is excluded, not scored
    assert scores["baseColour"]["missing_labels"] >= 1
    assert (
        scores["baseColour"]["n"]
        == payload["data"]["images"] - scores["baseColour"]["missing_labels"] - scores["baseColour"]["unknown_labels"]
    )


def test_min_accuracy_gate_fails_the_run(bench_run):
    result, payload, _ = bench_run
    assert result.exit_code == 1
    assert "accuracy gate: onnx-fp32 articleType accuracy" in result.output
    assert payload["accuracy_gate"]["failures"]


def test_table_and_plots_are_written(bench_run):
    result, _, out = bench_run
    assert "ONNX Runtime FP32" in result.output and "img/s b4" in result.output and "not run:" in result.output
    assert "| ONNX Runtime FP32 | ✅ ok |" in (out / "bench.md").read_text()
    for name in ("bench_latency.png", "bench_accuracy.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_passing_gate_exits_zero(tiny_bundle, sample_dir):
    result = CliRunner().invoke(
        main,
        [
            str(tiny_bundle),
            "--data",
            str(sample_dir),
            *FAST,
            "--limit",
            "40",
            "--backends",
            "onnx-fp32,onnx-int8",
            "--min-accuracy",
            "gender=0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "onnx-int8" in result.output and "Keras" not in result.output


def test_bad_arguments_are_refused(tiny_bundle, sample_dir):
    bad_row = CliRunner().invoke(main, [str(tiny_bundle), "--backends", "onnx-fp64"])
    assert bad_row.exit_code == 2 and "onnx-fp64" in bad_row.output
    bad_head = CliRunner().invoke(main, [str(tiny_bundle), "--data", str(sample_dir), "--min-accuracy", "colour=0.5"])
    assert bad_head.exit_code == 1 and "HEAD=VALUE" in bad_head.output
    bad_sizes = CliRunner().invoke(main, [str(tiny_bundle), "--batch-sizes", "1,x"])
    assert bad_sizes.exit_code == 2
    bad_cores = CliRunner().invoke(main, ["cores", str(tiny_bundle), "--cores", "0"])
    assert bad_cores.exit_code == 2 and "positive" in bad_cores.output
    no_cores = CliRunner().invoke(main, ["cores", str(tiny_bundle)])
    assert no_cores.exit_code == 2 and "--cores" in no_cores.output


@pytest.mark.parametrize(
    ("old", "now"),
    [
        (["--photos"], "fashion-bench photos BUNDLE"),
        (["--photos", "--cores", "1,2"], "fashion-bench photos BUNDLE"),
        (["--cores", "1,2"], "fashion-bench cores BUNDLE --cores"),
        (["--ab", "x=y.onnx"], "fashion-bench ab BUNDLE NAME=FILE.onnx"),
        (["--robustness"], "fashion-bench robustness BUNDLE"),
        (["--sharp", "."], "fashion-bench robustness BUNDLE --sharp"),
    ],
)
def test_former_mode_flags_name_their_subcommand(tiny_bundle, old, now):
    result = CliRunner().invoke(main, [str(tiny_bundle), *old])
    assert result.exit_code == 2 and now in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1


def test_modes_are_subcommands_and_rows_is_the_default(tiny_bundle):
    group_help = CliRunner().invoke(main, ["-h"]).output
    for mode in ("rows", "photos", "cores", "ab", "robustness"):
        assert f"  {mode} " in group_help
    rows_help = CliRunner().invoke(main, ["rows", "-h"]).output
    assert "--backends" in rows_help and "--photos" not in rows_help
    assert CliRunner().invoke(main, [str(tiny_bundle), "-h"]).output == rows_help  # BUNDLE first: the rows
    assert CliRunner().invoke(main, ["--threads", "1", "-h"]).output == rows_help
    missing = CliRunner().invoke(main, [])
    assert missing.exit_code == 2 and "Missing argument 'BUNDLE'" in missing.output
    old_split = CliRunner().invoke(main, ["photos", str(tiny_bundle), "--split", "some/split.csv"])
    assert old_split.exit_code == 2 and "use --split-file FILE" in old_split.output


def test_thresholds_and_failures():
    thresholds = parse_thresholds(["gender=0.9", "season=0.5"], list(HEADS))
    result = {
        "rows": [
            {"name": "a", "status": "ok", "accuracy": {"gender": {"accuracy": 0.95}, "season": {"accuracy": 0.4}}},
            {"name": "b", "status": "skipped"},
        ]
    }
    assert accuracy_failures(result, thresholds) == ["a season accuracy 0.4000 < 0.5"]
    with pytest.raises(ValueError):
        parse_thresholds(["gender"], list(HEADS))


def test_flops_counted_from_the_graph(tiny_bundle):
    bundle = load_manifest(tiny_bundle)
    counted = count_macs(bundle.artifact_path("onnx_fp32"), *bundle.input_size)
    # conv1: 8x16x12 outputs x 3x3x3; conv2: 16x8x6 outputs x 8x3x3; six heads: 16 x classes each
    conv = 8 * 16 * 12 * 27 + 16 * 8 * 6 * 72
    gemm = 16 * sum(len(bundle.labels[h]) for h in HEADS)
    assert counted["by_op"] == {"Conv": conv, "Gemm": gemm}
    assert counted["flops"] == 2 * (conv + gemm)


def test_cpu_peak_formula(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 2500.000\nflags\t\t: fma avx2 avx512f\n")
    cpu = system.cpu_info(str(cpuinfo))
    assert cpu["model"] == "Test CPU" and cpu["mhz"] == 2500.0 and cpu["avx512f"]
    assert system.peak_fp32_gflops({**cpu, "cores": 2}) == pytest.approx(2 * 2.5 * 2 * 16 * 2)


def test_plot_paths_and_row_parsing(tiny_bundle):
    assert [p.name for p in report.plot_paths("out/bench.png")] == ["bench_latency.png", "bench_accuracy.png"]
    assert [spec.name for spec in parse_rows("onnx-int8, keras,onnx-int8")] == ["onnx-int8", "keras"]
    bundle = load_manifest(tiny_bundle)
    assert skip_reason(ROWS["onnx-fp32"], bundle) is None


def test_named_split_narrows_any_data_folder(tiny_bundle, sample_dir, tmp_path):
    split_file = Path(__file__).resolve().parents[2] / "data" / "splits" / "fashion-product-images.csv"
    with open(split_file, newline="") as handle:
        val_ids = {row["id"] for row in csv.DictReader(handle) if row["split"] == "val"}
    with open(sample_dir / "styles.csv", newline="", encoding="utf-8") as handle:
        sample_ids = [row[0] for row in list(csv.reader(handle))[1:]]
    expected = sum(i in val_ids and (sample_dir / "images" / f"{i}.jpg").is_file() for i in sample_ids)
    out = tmp_path / "split.json"
    result = CliRunner().invoke(
        main,
        [
            str(tiny_bundle),
            "--data",
            str(sample_dir),
            "--split",
            "val",
            *FAST,
            "--backends",
            "onnx-fp32",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())["data"]
    assert data["split"] == "val" and data["split_file"].endswith("fashion-product-images.csv")
    assert 0 < data["images"] == expected


def test_ab_compares_graph_variants_in_one_process(tiny_bundle, sample_dir, tmp_path):
    """fashion-bench ab: the bundle's FP32 graph vs a variant (here: the graph after the export's exact rewrite)."""
    import onnx

    from fashion.export.graph import remove_noop_reshapes

    variant = tmp_path / "variant.onnx"
    model = onnx.load(str(tiny_bundle / "model_fp32.onnx"))
    remove_noop_reshapes(model)
    onnx.save(model, str(variant))
    out = tmp_path / "ab.json"
    result = CliRunner().invoke(
        main,
        [
            "ab",
            str(tiny_bundle),
            f"rewritten={variant}",
            "--data",
            str(sample_dir),
            "--limit",
            "8",
            "--iters",
            "6",
            "--batch-sizes",
            "1,4",
            "--threads",
            "1",
            "--rounds",
            "2",
            "--quiet",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert set(payload["variants"]) == {"bundle", "rewritten"} and payload["threads"] == 1
    bundle_row, rewritten = payload["variants"]["bundle"], payload["variants"]["rewritten"]
    assert bundle_row["p50_ratio"] == 1.0 and bundle_row["max_abs_diff_vs_bundle"] == 0.0
    assert rewritten["p50_ms"] > 0 and rewritten["cpu_p50_ms"] >= 0 and set(rewritten["img_per_s"]) == {"1", "4"}
    assert rewritten["max_abs_diff_vs_bundle"] < 1e-5 and rewritten["top1_agreement_vs_bundle"] == 1.0
    assert "| rewritten |" in result.output
    bad = CliRunner().invoke(main, ["ab", str(tiny_bundle), "bundle=x.onnx"])
    assert bad.exit_code == 2 and "NAME=FILE.onnx" in bad.output


def test_tta_row_scores_what_predict_with_tta_returns(tiny_bundle, sample_dir, tmp_path):
    from fashion.runtime import Classifier

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            str(tiny_bundle),
            "--data",
            str(sample_dir),
            "--backends",
            "onnx-fp32,onnx-fp32-tta",
            *FAST,
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = _rows(json.loads(out.read_text()))
    assert rows["onnx-fp32-tta"]["status"] == "ok" and rows["onnx-fp32-tta"]["latency_ms"]["p50"] > 0
    labels = load_manifest(tiny_bundle).labels["articleType"]
    images = sorted((sample_dir / "images").glob("*.jpg"))
    with Classifier.load(tiny_bundle, backend="onnxruntime") as classifier:
        predicted = [classifier.predict(p, tta=True).heads["articleType"].label for p in images]
    with SAMPLE_STYLES.open(newline="", encoding="utf-8") as handle:
        truth = {row["id"]: row["articleType"] for row in csv.DictReader(handle)}
    expected = np.mean([label == truth[p.stem] for p, label in zip(images, predicted) if truth.get(p.stem) in labels])
    assert rows["onnx-fp32-tta"]["accuracy"]["articleType"]["accuracy"] == pytest.approx(expected, abs=1e-9)


def test_the_run_records_what_auto_runs_here_and_why(bench_run):
    result, payload, out = bench_run
    choice = payload["runtime_choice"]
    assert choice["artifact"] == "onnx_fp32" and choice["reason"] == "the bundle's only onnx artifact"
    assert isinstance(payload["machine"]["cpu"]["isa_flags"], list)
    markdown = (out / "bench.md").read_text()
    assert '`precision="auto"` runs `onnx_fp32` here: the bundle\'s only onnx artifact.' in markdown
    assert "ISA flags:" in markdown and '`precision="auto"` runs `onnx_fp32`' in result.output


def test_one_latency_figure_per_row_in_table_json_and_plot(bench_run):
    """The table's p50 ms, the JSON's latency p50, img/s b1 and the plot's batch-1 point are one number."""
    result, payload, out = bench_run
    onnx = _rows(payload)["onnx-fp32"]
    p50 = onnx["latency_ms"]["p50"]
    assert onnx["throughput"]["1"]["img_per_s"] == pytest.approx(1000.0 / p50)
    points = report.plot_points(onnx, payload["settings"]["batch_sizes"])
    assert points[0][:2] == (1, p50)
    four = onnx["throughput"]["4"]
    assert points[1][1] == pytest.approx(1000.0 / four["img_per_s"]) == pytest.approx(four["batch_ms"]["p50"] / 4)
    header, lines = report.table_rows(payload)
    line = next(cells for cells in lines if cells[0] == onnx["format"])
    assert line[header.index("p50 ms")] == f"{p50:,.2f}"
    assert line[header.index("img/s b1")] == f"{1000.0 / p50:,.0f}"
    assert f"| {p50:,.2f} |" in (out / "bench.md").read_text()


def test_rounds_record_their_spread(bench_run):
    _, payload, out = bench_run
    onnx = _rows(payload)["onnx-fp32"]
    rounds = onnx["latency_ms"]["rounds"]
    assert len(rounds["p50_ms"]) == 5 and onnx["latency_ms"]["n"] == 5  # 5 calls in 5 rounds of one
    expected = 100 * (max(rounds["p50_ms"]) - min(rounds["p50_ms"])) / onnx["latency_ms"]["p50"]
    assert rounds["spread_pct"] == pytest.approx(expected)
    assert len(onnx["throughput"]["4"]["rounds"]["img_per_s"]) == 3  # max(3, 5 // 4) calls of 4, one per round
    assert "spread %" in (out / "bench.md").read_text() and "spread %" in report.TIMING_NOTE


def test_split_calls_and_noise():
    from fashion.benchmarks.bench import within_noise
    from fashion.benchmarks.measure import split_calls

    assert split_calls(200, 5) == [40] * 5 and split_calls(7, 3) == [3, 2, 2] and split_calls(2, 5) == [1, 1]

    def row(p50, spread):
        return {"latency_ms": {"p50": p50, "rounds": {"spread_pct": spread}}}

    assert within_noise(row(2.02, 8.0), row(1.89, 3.0))  # 6.9 % apart, rounds spread 8 %: noise
    assert not within_noise(row(2.02, 2.0), row(1.89, 3.0))


def test_plots_show_accuracy_deltas_and_plain_log_labels(tiny_bundle, sample_dir, tmp_path):
    """FP32 vs INT8 rows: the accuracy plot is the INT8 row's per-head difference to FP32 (not bars from 0),
    and the latency plot's log axis has plain labels ("2", "5"), not "2×10⁰"."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    int8_bundle = _bundle_with_int8(tiny_bundle, tmp_path)
    out = tmp_path / "plots"
    result = CliRunner().invoke(
        main,
        [
            str(int8_bundle),
            "--data",
            str(sample_dir),
            *FAST,
            "--backends",
            "onnx-fp32,onnx-int8",
            "--json",
            str(out / "b.json"),
            "--plot",
            str(out / "b.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "b.json").read_text())
    reference, deltas = report.accuracy_deltas(payload)
    assert reference == "onnx-fp32" and list(deltas) == ["onnx-int8"]
    assert deltas["onnx-int8"] == _rows(payload)["onnx-int8"]["vs_fp32"]["accuracy_delta_pp"]

    captured = {}
    real_savefig = plt.Figure.savefig

    def keep(figure, path, **kwargs):
        figure.canvas.draw()
        axis = figure.axes[0]
        captured[Path(path).name] = (
            [t.get_text() for t in axis.get_yticklabels() if t.get_text()],
            [round(p.get_height(), 6) for p in axis.patches],
            axis.get_ylabel(),
        )
        return real_savefig(figure, path, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt.Figure, "savefig", keep)
        report.write_plots(payload, out / "again")
    ticks, _, _ = captured["again_latency.png"]
    assert ticks and all("\\times" not in t and "×" not in t and "^" not in t for t in ticks), ticks
    _, bars, label = captured["again_accuracy.png"]
    assert label == "Δ accuracy vs FP32 (pp)"
    assert bars == [round(deltas["onnx-int8"][h], 6) for h in payload["bundle"]["heads"]]


def _bundle_with_int8(tiny_bundle, tmp_path):
    """A copy of the tiny bundle with a dynamically quantized INT8 ONNX recorded as onnx_int8."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fashion.runtime.bundle import load_manifest as load
    from fashion.runtime.bundle import record_artifact

    copy = tmp_path / "int8_bundle"
    shutil.copytree(tiny_bundle, copy)
    quantize_dynamic(str(copy / "model_fp32.onnx"), str(copy / "model_int8.onnx"), weight_type=QuantType.QInt8)
    fp32 = load(copy).artifacts["onnx_fp32"].to_dict()
    meta = {k: v for k, v in fp32.items() if k not in ("file", "sha256", "bytes")}
    record_artifact(copy, "onnx_int8", "model_int8.onnx", **{**meta, "precision": "int8"})
    return copy


def test_plot_option_says_which_files_it_wrote(bench_run):
    result, _, out = bench_run  # run with --quiet: the written files are named all the same
    for name in ("bench_latency.png", "bench_accuracy.png", "bench.json", "bench.md"):
        assert f"wrote {out / name}" in result.output


def test_a_load_above_the_cpus_is_warned_about_once():
    from fashion.benchmarks.bench import LoadWatch

    said = []
    watch = LoadWatch(said.append, cpus=2)
    watch.sample("start", [1.5, 1.0, 0.5])
    assert watch.warning is None and not said
    watch.sample("after keras", [3.2, 1.5, 0.7])
    watch.sample("after onnx-fp32", [4.1, 2.0, 0.9])
    assert len(said) == 1 and said[0].startswith("warning: load average up to 3.20 (after keras) on 2 CPUs")
    assert watch.warning.startswith("load average up to 4.10 (after onnx-fp32) on 2 CPUs")
    assert [s["when"] for s in watch.samples] == ["start", "after keras", "after onnx-fp32"]


def test_the_run_records_its_load_samples(bench_run):
    _, payload, _ = bench_run
    samples = payload["machine"]["load_average_samples"]
    assert [s["when"] for s in samples] == ["start", "after onnx-fp32"]  # the only row that ran
    busy = max(s["load_average"][0] for s in samples) > (os.cpu_count() or 1)
    assert any("load average up to" in note for note in payload["notes"]) == busy
