"""ONNX Runtime backend: CPU, CUDA or the TensorRT execution provider.

Outputs are fetched by the names recorded in the manifest (``entry.outputs``), never by
position: tf2onnx sorts graph outputs alphabetically, which is not the heads' order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, BundleError, UnknownBackendError
from ..manifest import ArtifactEntry
from .base import FEATURE_MAP, Backend

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
    raise BackendUnavailableError(
        "the onnxruntime backend needs the 'onnxruntime' package (pip install fashion-edge, "
        "or fashion-edge[gpu] for CUDA/TensorRT)"
    ) from exc

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


#: Providers that the ``fashion-edge[gpu]`` extra (onnxruntime-gpu) brings.
GPU_EXTRA_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def short_name(provider: str) -> str:
    """'CUDAExecutionProvider' -> 'cuda' (the spelling --provider takes); other names lower-cased."""
    return provider.removesuffix("ExecutionProvider").lower()


def provider_name(name: str) -> str:
    """'cuda' -> 'CUDAExecutionProvider', 'openvino' -> 'OpenVINOExecutionProvider': an alias, a full name or
    the short form of any provider ONNX Runtime knows; anything else passes through unchanged."""
    if name.lower() in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[name.lower()]
    known = {short_name(p): p for p in ort.get_all_providers()} | {p.lower(): p for p in ort.get_all_providers()}
    return known.get(name.lower(), name)


def available_text() -> str:
    """The providers this onnxruntime offers, as --provider spells them: 'cpu (CPUExecutionProvider), ...'."""
    return ", ".join(f"{short_name(p)} ({p})" for p in ort.get_available_providers())


def check_providers(requested: list[str]) -> list[str]:
    """Refuse names ONNX Runtime does not know (exit 2) and known providers missing from this install (exit 4);
    both messages name the providers this onnxruntime reports as available. Returns the missing ones."""
    known = set(ort.get_all_providers())
    unknown = [p for p in requested if p not in known]
    if unknown:
        raise UnknownBackendError(
            f"unknown ONNX Runtime provider(s) {', '.join(unknown)}; onnxruntime {ort.__version__} here offers "
            f"{available_text()}"
        )
    return [p for p in requested if p not in ort.get_available_providers()]


def missing_message(missing: list[str]) -> str:
    """Why the requested providers cannot run here, what this onnxruntime offers and what would add them."""
    names = ", ".join(missing)
    if all(p in GPU_EXTRA_PROVIDERS for p in missing):
        how = "install fashion-edge[gpu] (onnxruntime-gpu) on a machine with CUDA"
    else:
        how = f"install an onnxruntime build that includes {names}"
    return (
        f"this onnxruntime {ort.__version__} offers {available_text()}, not {names}; {how}, "
        "or pass allow_fallback=True to run on what is available"
    )


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(
        self,
        session: ort.InferenceSession,
        path: Path,
        outputs: dict[str, str],
        feature_map: str | None,
        session_options: dict[str, Any] | None = None,
    ):
        self.session = session
        #: The thread and graph settings this session really runs with (reported in Classifier.info).
        self.session_options = dict(session_options or {})
        self.path = path
        self.outputs = outputs
        self.feature_map_name = feature_map
        self.providers = session.get_providers()
        self.input = session.get_inputs()[0]
        self._numpy_input_type = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(
            self.input.type, np.float32
        )

    @classmethod
    def open(
        cls,
        path: Path,
        entry: ArtifactEntry,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        allow_fallback: bool = False,
        graph_optimization: str = "all",
        provider_options: dict[str, dict] | None = None,
        spinning: bool | None = None,
        spin_between_calls: bool | None = None,
        **_: Any,
    ) -> OnnxRuntimeBackend:
        """Open ``path``. ``threads``: intra-op threads (ORT's default: one per core of the affinity mask).

        ``spinning=False`` stops intra-op threads from busy-waiting for the next parallel section at all;
        that costs batch-1 latency (a 2-core Xeon: 3.7 instead of 2.4 ms), because every operator then
        wakes sleeping threads. ``spin_between_calls=False`` keeps the spin inside a call and stops it as
        soon as the call returns (ORT's ``session.force_spinning_stop``), so threads left spinning after
        a call no longer starve image decoding or a second session on the same cores. None keeps ORT's
        defaults (spin, also for a while after each call).
        """
        requested = [provider_name(p) for p in (providers or ["cpu"])]
        available = ort.get_available_providers()
        missing = check_providers(requested)
        if missing and not allow_fallback:
            raise BackendUnavailableError(missing_message(missing))
        chosen = [p for p in requested if p in available]
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")  # nodes a GPU provider cannot run fall back here
        options = provider_options or {}

        settings = ort.SessionOptions()
        if graph_optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(
                f"graph_optimization must be one of {sorted(OPTIMIZATION_LEVELS)}, got {graph_optimization!r}"
            )
        settings.graph_optimization_level = OPTIMIZATION_LEVELS[graph_optimization]
        settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            settings.intra_op_num_threads = int(threads)
            settings.inter_op_num_threads = 1
        if spinning is not None:
            settings.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
            settings.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        if spin_between_calls is not None:
            settings.add_session_config_entry("session.force_spinning_stop", "0" if spin_between_calls else "1")
        used = {
            "intra_op_num_threads": int(threads) if threads else None,
            "inter_op_num_threads": 1 if threads else None,
            "execution_mode": "sequential",
            "graph_optimization": graph_optimization,
            "allow_spinning": True if spinning is None else bool(spinning),
            "spin_between_calls": (spinning is not False) and spin_between_calls is not False,
        }
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=settings,
                providers=chosen,
                provider_options=[options.get(p, {}) for p in chosen],
            )
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt models
            raise BundleError(f"{path}: onnxruntime cannot load this model ({exc})") from None

        active = session.get_providers()
        inactive = [p for p in requested if p not in active]
        if inactive and not allow_fallback:
            raise BackendUnavailableError(
                f"{path}: requested provider(s) {inactive} did not start (active: {active}); "
                + (
                    "check the CUDA/TensorRT installation"
                    if all(p in GPU_EXTRA_PROVIDERS for p in inactive)
                    else f"check the {', '.join(short_name(p) for p in inactive)} installation"
                )
                + " or pass allow_fallback=True"
            )

        outputs = dict(entry.outputs or {})
        graph_outputs = {o.name for o in session.get_outputs()}
        unknown = {head: name for head, name in outputs.items() if name not in graph_outputs}
        if not outputs or unknown:
            raise BundleError(
                f"{path}: manifest outputs {unknown or '(none recorded)'} are not outputs of this model "
                f"(model outputs: {sorted(graph_outputs)})"
            )
        feature_map = entry.feature_map
        if feature_map and feature_map not in graph_outputs:
            raise BundleError(f"{path}: manifest feature_map '{feature_map}' is not an output of this model")
        if len(session.get_inputs()) != 1:
            raise BundleError(f"{path}: expected one input, model has {[i.name for i in session.get_inputs()]}")
        return cls(session, Path(path), outputs, feature_map, used)

    def output_sizes(self) -> dict[str, int | None]:
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        sizes = {}
        for head, name in self.outputs.items():
            last = shapes[name][-1] if shapes[name] else None
            sizes[head] = last if isinstance(last, int) else None
        return sizes

    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        heads = list(self.outputs)
        names = [self.outputs[h] for h in heads]
        if feature_map:
            if not self.feature_map_name:
                raise BundleError(f"{self.path}: this artifact has no feature_map output (needed for cam())")
            heads.append(FEATURE_MAP)
            names.append(self.feature_map_name)
        values = self.session.run(names, {self.input.name: batch.astype(self._numpy_input_type, copy=False)})
        return {head: np.asarray(value, dtype=np.float32) for head, value in zip(heads, values)}

    def close(self) -> None:
        self.session = None
