"""A Triton Inference Server model repository from the bundle's artifacts.

    <repo>/<name>/config.pbtxt            onnxruntime backend, dynamic batching, one output per head + feature_map
    <repo>/<name>/1/model.onnx            the FP32 ONNX
    <repo>/<name>/<head>_labels.txt       class names, so Triton's classification extension can name classes
    <repo>/<name>_tensorrt_<p>/...        a tensorrt_plan model per TensorRT engine in the bundle (1/model.plan)

Ready for ``tritonserver --model-repository <repo>``. Each model folder is assembled beside its
final place and swapped in whole.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

DEFAULT_MAX_QUEUE_DELAY_US = 500


def _dims(value_info) -> list[int]:
    """Shape without the batch dimension; unknown sizes become -1 (Triton's 'variable')."""
    dims = value_info.type.tensor_type.shape.dim[1:]
    return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]


def _io_block(kind: str, entries: list[tuple[str, list[int], str | None]]) -> str:
    lines = [f"{kind} ["]
    for index, (name, dims, labels) in enumerate(entries):
        lines.append("  {")
        lines.append(f'    name: "{name}"')
        lines.append("    data_type: TYPE_FP32")
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
        if labels:
            lines.append(f'    label_filename: "{labels}"')
        lines.append("  }" + ("," if index < len(entries) - 1 else ""))
    lines.append("]")
    return "\n".join(lines)


def model_config(name: str, platform_line: str, max_batch: int, input_dims: list[int],
                 outputs: list[tuple[str, list[int], str | None]]) -> str:
    preferred = sorted({b for b in (max_batch // 4, max_batch // 2, max_batch) if b >= 1})
    return "\n".join([
        f'name: "{name}"',
        platform_line,
        f"max_batch_size: {max_batch}",
        _io_block("input", [("image", input_dims, None)]),
        _io_block("output", outputs),
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
        f"  max_queue_delay_microseconds: {DEFAULT_MAX_QUEUE_DELAY_US}",
        "}",
        "instance_group [ { count: 1, kind: KIND_AUTO } ]",
        "",
    ])


def triton_model_name(name: str) -> str:
    """Triton model names are folder names: keep letters, digits, '-', '_' and '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "fashion"


def _write_model(repo: Path, model_name: str, config: str, model_file: Path, target_name: str,
                 labels: dict[str, list[str]]) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=repo, prefix=f".{model_name}."))
    try:
        (staging / "1").mkdir()
        shutil.copyfile(model_file, staging / "1" / target_name)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        for head, classes in labels.items():
            (staging / f"{head}_labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        final = repo / model_name
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_repository(bundle, repo: Path, max_batch: int) -> list[Path]:
    """Write the Triton models for ``bundle`` into ``repo``; return the model folders written."""
    import onnx

    artifacts = bundle.artifacts
    entry = artifacts["onnx_fp32"]
    onnx_path = bundle.root / entry["file"]
    graph = onnx.load_model(str(onnx_path), load_external_data=False).graph
    by_name = {value.name: value for value in graph.output}
    input_dims = _dims(next(value for value in graph.input if value.name == "image"))
    outputs = [(entry["outputs"][head], _dims(by_name[entry["outputs"][head]]), f"{head}_labels.txt")
               for head in bundle.heads]
    feature_map = entry.get("feature_map")
    if feature_map:
        outputs.append((feature_map, _dims(by_name[feature_map]), None))
    labels = {head: bundle.labels[head] for head in bundle.heads}

    base = triton_model_name(str(bundle.manifest.get("name") or bundle.root.name))
    written = [_write_model(repo, base, model_config(base, 'backend: "onnxruntime"', max_batch, input_dims, outputs),
                            onnx_path, "model.onnx", labels)]
    for key, engine in artifacts.items():
        if engine.get("format") != "tensorrt":
            continue
        name = f"{base}_{key}"
        engine_batch = int(engine.get("max_batch", max_batch))
        config = model_config(name, 'platform: "tensorrt_plan"', engine_batch, input_dims, outputs)
        written.append(_write_model(repo, name, config, bundle.root / engine["file"], "model.plan", labels))
    return written
