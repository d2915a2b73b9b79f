"""The rows of a benchmark: one per way of running the model, every one opened through a backend.

A row is described by a :class:`RowSpec`. In the parent process :func:`skip_reason` says, without
importing any framework, why a row cannot run here (or None). In a worker process
:func:`open_runner` opens the row's artifact with ``fashion.runtime.backends.get_backend(engine)``
(``onnxruntime``, ``tensorrt``, or ``keras``, the backend the training package registers) and
returns a :class:`BackendRunner`:

    infer(batch float32 NHWC) -> {head: probabilities (N, classes)}
    info -> {"backend", "providers" (actually active), "threads", ...}
    close()

So the bench times exactly what the runtime and the export gates run; nothing here builds its own
session or Keras call.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashion.runtime.bundle import Bundle
from fashion.runtime.manifest import ArtifactEntry
from fashion.runtime.tta import mirror_averaged


@dataclass(frozen=True)
class RowSpec:
    name: str  # CLI name, e.g. "onnx-fp32"
    label: str  # the table's Format column
    engine: str  # the backend: "keras", "onnxruntime" or "tensorrt"
    precision: str
    artifact: str  # key in the bundle manifest's "artifacts"
    tta: bool = False  # average every batch with its mirror (fashion.runtime.tta), as predict(tta=True) does


ROWS: dict[str, RowSpec] = {
    spec.name: spec
    for spec in (
        RowSpec("keras", "Keras (compiled predict step)", "keras", "fp32", "keras"),
        RowSpec("onnx-fp32", "ONNX Runtime FP32", "onnxruntime", "fp32", "onnx_fp32"),
        RowSpec("onnx-fp16", "ONNX Runtime FP16", "onnxruntime", "fp16", "onnx_fp16"),
        RowSpec("onnx-int8", "ONNX Runtime INT8", "onnxruntime", "int8", "onnx_int8"),
        RowSpec("onnx-fp32-tta", "ONNX Runtime FP32 + mirror (tta)", "onnxruntime", "fp32", "onnx_fp32", tta=True),
        RowSpec("onnx-standalone", "ONNX Runtime standalone (uint8 in)", "onnxruntime", "fp32", "onnx_standalone"),
        RowSpec("trt-fp16", "TensorRT FP16", "tensorrt", "fp16", "tensorrt_fp16"),
        RowSpec("trt-int8", "TensorRT INT8", "tensorrt", "int8", "tensorrt_int8"),
    )
}
DEFAULT_ROWS = tuple(name for name, spec in ROWS.items() if not spec.tta)  # tta rows on request
BASELINE = "keras"
INSTALL_HINTS = {
    "keras": "TensorFlow/Keras not installed — pip install fashion-edge[train]",
    "onnxruntime": "ONNX Runtime not installed — pip install fashion-edge",
    "tensorrt": "TensorRT not installed — pip install fashion-edge[gpu] on a machine with an NVIDIA GPU",
}


def parse_rows(text: str) -> list[RowSpec]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        raise ValueError(f"unknown backend row(s) {unknown or text!r}; choose from {', '.join(ROWS)}")
    return [ROWS[name] for name in dict.fromkeys(names)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def keras_model_path(bundle: Bundle) -> Path | None:
    entry = bundle.artifacts.get("keras")
    path = bundle.root / (entry.file if entry else "model.keras")
    return path if path.is_file() else None


def artifact_path(spec: RowSpec, bundle: Bundle) -> Path | None:
    if spec.artifact == "keras":
        return keras_model_path(bundle)
    entry = bundle.artifacts.get(spec.artifact)
    return bundle.root / entry.file if entry else None


def skip_reason(spec: RowSpec, bundle: Bundle) -> str | None:
    """Why this row cannot run with this bundle on this machine, or None if it can."""
    reasons = []
    module = {"keras": "keras", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}[spec.engine]
    if not _installed(module):
        reasons.append(INSTALL_HINTS[spec.engine])
    if artifact_path(spec, bundle) is None:
        if spec.engine == "keras":
            reasons.append("no Keras model (model.keras) in bundle")
        else:
            what = f"{'ONNX' if spec.engine == 'onnxruntime' else 'TensorRT'} {spec.precision.upper()}"
            if spec.artifact.split("_")[-1] != spec.precision:  # e.g. onnx_standalone: the key says more
                what = spec.label
            reasons.append(
                f"no {what} artifact in bundle (manifest artifacts['{spec.artifact}']; build it with fashion-export)"
            )
    return "; ".join(reasons) or None


def _session_settings(backend: Any) -> dict:
    """The ONNX Runtime session options really in force (threads, graph optimisation), if any."""
    session = getattr(backend, "session", None)
    if session is None or not hasattr(session, "get_session_options"):
        return {}
    options = session.get_session_options()
    return {
        "threads": options.intra_op_num_threads,
        "session": {
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
            "execution_mode": str(options.execution_mode).split(".")[-1],
        },
    }


class BackendRunner:
    """One row's artifact opened with its backend; ``infer`` is the backend's own."""

    def __init__(self, spec: RowSpec, bundle: Bundle, threads: int | None):
        from fashion.runtime.backends import get_backend

        path = artifact_path(spec, bundle)
        if path is None:
            raise FileNotFoundError(f"{bundle.root}: {skip_reason(spec, bundle)}")
        entry = bundle.artifacts.get(spec.artifact) or ArtifactEntry.for_file(path, {"format": "keras"})
        options: dict[str, Any] = {"providers": ["cpu"]} if spec.engine == "onnxruntime" else {}
        self.backend = get_backend(spec.engine).open(path, entry, threads=threads, **options)
        self.info = {
            "backend": f"{spec.engine}: " + ", ".join(self.backend.providers),
            "providers": list(self.backend.providers),
            "threads": threads,
            **_session_settings(self.backend),
        }
        self.tta, self.heads, self.layout = spec.tta, list(bundle.heads), bundle.manifest.input.layout
        applied = getattr(self.backend, "threads_applied", None)
        if applied:
            self.info["threads_applied"] = list(applied)

    def infer(self, batch):
        if self.tta:
            return mirror_averaged(self.backend.infer, batch, self.heads, self.layout)
        return self.backend.infer(batch)

    def close(self) -> None:
        self.backend.close()


def open_runner(spec: RowSpec, bundle: Bundle, threads: int | None) -> BackendRunner:
    return BackendRunner(spec, bundle, threads)
