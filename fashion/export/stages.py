"""The artifact kinds of an export, each a :class:`Stage` with the same shape.

    attempts(ctx)                      what to try, in order (plans, fallbacks)
    build(ctx, attempt, staged)        write the candidate to a staged path beside its target
    gate(ctx, attempt, staged, built)  open the staged file with its backend and judge it -> Verdict
    entry(ctx, attempt, built, verdict) the manifest fields recorded when it passed

The driver (:mod:`fashion.export.pipeline`) owns everything around that: staging and the rename
into place, refusal (nothing half-written, a stale copy removed), recording in the manifest and
progress logging. A new artifact kind is a new Stage subclass registered in :data:`STAGES`
(``register_stage``); the CLI asks for it by name.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashion.runtime.manifest import ArtifactEntry

from . import gates
from .artifacts import FILES, staged_file
from .runner import infer_all, open_model, run_model

if TYPE_CHECKING:
    from .context import ExportContext


class Stage:
    """One artifact kind. Subclasses set ``key``/``title`` and implement the four steps."""

    key: str = ""
    title: str = ""
    #: A refusal of a fatal stage stops the export (everything else derives from its artifact).
    fatal: bool = False
    #: False for stages whose output lives outside the bundle (Triton): nothing goes into the manifest.
    records_artifact: bool = True

    def wanted(self, ctx: ExportContext) -> bool:
        """Whether this run asked for this stage (and it can run here); see ``skip_reason``."""
        return True

    def skip_reason(self, ctx: ExportContext) -> str | None:
        """Why an implied stage is skipped on this machine (None: it runs)."""
        return None

    def target(self, ctx: ExportContext) -> Path:
        return ctx.root / FILES[self.key]

    def staging(self, ctx: ExportContext, target: Path) -> Any:
        """Context manager yielding the path ``build`` writes to; renamed to ``target`` only on success."""
        return staged_file(target)

    def attempts(self, ctx: ExportContext) -> list[Any]:
        return [None]

    def describe(self, attempt: Any) -> str:
        return "build"

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        raise NotImplementedError

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        raise NotImplementedError

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        raise NotImplementedError

    def accepted(self, ctx: ExportContext, entry: ArtifactEntry | None) -> None:
        """Called after the artifact was renamed into place and recorded (e.g. to keep a reference); ``entry`` is
        its manifest entry (None for a stage whose output lives outside the bundle)."""


def _derived(ctx: ExportContext) -> dict[str, Any]:
    return {"source": {"artifact": "onnx_fp32", "sha256": ctx.fp32_entry.sha256}}


def _io_fields(ctx: ExportContext) -> dict[str, Any]:
    fp32 = ctx.fp32_entry
    return {
        "opset": fp32.extra["opset"],
        "input": fp32.input or "image",
        "outputs": fp32.outputs,
        "feature_map": fp32.feature_map,
    }


def _tool_versions(ctx: ExportContext) -> dict[str, Any]:
    return dict(ctx.fp32_entry.extra.get("tool_versions") or {})


# -- ONNX FP32 ------------------------------------------------------------------------------------------


class OnnxFp32Stage(Stage):
    """Keras -> ONNX FP32 (tf2onnx, no-op reshapes removed), gated on parity with Keras on real images.

    If the recorded FP32 was made from the same Keras file (sha256), opset and graph recipe, and
    the file still matches its recorded sha256, it is reused (re-gated, not re-converted): tf2onnx
    names nodes differently on every run, so reconverting would change the file and make every
    artifact derived from it stale for nothing.
    """

    key, title, fatal = "onnx_fp32", "ONNX FP32", True

    def source(self, ctx: ExportContext) -> dict[str, Any]:
        from fashion.runtime.bundle import sha256_file

        from .graph import RECIPE

        keras_file = ctx.keras_file
        return {
            "file": keras_file,
            "sha256": sha256_file(ctx.root / keras_file),
            "opset": ctx.options.opset,
            "graph": RECIPE,
        }

    def _reusable(self, ctx: ExportContext) -> bool:
        from fashion.runtime.bundle import sha256_file

        previous = ctx.previous.get(self.key)
        target = self.target(ctx)
        return (
            previous is not None
            and not ctx.options.force
            and target.is_file()
            and previous.extra.get("source") == self.source(ctx)
            and previous.sha256 == sha256_file(target)
        )

    def attempts(self, ctx: ExportContext) -> list[Any]:
        return ["reuse" if self._reusable(ctx) else "convert"]

    def describe(self, attempt: Any) -> str:
        return (
            "the recorded FP32 comes from this Keras file, opset and recipe: re-checking it"
            if attempt == "reuse"
            else "converting with tf2onnx"
        )

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        if attempt == "reuse":
            shutil.copyfile(self.target(ctx), staged)
            previous = ctx.previous[self.key]
            return {
                "outputs": previous.outputs,
                "rewrites": previous.extra.get("graph_rewrites", {}),
                "tool_versions": previous.extra.get("tool_versions", {}),
            }
        from .onnx_fp32 import build_onnx_fp32

        return build_onnx_fp32(ctx.bundle, ctx.root / ctx.keras_file, staged, opset=ctx.options.opset)

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        candidate = run_model(staged, ArtifactEntry.for_file(staged, self._entry_io(ctx, built)), ctx.parity_batch)
        self._candidate = candidate
        return gates.parity_gate(ctx.keras_reference, candidate, ctx.heads, atol=ctx.options.parity_atol)

    def _entry_io(self, ctx: ExportContext, built: dict[str, Any]) -> dict[str, Any]:
        from .onnx_fp32 import FEATURE_MAP, INPUT

        return {"format": "onnx", "input": INPUT, "outputs": built["outputs"], "feature_map": FEATURE_MAP}

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        return {
            **self._entry_io(ctx, built),
            "precision": "fp32",
            "opset": ctx.options.opset,
            "tool_versions": built["tool_versions"],
            "graph_rewrites": built["rewrites"],
            "parity": verdict.record,
            "source": self.source(ctx),
        }

    def accepted(self, ctx: ExportContext, entry: ArtifactEntry | None) -> None:
        assert entry is not None
        ctx.fp32_entry = entry
        ctx.fp32_reference = self._candidate


# -- ONNX FP16 ------------------------------------------------------------------------------------------


class OnnxFp16Stage(Stage):
    """FP32 -> FP16 weights and activations (I/O FP32); retried with sensitive ops kept FP32."""

    key, title = "onnx_fp16", "ONNX FP16"

    def wanted(self, ctx: ExportContext) -> bool:
        return ctx.options.fp16

    def attempts(self, ctx: ExportContext) -> list[Any]:
        from .fp16 import SENSITIVE_OPS

        return [[], SENSITIVE_OPS]

    def describe(self, attempt: Any) -> str:
        return f"converting, kept FP32: {', '.join(attempt)}" if attempt else "converting"

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        from .fp16 import write_fp16

        return write_fp16(ctx.fp32_path, staged, attempt)

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        fields = {"format": "onnx", "precision": "fp16", **_io_fields(ctx)}
        candidate = run_model(staged, ArtifactEntry.for_file(staged, fields), ctx.parity_batch)
        return gates.agreement_gate(ctx.fp32_reference, candidate, ctx.heads, ctx.options.fp16_min_agreement)

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        return {
            "format": "onnx",
            "precision": "fp16",
            **_io_fields(ctx),
            "io_precision": "fp32",
            "kept_fp32_ops": list(attempt),
            "tool_versions": {**_tool_versions(ctx), **built},
            "parity": verdict.record,
            **_derived(ctx),
        }


# -- ONNX INT8 ------------------------------------------------------------------------------------------


class OnnxInt8Stage(Stage):
    """Static INT8 (QDQ, per-channel), plans tried in order (``int8.PLANS``), gated on val accuracy drop."""

    key, title = "onnx_int8", "ONNX INT8"

    def wanted(self, ctx: ExportContext) -> bool:
        return ctx.options.int8

    def attempts(self, ctx: ExportContext) -> list[Any]:
        from .int8 import PLANS

        ctx.log(
            f"{self.title}: calibrating on {len(ctx.calibration)} train images, gate on {len(ctx.val)} val "
            f"images (max drop {ctx.options.max_drop_pp:g} pp per head)"
        )
        self.tried: list[dict[str, Any]] = []
        return list(PLANS)

    def describe(self, attempt: Any) -> str:
        return f"plan {attempt.name}"

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        from .int8 import quantize

        return quantize(ctx.fp32_path, staged, ctx.calibration.batch(), attempt, progress=ctx.options.progress)

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        fields = {"format": "onnx", "precision": "int8", **_io_fields(ctx)}
        probabilities = run_model(staged, ArtifactEntry.for_file(staged, fields), ctx.val.batch())
        accuracy = gates.head_accuracy(probabilities, ctx.val.labels, ctx.heads)
        verdict = gates.accuracy_drop_gate(
            ctx.fp32_val_accuracy, accuracy, ctx.options.max_drop_pp, images=len(ctx.val)
        )
        self.tried.append({"plan": attempt.name, "drop_pp": verdict.record["drop_pp"]})
        return verdict

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        import onnxruntime

        return {
            "format": "onnx",
            "precision": "int8",
            **_io_fields(ctx),
            "io_precision": "fp32",
            "quantization": built,
            "tool_versions": {**_tool_versions(ctx), "onnxruntime": onnxruntime.__version__},
            "accuracy_gate": {**verdict.record, "attempts": list(self.tried)},
            **_derived(ctx),
        }


# -- TensorRT -------------------------------------------------------------------------------------------


class TensorRTStage(Stage):
    """A TensorRT engine from the FP32 ONNX, gated by opening it with the runtime's TensorRT backend."""

    def __init__(self, precision: str):
        self.precision = precision
        self.key = f"tensorrt_{precision}"
        self.title = f"TensorRT {precision.upper()}"

    def wanted(self, ctx: ExportContext) -> bool:
        o = ctx.options
        return (o.fp16 or o.tensorrt) if self.precision == "fp16" else o.int8

    def skip_reason(self, ctx: ExportContext) -> str | None:
        return None if ctx.tensorrt_ok else ctx.tensorrt_reason

    def target(self, ctx: ExportContext) -> Path:
        from .tensorrt import engine_file_name

        return ctx.root / engine_file_name(self.precision)

    def attempts(self, ctx: ExportContext) -> list[Any]:
        return [False, True]

    def describe(self, attempt: Any) -> str:
        return "building with sensitive layers pinned to FP32" if attempt else "building"

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        from .tensorrt import build_engine

        calibration = ctx.calibration.batch() if self.precision == "int8" else None
        staged.write_bytes(
            build_engine(
                ctx.fp32_path,
                self.precision,
                ctx.height,
                ctx.width,
                ctx.options.max_batch,
                Path(ctx.options.cache_dir),
                calibration,
                fp32_fallback=attempt,
            )
        )
        return {}

    def _entry(self, ctx: ExportContext, attempt: Any) -> dict[str, Any]:
        from .tensorrt import FP32_FALLBACK_LAYER_TYPES, engine_facts

        max_batch = ctx.options.max_batch
        return {
            "format": "tensorrt",
            "precision": self.precision,
            **_io_fields(ctx),
            **engine_facts(),
            "max_batch": max_batch,
            "profile": {"min": 1, "opt": max(1, max_batch // 2), "max": max_batch},
            "fp32_fallback_layers": list(FP32_FALLBACK_LAYER_TYPES) if attempt else [],
        }

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        entry = ArtifactEntry.for_file(staged, self._entry(ctx, attempt))
        if self.precision == "fp16":
            candidate = run_model(staged, entry, ctx.parity_batch)
            return gates.agreement_gate(ctx.fp32_reference, candidate, ctx.heads, ctx.options.fp16_min_agreement)
        accuracy = gates.head_accuracy(run_model(staged, entry, ctx.val.batch()), ctx.val.labels, ctx.heads)
        return gates.accuracy_drop_gate(ctx.fp32_val_accuracy, accuracy, ctx.options.max_drop_pp, images=len(ctx.val))

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        entry = self._entry(ctx, attempt)
        entry["tool_versions"] = {**_tool_versions(ctx), "tensorrt": entry["tensorrt_version"]}
        entry["gate"] = verdict.record
        return {**entry, **_derived(ctx)}


# -- Triton ---------------------------------------------------------------------------------------------


class TritonStage(Stage):
    """A Triton model repository from the recorded artifacts; gated by reading every written config back."""

    key, title, records_artifact = "triton", "Triton repository", False

    def describe(self, attempt: Any) -> str:
        return "writing"

    def wanted(self, ctx: ExportContext) -> bool:
        return ctx.options.triton

    def target(self, ctx: ExportContext) -> Path:
        return Path(ctx.options.out)

    def staging(self, ctx: ExportContext, target: Path) -> Any:
        @contextmanager
        def in_place() -> Iterator[Path]:  # write_repository swaps each model folder in whole by itself
            yield target

        return in_place()

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        from fashion.runtime.bundle import load_manifest

        from .triton import write_repository

        return {"models": write_repository(load_manifest(ctx.root), staged, ctx.options.max_batch)}

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        problems = [
            str(model)
            for model in built["models"]
            if not (model / "config.pbtxt").is_file() or not any((model / "1").iterdir())
        ]
        names = ", ".join(p.name for p in built["models"])
        return gates.Verdict(
            not problems,
            {"models": names},
            f"incomplete model folders: {problems}" if problems else f"{staged} ({names})",
        )

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        ctx.result.triton_models = built["models"]
        return {}


#: Stage factories by name, in the order the driver runs them. The optional standalone artifact is
#: ``fashion.export.standalone.StandaloneStage``, added by the driver when ``ExportOptions.standalone`` is set.
STAGES: dict[str, Callable[[], Stage]] = {
    "onnx_fp32": OnnxFp32Stage,
    "onnx_fp16": OnnxFp16Stage,
    "onnx_int8": OnnxInt8Stage,
    "tensorrt_fp16": lambda: TensorRTStage("fp16"),
    "tensorrt_int8": lambda: TensorRTStage("int8"),
}
#: Stages that write outside the bundle or depend on every artifact being recorded run last.
FINAL_STAGES: dict[str, Callable[[], Stage]] = {"triton": TritonStage}


def register_stage(name: str, factory: Callable[[], Stage], final: bool = False) -> None:
    """Add an artifact kind to the export (``final``: after every bundle artifact, like Triton)."""
    (FINAL_STAGES if final else STAGES)[name] = factory


__all__ = ["FINAL_STAGES", "STAGES", "Stage", "infer_all", "open_model", "register_stage"]
