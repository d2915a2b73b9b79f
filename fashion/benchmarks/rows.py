"""The rows of a benchmark: one per way of running the model, all behind one small interface.

A row is described by a :class:`RowSpec`. In the parent process :func:`skip_reason` says, without
importing any framework, why a row cannot run here (or None). In a worker process
:func:`open_runner` imports the framework, loads the artifact and returns a runner with

    infer(batch float32 NHWC) -> {head: probabilities (N, classes)}
    info -> {"backend", "providers" (actually active), "threads", ...}
    close()

ONNX Runtime and TensorRT rows go through ``fashion.runtime.Classifier`` (the shipped runtime,
with its artifact checks) and time its backend's ``infer`` on the preprocessed batch; Keras rows
load ``model.keras`` with TensorFlow (see keras_row.py).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from fashion.runtime.bundle import Bundle

from .keras_row import TF_INSTALL_HINT, open_keras_runner


@dataclass(frozen=True)
class RowSpec:
    name: str          # CLI name, e.g. "onnx-fp32"
    label: str         # the table's Format column
    engine: str        # "keras", "keras-predict", "onnxruntime" or "tensorrt"
    precision: str
    artifact: str      # key in the bundle manifest's "artifacts"


ROWS: dict[str, RowSpec] = {spec.name: spec for spec in (
    RowSpec("keras", "Keras (compiled call)", "keras", "fp32", "keras"),
    RowSpec("keras-predict", "Keras model.predict", "keras-predict", "fp32", "keras"),
    RowSpec("onnx-fp32", "ONNX Runtime FP32", "onnxruntime", "fp32", "onnx_fp32"),
    RowSpec("onnx-fp16", "ONNX Runtime FP16", "onnxruntime", "fp16", "onnx_fp16"),
    RowSpec("onnx-int8", "ONNX Runtime INT8", "onnxruntime", "int8", "onnx_int8"),
    RowSpec("trt-fp16", "TensorRT FP16", "tensorrt", "fp16", "tensorrt_fp16"),
    RowSpec("trt-int8", "TensorRT INT8", "tensorrt", "int8", "tensorrt_int8"),
)}
DEFAULT_ROWS = tuple(ROWS)
BASELINE = "keras"
INSTALL_HINTS = {
    "keras": TF_INSTALL_HINT,
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
    path = bundle.root / (entry["file"] if entry else "model.keras")
    return path if path.is_file() else None


def artifact_path(spec: RowSpec, bundle: Bundle) -> Path | None:
    if spec.artifact == "keras":
        return keras_model_path(bundle)
    entry = bundle.artifacts.get(spec.artifact)
    return bundle.root / entry["file"] if entry else None


def skip_reason(spec: RowSpec, bundle: Bundle) -> str | None:
    """Why this row cannot run with this bundle on this machine, or None if it can."""
    reasons = []
    family = "keras" if spec.engine.startswith("keras") else spec.engine
    module = {"keras": "tensorflow", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}[family]
    if not _installed(module):
        reasons.append(INSTALL_HINTS[family])
    if artifact_path(spec, bundle) is None:
        if family == "keras":
            reasons.append("no Keras model (model.keras) in bundle")
        else:
            what = f"{'ONNX' if family == 'onnxruntime' else 'TensorRT'} {spec.precision.upper()}"
            reasons.append(f"no {what} artifact in bundle (manifest artifacts['{spec.artifact}']; build it with fashion-export)")
    return "; ".join(reasons) or None


def _session_settings(backend) -> dict:
    """The ONNX Runtime session options really in force (threads, graph optimisation), if any."""
    session = getattr(backend, "session", None)
    if session is None or not hasattr(session, "get_session_options"):
        return {}
    options = session.get_session_options()
    return {"session": {"intra_op_num_threads": options.intra_op_num_threads,
                        "inter_op_num_threads": options.inter_op_num_threads,
                        "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
                        "execution_mode": str(options.execution_mode).split(".")[-1]}}


class ClassifierRunner:
    """A row run by the shipped runtime: Classifier.load picks and checks the artifact."""

    def __init__(self, bundle_dir: str | Path, spec: RowSpec, threads: int | None):
        from fashion.runtime.classifier import Classifier

        providers = ["cpu"] if spec.engine == "onnxruntime" else None
        self.classifier = Classifier.load(bundle_dir, backend=spec.engine, precision=spec.precision,
                                          providers=providers, threads=threads)
        if self.classifier.artifact != spec.artifact:
            raise RuntimeError(f"Classifier chose artifact {self.classifier.artifact!r}, expected {spec.artifact!r}")
        self.info = {**self.classifier.info, **_session_settings(self.classifier.backend)}

    def infer(self, batch):
        return self.classifier.backend.infer(batch)

    def close(self) -> None:
        self.classifier.close()


def open_runner(spec: RowSpec, bundle: Bundle, threads: int | None):
    if spec.engine in ("keras", "keras-predict"):
        path = keras_model_path(bundle)
        if path is None:
            raise FileNotFoundError(f"{bundle.root}: no model.keras")
        return open_keras_runner(path, bundle.heads, threads, predict=spec.engine == "keras-predict")
    return ClassifierRunner(bundle.root, spec, threads)
