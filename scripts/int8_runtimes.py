"""Does a real INT8 pay for this model on this CPU? ONNX Runtime and OpenVINO (+ NNCF), measured side by side.

Not part of the package or the test suite: it needs ``openvino`` and ``nncf`` (``pip install openvino nncf``)
beside the runtime's own dependencies, and the real data. Run from the repository root:

    PYTHONPATH=. python scripts/int8_runtimes.py models/fashion-effnetb0 \
        --data ../shared/datasets/fashion-product-images --out results/int8-runtimes-xeon

Rows: the bundle's FP32 and INT8 ONNX on ONNX Runtime; the same FP32 ONNX on OpenVINO (f32, and bf16 where
the CPU has it); NNCF post-training INT8 of that FP32 ONNX, calibrated on 512 train images like the export
(``mixed``: NNCF's default placement; ``conv-only``: only convolution and depthwise inputs quantized, the
squeeze-excite multiplies, residual adds and heads left in float). Accuracy: every val image, per head, as
the drop in percentage points against ONNX Runtime FP32. Latency: each row in its own fresh process, batch-1
p50 (2 threads and 1 thread) and batch-32 images/s (2 threads), two passes over the rows in alternating order,
the median of the passes kept. ONNX Runtime runs with the runtime's default spinning (inside calls only).
Nothing here is selected on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = ("ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8-mixed", "ov-int8-conv-only")
TIMINGS = (("b1_2t_ms", 1, 2), ("b1_1t_ms", 1, 1), ("b32_2t_img_s", 32, 2))


def _open(row: str, bundle: Path, work: Path, threads: int, batch: int | None):
    """A callable x -> {head: probabilities} for ``row``."""
    if row.startswith("ort"):
        import onnxruntime as ort

        settings = ort.SessionOptions()
        settings.intra_op_num_threads, settings.inter_op_num_threads = threads, 1
        settings.add_session_config_entry("session.force_spinning_stop", "1")
        path = bundle / ("model_int8.onnx" if row == "ort-int8" else "model_fp32.onnx")
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        feed = session.get_inputs()[0].name
        return lambda x: dict(zip(names, session.run(None, {feed: x}), strict=True))
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(work / f"{row}.xml") if "int8" in row else str(bundle / "model_fp32.onnx"))
    if batch:  # a static shape: OpenVINO plans its kernels for it
        shape = list(model.inputs[0].get_partial_shape().get_min_shape())
        model.reshape({model.inputs[0].get_any_name(): [batch, *shape[1:]]})
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "bf16" if row == "ov-bf16" else "f32",
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = {output.get_any_name(): output for output in compiled.outputs}

    def run(x):
        result = request.infer({0: x})
        return {name: result[output] for name, output in outputs.items()}

    return run


def _time_row(row: str, bundle: Path, work: Path, images: np.ndarray) -> dict[str, float]:
    """Runs in a fresh process: the three timings of one row (untimed warm-up calls, then the median call, by
    the project's one timer ``fashion.runtime.timing.median_ms``)."""
    from fashion.runtime.timing import median_ms

    out = {}
    for name, batch, threads in TIMINGS:
        run = _open(row, bundle, work, threads, batch)
        calls = 300 if batch == 1 else 30
        starts = [(i * batch) % (len(images) - batch) for i in range(calls)]
        inputs = [images[start : start + batch] for start in starts]
        p50 = median_ms({name: run}, inputs, warmup=20 if batch == 1 else 5)[name]
        out[name] = round(p50, 3) if batch == 1 else round(1000 * batch / p50, 1)
    return out


def _quantize(bundle: Path, work: Path, calibration: np.ndarray) -> dict[str, float]:
    import nncf
    import openvino as ov

    seconds = {}
    scopes = {
        "ov-int8-mixed": None,
        "ov-int8-conv-only": nncf.IgnoredScope(types=["Multiply", "Add", "ReduceMean", "MatMul"], validate=False),
    }
    for row, scope in scopes.items():
        clock = time.perf_counter()
        model = ov.Core().read_model(str(bundle / "model_fp32.onnx"))
        options = {"subset_size": len(calibration), "preset": nncf.QuantizationPreset.MIXED}
        if scope is not None:
            options["ignored_scope"] = scope
        dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
        ov.save_model(nncf.quantize(model, dataset, **options), str(work / f"{row}.xml"))
        seconds[row] = round(time.perf_counter() - clock, 1)
    return seconds


def _accuracy(row, bundle, work, val, labels, heads) -> dict[str, float]:
    run = _open(row, bundle, work, 2, None)
    tops: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    for start in range(0, len(val), 64):
        outputs = run(val[start : start + 64])
        for head in heads:
            tops[head].append(outputs[head].argmax(1))
    scores = {}
    for head in heads:
        known = labels[head] >= 0
        scores[head] = float((np.concatenate(tops[head])[known] == labels[head][known]).mean())
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", default="data/splits/fashion-product-images.csv")
    parser.add_argument("--out", required=True, help="path prefix: writes PREFIX.json and PREFIX.md")
    parser.add_argument("--time-row", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_row:  # child process: one row's timings, printed as JSON
        images = np.load(args.work / "timing.npy")
        print(json.dumps(_time_row(args.time_row, args.bundle, args.work, images)))
        return 0

    from fashion.data.images import LabelledData
    from fashion.runtime.bundle import load_manifest
    from fashion.runtime.host import cpu_facts

    bundle = load_manifest(args.bundle, verify_hashes=False)
    data = LabelledData.open(
        args.data, args.split_file, bundle.labels, bundle.input_size, preprocessor=bundle.preprocessor()
    )
    calibration, val = data.images("train", 512), data.images("val", None)
    cpu = cpu_facts()
    rows = [row for row in ROWS if row != "ov-bf16" or {"avx512_bf16", "amx_bf16"} & set(cpu.flags)]
    with tempfile.TemporaryDirectory(prefix="int8-runtimes-") as tmp:
        work = Path(tmp)
        quantize_seconds = _quantize(args.bundle, work, calibration.batch())
        np.save(work / "timing.npy", val.batch()[:400])
        accuracy = {row: _accuracy(row, args.bundle, work, val.batch(), val.labels, bundle.heads) for row in rows}
        passes: dict[str, list[dict[str, float]]] = {row: [] for row in rows}
        for order in (rows, rows[::-1]):
            for row in order:
                command = [sys.executable, __file__, str(args.bundle), "--data", args.data, "--out", args.out]
                command += ["--time-row", row, "--work", str(work)]
                done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ.copy())
                passes[row].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(row, passes[row][-1], file=sys.stderr)
    timings = {
        row: {name: statistics.median(p[name] for p in runs) for name, *_ in TIMINGS} for row, runs in passes.items()
    }
    reference = accuracy["ort-fp32"]
    result = {
        "bundle": str(args.bundle),
        "cpu": cpu.to_dict(),
        "versions": _versions(),
        "val_images": len(val),
        "calibration_images": len(calibration),
        "quantize_seconds": quantize_seconds,
        "rows": {
            row: {
                "accuracy": accuracy[row],
                "drop_pp": {h: round(100 * (accuracy[row][h] - reference[h]), 2) for h in bundle.heads},
                "worst_drop_pp": round(min(100 * (accuracy[row][h] - reference[h]) for h in bundle.heads), 2),
                "timings": timings[row],
                "timing_passes": passes[row],
            }
            for row in rows
        },
        "command": "PYTHONPATH=. python scripts/int8_runtimes.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(f"{args.out}.md").write_text(render(result), encoding="utf-8")
    print(render(result))
    return 0


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("onnxruntime", "openvino", "nncf"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def render(result: dict) -> str:
    cpu, rows = result["cpu"], result["rows"]
    base = rows["ort-fp32"]["timings"]
    lines = [
        "# A real INT8 on this CPU? ONNX Runtime vs OpenVINO + NNCF",
        "",
        f"CPU: {cpu['model']} ({cpu['arch']}); ISA flags: {', '.join(cpu['flags'])}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + f". Generated by `{result['command']}`.",
        "",
        f"Accuracy: all {result['val_images']} val images, drop in pp against ONNX Runtime FP32. Latency: each row in "
        "a fresh process, two passes in alternating order, median of the passes; *vs ORT FP32* is the ratio of "
        "the batch-1 2-thread p50s.",
        "",
        "| row | worst head drop (pp) | baseColour | season | b1 p50, 2 threads (ms) | vs ORT FP32 | "
        "b1 p50, 1 thread (ms) | b32 img/s, 2 threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, values in rows.items():
        t = values["timings"]
        lines.append(
            f"| {row} | {values['worst_drop_pp']:+.2f} | {values['drop_pp'].get('baseColour', 0):+.2f} | "
            f"{values['drop_pp'].get('season', 0):+.2f} | {t['b1_2t_ms']:.2f} | "
            f"{base['b1_2t_ms'] / t['b1_2t_ms']:.2f}x | {t['b1_1t_ms']:.2f} | {t['b32_2t_img_s']:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
