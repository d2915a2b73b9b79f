"""The export run: FP32 ONNX (always), then FP16, INT8, TensorRT and Triton as asked.

Order matters: every derived artifact is checked against the FP32 ONNX, which is itself checked
against Keras first. An artifact refused by its gate is not written (and a stale copy from an
earlier run is removed, since it is no longer verified); the run carries on with the others and
the caller turns refusals into a non-zero exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fashion.runtime.bundle import load_manifest, record_artifact, remove_artifact

from .artifacts import FILES, set_manifest_key, update_artifact
from .errors import ExportError, GateError, TensorRTUnavailable

DEFAULT_OUT = Path("build") / "triton"
DEFAULT_CACHE = Path("build") / "tensorrt-cache"
LATENCY_IMAGES = 50
CPU_ARTIFACTS = ("onnx_fp32", "onnx_int8", "onnx_fp16")
DEFAULT_SPEEDUP_MARGIN = 0.9  # another artifact must take <= 90% of FP32's latency to become the default


@dataclass
class ExportOptions:
    fp16: bool = False
    int8: bool = False
    tensorrt: bool = False
    triton: bool = False
    out: Path = DEFAULT_OUT
    cache_dir: Path = DEFAULT_CACHE
    opset: int = 17
    max_batch: int = 32
    parity_images: int = 256
    parity_atol: float = 1e-4
    calib_images: int = 512
    eval_images: int = 1000
    max_drop_pp: float = 1.0
    data_dir: Path | None = None
    split_file: Path | None = None
    report_accuracy: bool = False
    progress: bool = True


@dataclass
class ExportResult:
    written: dict[str, dict] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    default_artifact: str | None = None
    triton_models: list[Path] = field(default_factory=list)


def _discard(root: Path, key: str) -> None:
    """Drop an artifact that is no longer verified (file and manifest entry)."""
    bundle = load_manifest(root, verify_hashes=False)
    if key in bundle.artifacts:
        (root / bundle.artifacts[key]["file"]).unlink(missing_ok=True)
        remove_artifact(root, key)


def run_export(bundle_dir: str | Path, options: ExportOptions, log: Callable[[str], None] = print) -> ExportResult:
    from .checks import run_keras, run_onnx
    from .data import ExportData, resolve_data_dir, resolve_split_file
    from .onnx_fp32 import export_onnx_fp32, load_keras_model
    from .tensorrt import tensorrt_status

    root = Path(bundle_dir)
    bundle = load_manifest(root)
    heads, (height, width) = bundle.heads, bundle.input_size
    result = ExportResult()

    trt_ok, trt_reason = tensorrt_status() if (options.tensorrt or options.fp16 or options.int8) else (False, "")
    if options.tensorrt and not trt_ok:
        raise TensorRTUnavailable(f"--tensorrt was asked for but cannot run here: {trt_reason}")

    keras_file = bundle.artifacts.get("keras", {}).get("file", "model.keras")
    data_dir = resolve_data_dir(options.data_dir)
    split_file = resolve_split_file(options.split_file, bundle.manifest)
    log(f"images: {data_dir} (split {split_file})")
    data = ExportData(data_dir, split_file, bundle.labels, height, width, progress=options.progress)

    parity = data.images("val", options.parity_images, fill_from=("test", "train"), desc="parity images")
    if len(parity) < options.parity_images:
        raise ExportError(f"only {len(parity)} readable images for the parity gate, need {options.parity_images}")
    parity_batch = parity.batch()

    # ONNX FP32: a refusal here stops the run (everything else derives from it).
    log(f"ONNX FP32: converting {root / keras_file} (opset {options.opset})")
    keras_model = load_keras_model(root / keras_file)
    keras_reference = run_keras(keras_model, parity_batch, heads)
    fp32_path = root / FILES["onnx_fp32"]
    entry = export_onnx_fp32(bundle, keras_model, parity_batch, keras_reference, fp32_path,
                             opset=options.opset, atol=options.parity_atol)
    entry["source"] = {"file": keras_file}
    result.written["onnx_fp32"] = record_artifact(root, "onnx_fp32", FILES["onnx_fp32"], **entry)
    worst = max(r["max_abs_diff"] for r in entry["parity"]["heads"].values())
    log(f"ONNX FP32: parity vs Keras on {len(parity)} images: max abs diff {worst:.2e}, argmax agreement 100% "
        f"-> {fp32_path}")
    fp32_reference = run_onnx(fp32_path, parity_batch, entry["outputs"])
    entry["sha256"] = result.written["onnx_fp32"]["sha256"]  # derived artifacts record what they came from

    if options.fp16:
        _export_fp16(root, entry, parity_batch, fp32_reference, heads, result, log)

    calibration = val = None
    if options.int8:
        calibration = data.images("train", options.calib_images, desc="calibration images (train)")
        val = data.images("val", options.eval_images or None, desc="gate images (val)")
        _export_int8(root, entry, calibration, val, heads, options, result, log)

    precisions = (["fp16"] if (options.fp16 or options.tensorrt) else []) + (["int8"] if options.int8 else [])
    if precisions and not trt_ok:
        result.skipped["tensorrt"] = trt_reason
        log(f"TensorRT engine(s) {', '.join(precisions)} skipped: {trt_reason}")
    elif precisions:
        if options.int8 and calibration is None:
            calibration = data.images("train", options.calib_images, desc="calibration images (train)")
        if options.int8 and val is None:
            val = data.images("val", options.eval_images or None, desc="gate images (val)")
        _export_engines(root, entry, precisions, heads, height, width, options, parity_batch, fp32_reference,
                        calibration, val, result, log)

    _drop_stale_derivatives(root, entry["sha256"], result, log)
    result.default_artifact = choose_default_artifact(root, parity_batch[:LATENCY_IMAGES], log)
    if options.report_accuracy:
        report_accuracy(root, data, options.eval_images, log)
    if options.triton:
        from .triton import write_repository

        result.triton_models = write_repository(load_manifest(root), Path(options.out), options.max_batch)
        log(f"Triton model repository: {options.out} ({', '.join(p.name for p in result.triton_models)})")
    return result


def _derived_from(entry: dict) -> dict:
    return {"source": {"artifact": "onnx_fp32", "sha256": entry["sha256"]}}


def _drop_stale_derivatives(root: Path, fp32_sha: str, result: ExportResult, log) -> None:
    """Artifacts derived from an earlier, different FP32 ONNX (not rebuilt in this run) are no longer verified."""
    for key, artifact in load_manifest(root, verify_hashes=False).artifacts.items():
        source = artifact.get("source", {})
        if source.get("artifact") == "onnx_fp32" and source.get("sha256") != fp32_sha and key not in result.written:
            _discard(root, key)
            log(f"{key}: removed, it was derived from an earlier FP32 ONNX (re-export it with this run's options)")


def _export_fp16(root, entry, parity_batch, fp32_reference, heads, result, log) -> None:
    from .fp16 import export_onnx_fp16

    try:
        fp16 = export_onnx_fp16(root / FILES["onnx_fp32"], entry, parity_batch, fp32_reference, heads,
                                root / FILES["onnx_fp16"])
    except GateError as exc:
        _discard(root, "onnx_fp16")
        result.refused["onnx_fp16"] = str(exc)
        log(f"ONNX FP16: REFUSED, not written. {exc}")
        return
    result.written["onnx_fp16"] = record_artifact(root, "onnx_fp16", FILES["onnx_fp16"], **fp16,
                                                 **_derived_from(entry))
    worst = min(r["argmax_agreement"] for r in fp16["parity"]["heads"].values())
    diff = max(r["max_abs_diff"] for r in fp16["parity"]["heads"].values())
    log(f"ONNX FP16: argmax agreement with FP32 >= {worst:.2%}, max abs diff {diff:.2e} -> {root / FILES['onnx_fp16']}")


def _export_int8(root, entry, calibration, val, heads, options, result, log) -> None:
    from .int8 import export_onnx_int8

    log(f"ONNX INT8: calibrating on {len(calibration)} train images, gate on {len(val)} val images "
        f"(max drop {options.max_drop_pp:g} pp per head)")
    try:
        int8 = export_onnx_int8(root / FILES["onnx_fp32"], entry, calibration.batch(), val.batch(), val.labels,
                                heads, root / FILES["onnx_int8"], max_drop_pp=options.max_drop_pp,
                                progress=options.progress)
    except GateError as exc:
        _discard(root, "onnx_int8")
        result.refused["onnx_int8"] = str(exc)
        log(f"ONNX INT8: REFUSED, not written. {exc}")
        return
    result.written["onnx_int8"] = record_artifact(root, "onnx_int8", FILES["onnx_int8"], **int8,
                                                 **_derived_from(entry))
    log(f"ONNX INT8 ({int8['quantization']['plan']}): accuracy drop vs FP32 (pp) {int8['accuracy_gate']['drop_pp']} "
        f"-> {root / FILES['onnx_int8']}")


def _export_engines(root, entry, precisions, heads, height, width, options, parity_batch, fp32_reference,
                    calibration, val, result, log) -> None:
    from .tensorrt import export_engine

    for precision in precisions:
        key = f"tensorrt_{precision}"
        try:
            name, fields = export_engine(
                root, root / FILES["onnx_fp32"], entry, precision, heads, height, width, options.max_batch,
                Path(options.cache_dir), parity_batch, fp32_reference,
                calibration=calibration.batch() if calibration is not None else None,
                val_batch=val.batch() if val is not None else None, val_labels=val.labels if val is not None else None,
                max_drop_pp=options.max_drop_pp)
        except GateError as exc:
            _discard(root, key)
            result.refused[key] = str(exc)
            log(f"TensorRT {precision}: REFUSED, not written. {exc}")
            continue
        result.written[key] = record_artifact(root, key, name, **fields, **_derived_from(entry))
        log(f"TensorRT {precision}: {root / name}")


def choose_default_artifact(root: Path, images, log) -> str:
    """Fastest CPU artifact (batch-1 median latency, ONNX Runtime) among those that passed their gates,
    if it beats FP32 by the margin."""
    from .checks import latency_ms

    bundle = load_manifest(root, verify_hashes=False)
    models = {key: (root / bundle.artifacts[key]["file"], bundle.artifacts[key]["outputs"])
              for key in CPU_ARTIFACTS if key in bundle.artifacts}
    timings = latency_ms(models, images)
    for key, value in timings.items():
        update_artifact(root, key, cpu_latency_ms_batch1=round(value, 3))
    # FP32 stays the default unless another artifact is clearly faster: CPU timings on a shared
    # machine wobble by several percent from run to run.
    best = min(timings, key=timings.get)
    if timings[best] > DEFAULT_SPEEDUP_MARGIN * timings["onnx_fp32"]:
        best = "onnx_fp32"
    set_manifest_key(root, "default_artifact", best)
    log("CPU batch-1 median latency over {} images: {} -> default_artifact = {}".format(
        len(images), ", ".join(f"{k} {v:.2f} ms" for k, v in timings.items()), best))
    return best


def report_accuracy(root: Path, data, eval_images: int, log) -> None:
    """Per-head accuracy of every ONNX artifact on val and test, recorded in its manifest entry."""
    from .checks import accuracy, run_onnx

    bundle = load_manifest(root, verify_hashes=False)
    sets = {split: data.images(split, eval_images or None, desc=f"{split} images") for split in ("val", "test")}
    batches = {split: images.batch() for split, images in sets.items()}
    for key in CPU_ARTIFACTS:
        if key not in bundle.artifacts:
            continue
        artifact = bundle.artifacts[key]
        measured = {}
        for split, images in sets.items():
            probabilities = run_onnx(root / artifact["file"], batches[split], artifact["outputs"])
            measured[split] = {"images": len(images), "heads": accuracy(probabilities, images.labels, bundle.heads)}
        update_artifact(root, key, accuracy=measured)
        log(f"{key} accuracy: " + "; ".join(
            f"{split} ({m['images']} images) " + ", ".join(f"{h} {r['accuracy']:.4f}" for h, r in m["heads"].items()
                                                          if r["accuracy"] is not None)
            for split, m in measured.items()))
