"""The ablation table is generated from recorded result files (no numbers typed by hand)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fashion import HEADS
from fashion.train.cli import main


def _heads(accuracy: float) -> dict:
    return {h: {"accuracy": accuracy, "macro_f1": accuracy / 2, "n": 10} for h in HEADS}


def test_rows_come_from_bundles_refine_reports_and_bench_runs(tmp_path):
    bundle = tmp_path / "old"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"metrics": {"val": {"heads": _heads(0.8)}}}))
    (tmp_path / "copy.json").write_text((bundle / "bundle.json").read_text())
    fine = {
        "articleType": {"accuracy": 0.9, "macro_f1": 0.7},
        "baseColour": {"accuracy": 0.75, "macro_f1": 0.5, "family_accuracy": 0.8},
    }
    adjusted = {**fine, "articleType": {"accuracy": 0.899, "macro_f1": 0.73}}
    refine = tmp_path / "refine.json"
    refine.write_text(
        json.dumps(
            {"source_val": _heads(0.8), "variants": {"colour": {"heads": fine, "logit_adjusted": {"heads": adjusted}}}}
        )
    )
    bench = tmp_path / "bench.json"
    row = {"name": "onnx-fp32", "status": "ok", "latency_ms": {"p50": 3.0}, "accuracy": _heads(0.9)}
    bench.write_text(json.dumps({"rows": [row], "baseline": {"rows": [{**row, "latency_ms": {"p50": 2.0}}]}}))
    ab = tmp_path / "ab.json"
    ab.write_text(json.dumps({"variants": {"refined": {"p50_ms": 3.3, "p50_ratio": 1.1}}}))
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "title": "T",
                "rows": [
                    {"label": "old", "bundle": str(bundle), "latency": {"bench": str(bench), "side": "baseline"}},
                    {"label": "bench", "bench": str(bench), "side": "baseline", "latency": {"bench": str(bench)}},
                    {
                        "label": "+ colour",
                        "refine": str(refine),
                        "variant": "colour",
                        "latency": {"ab": str(ab), "variant": "refined"},
                    },
                    {
                        "label": "+ adjust",
                        "refine": str(refine),
                        "variant": "colour",
                        "adjusted": True,
                        "latency": {"ab": str(ab), "variant": "bundle"},
                    },
                ],
                "notes": ["from real runs"],
            }
        )
    )
    out = tmp_path / "ablation.md"
    result = CliRunner().invoke(main, ["ablation", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    old, colour, adjust = (
        next(line for line in lines if line.startswith(f"| {label} |")) for label in ("old", "+ colour", "+ adjust")
    )
    assert old.endswith("| 2.00 |") and "0.8000 / 0.400" in old
    assert "0.9000 / 0.700" in colour and "0.7500 / 0.500" in colour and "| 0.8000 | 3.30 |" in colour
    assert "0.8990 / 0.730" in adjust and adjust.endswith("| 3.00 |")  # 3.3 / 1.1: the bundle's own graph
    assert "- from real runs" in lines
    bench_line = next(line for line in lines if line.startswith("| bench |"))
    assert "0.9000 / 0.450" in bench_line and bench_line.endswith("| 3.00 |")


def test_a_missing_result_is_a_message_and_exit_2(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"rows": [{"label": "x", "bundle": str(tmp_path / "nowhere")}]}))
    result = CliRunner().invoke(main, ["ablation", str(spec), "--out", str(tmp_path / "a.md")])
    assert result.exit_code == 2 and "missing" in result.output
