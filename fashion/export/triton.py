"""A Triton Inference Server model repository from the bundle's artifacts.

    <repo>/<name>/config.pbtxt            onnxruntime backend, dynamic batching, one output per head + feature_map
    <repo>/<name>/1/model.onnx            the FP32 ONNX
    <repo>/<name>/<head>_labels.txt       class names, so Triton's classification extension can name classes
    <repo>/<name>_tensorrt_<p>/...        a tensorrt_plan model per TensorRT engine in the bundle (1/model.plan)

    <repo>/fashion_preprocess, <repo>/fashion_ensemble   image bytes in (see write_ensemble)

Ready for ``tritonserver --model-repository <repo>``. Each model folder is assembled beside its
final place and swapped in whole.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fashion.runtime.bundle import Bundle

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


def model_config(
    name: str,
    platform_line: str,
    max_batch: int,
    input_dims: list[int],
    outputs: list[tuple[str, list[int], str | None]],
) -> str:
    preferred = sorted({b for b in (max_batch // 4, max_batch // 2, max_batch) if b >= 1})
    return "\n".join(
        [
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
        ]
    )


def triton_model_name(name: str) -> str:
    """Triton model names are folder names: keep letters, digits, '-', '_' and '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "fashion"


@contextlib.contextmanager
def _model_folder(repo: Path, model_name: str) -> Iterator[Path]:
    """Yield a staging folder inside ``repo``; on success it replaces ``repo/model_name`` whole, else it is removed."""
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=repo, prefix=f".{model_name}."))
    try:
        yield staging
        staging.chmod(0o755)
        final = repo / model_name
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_model(
    repo: Path, model_name: str, config: str, model_file: Path, target_name: str, labels: dict[str, list[str]]
) -> Path:
    with _model_folder(repo, model_name) as staging:
        (staging / "1").mkdir()
        shutil.copyfile(model_file, staging / "1" / target_name)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        for head, classes in labels.items():
            (staging / f"{head}_labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    return repo / model_name


def write_repository(bundle: Bundle, repo: Path, max_batch: int) -> list[Path]:
    """Write the Triton models for ``bundle`` into ``repo``; return the model folders written."""
    import onnx

    artifacts = bundle.artifacts
    entry = artifacts["onnx_fp32"]
    onnx_path = bundle.root / entry.file
    heads_out = entry.outputs or {}
    graph = onnx.load_model(str(onnx_path), load_external_data=False).graph
    by_name = {value.name: value for value in graph.output}
    input_dims = _dims(next(value for value in graph.input if value.name == "image"))
    outputs = [(heads_out[head], _dims(by_name[heads_out[head]]), f"{head}_labels.txt") for head in bundle.heads]
    feature_map = entry.feature_map
    if feature_map:
        outputs.append((feature_map, _dims(by_name[feature_map]), None))
    labels = {head: bundle.labels[head] for head in bundle.heads}

    base = triton_model_name(bundle.manifest.name or bundle.root.name)
    written = [
        _write_model(
            repo,
            base,
            model_config(base, 'backend: "onnxruntime"', max_batch, input_dims, outputs),
            onnx_path,
            "model.onnx",
            labels,
        )
    ]
    for key, engine in artifacts.items():
        if engine.format != "tensorrt":
            continue
        name = f"{base}_{key}"
        engine_batch = int(engine.extra.get("max_batch", max_batch))
        config = model_config(name, 'platform: "tensorrt_plan"', engine_batch, input_dims, outputs)
        written.append(_write_model(repo, name, config, bundle.root / engine.file, "model.plan", labels))
    written += write_ensemble(
        bundle,
        repo,
        base,
        max_batch,
        input_dims,
        [(heads_out[head], head, dims) for (_, dims, _), head in zip(outputs, bundle.heads)],
    )
    return written


# -- image bytes in: a Python-backend preprocessing model and an ensemble ---------------------------------
#
#   <repo>/fashion_preprocess/1/model.py   image_bytes (TYPE_STRING) -> image (FP32 HxWx3), by fashion.runtime
#   <repo>/fashion_ensemble/               image_bytes -> fashion_preprocess -> <name> (ONNX) -> one output per head
#
# A request whose image cannot be decoded gets its own error response (the runtime's message); the other
# requests of the batch go on. The container needs the runtime installed (pip install fashion-edge).

PREPROCESS_MODEL = "fashion_preprocess"
ENSEMBLE_MODEL = "fashion_ensemble"
PREPROCESS_INSTANCES = 2

PREPROCESS_MODEL_PY = '''"""Triton Python backend: encoded image bytes -> the model's float32 NHWC input, by fashion.runtime.

Generated by fashion-export --triton. Needs fashion-edge (the runtime: numpy, Pillow) in the Python the
backend runs: pip install fashion-edge.
"""

import contextlib
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from fashion.runtime.preprocess import build_preprocessor


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        height, width = (int(v) for v in parameters["input_size"]["string_value"].split(","))
        spec = json.loads(parameters["preprocessing"]["string_value"])
        self.preprocess = build_preprocessor(spec, height, width)

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "image_bytes").as_numpy().reshape(-1)
            try:
                batch = np.stack([self.preprocess(bytes(image)) for image in images]).astype(np.float32)
            except Exception as exc:  # this request's image, not the batch's: answer it alone
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("image", batch)]))
        return responses
'''


def _text_model(repo: Path, model_name: str, files: dict[str, str]) -> Path:
    """A model folder from text files (relative path -> content), swapped in whole like _write_model."""
    with _model_folder(repo, model_name) as staging:
        for relative, text in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(text, encoding="utf-8")
    return repo / model_name


def preprocess_config(max_batch: int, input_dims: list[int], preprocessing: dict, height: int, width: int) -> str:
    spec = json.dumps(json.dumps(preprocessing, sort_keys=True))  # a JSON document inside a pbtxt string
    return "\n".join(
        [
            f'name: "{PREPROCESS_MODEL}"',
            'backend: "python"',
            f"max_batch_size: {max_batch}",
            'input [ { name: "image_bytes" data_type: TYPE_STRING dims: [ 1 ] } ]',
            f'output [ {{ name: "image" data_type: TYPE_FP32 dims: [ {", ".join(map(str, input_dims))} ] }} ]',
            f"dynamic_batching {{ max_queue_delay_microseconds: {DEFAULT_MAX_QUEUE_DELAY_US} }}",
            f"instance_group [ {{ count: {PREPROCESS_INSTANCES}, kind: KIND_CPU }} ]",
            f'parameters {{ key: "input_size" value: {{ string_value: "{height},{width}" }} }}',
            f'parameters {{ key: "preprocessing" value: {{ string_value: {spec} }} }}',
            "",
        ]
    )


def ensemble_config(model_name: str, max_batch: int, heads: list[tuple[str, str, list[int]]]) -> str:
    """image_bytes -> preprocessing -> ``model_name``; ``heads`` = (model output, ensemble output, dims)."""
    outputs = ",\n".join(
        f'  {{ name: "{head}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, dims))} ] }}' for _, head, dims in heads
    )
    output_map = "\n".join(f'      output_map {{ key: "{model_out}" value: "{head}" }}' for model_out, head, _ in heads)
    return "\n".join(
        [
            f'name: "{ENSEMBLE_MODEL}"',
            'platform: "ensemble"',
            f"max_batch_size: {max_batch}",
            'input [ { name: "image_bytes" data_type: TYPE_STRING dims: [ 1 ] } ]',
            "output [",
            outputs,
            "]",
            "ensemble_scheduling {",
            "  step [",
            "    {",
            f'      model_name: "{PREPROCESS_MODEL}"',
            "      model_version: -1",
            '      input_map { key: "image_bytes" value: "image_bytes" }',
            '      output_map { key: "image" value: "preprocessed_image" }',
            "    },",
            "    {",
            f'      model_name: "{model_name}"',
            "      model_version: -1",
            '      input_map { key: "image" value: "preprocessed_image" }',
            output_map,
            "    }",
            "  ]",
            "}",
            "",
        ]
    )


def write_ensemble(
    bundle: Bundle,
    repo: Path,
    model_name: str,
    max_batch: int,
    input_dims: list[int],
    heads: list[tuple[str, str, list[int]]],
) -> list[Path]:
    """The preprocessing model and ``fashion_ensemble`` over ``model_name``; return their folders."""
    height, width = bundle.input_size
    preprocessing = bundle.manifest.preprocessing.to_dict()
    preprocess = _text_model(
        repo,
        PREPROCESS_MODEL,
        {
            "config.pbtxt": preprocess_config(max_batch, input_dims, preprocessing, height, width),
            "1/model.py": PREPROCESS_MODEL_PY,
        },
    )
    ensemble = _text_model(
        repo,
        ENSEMBLE_MODEL,
        {
            "config.pbtxt": ensemble_config(model_name, max_batch, heads),
            # Ensembles have no files, but Triton wants the version folder and the export gate a non-empty one.
            "1/README": f"{ENSEMBLE_MODEL}: image_bytes -> {PREPROCESS_MODEL} -> {model_name}; see config.pbtxt\n",
        },
    )
    return [preprocess, ensemble]
