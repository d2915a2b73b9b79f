"""The one export driver: every artifact kind is a Stage (see stages.py); this module runs them.

For each stage the driver does the same thing: try its attempts in order, each written to a staged
file beside its target and opened with its backend for the gate; the first attempt that passes is
renamed into place and recorded in the manifest (one ``edit_manifest`` transaction); if none
passes, nothing is written for it, a stale copy from an earlier run is removed (file and entry,
since it is no longer verified) and the refusal is reported. Order matters: every derived artifact
is checked against the FP32 ONNX, itself checked against Keras first, so a refused FP32 stops the
run (GateError, exit 3).

What the driver records beyond the artifacts are facts, never shared choices: a timing per CPU
artifact tagged with this host's CPU model and ISA flags (``timing.py``), and per-split accuracy
with ``--report-accuracy``. An artifact rebuilt with the same bytes keeps its earlier facts; an
artifact not rebuilt in this run is not touched.

Adding an artifact kind: write a ``Stage`` subclass and register it (``stages.register_stage``), or
for the optional standalone artifact, ``fashion.export.standalone.StandaloneStage`` is picked up
when ``ExportOptions.standalone`` is set (CLI ``--standalone``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime.bundle import Bundle, load_manifest, sha256_file
from fashion.runtime.errors import FashionError
from fashion.runtime.manifest import edit_manifest

from . import gates
from .artifacts import FILES
from .errors import ExportError, GateError, TensorRTUnavailable
from .runner import batch1_p50_ms, run_model
from .stages import FINAL_STAGES, STAGES, Stage, standalone_stage
from .timing import available_cores, merge_timings, timing_fact

DEFAULT_OUT = Path("build") / "triton"
DEFAULT_CACHE = Path("build") / "tensorrt-cache"
CPU_ARTIFACTS = ("onnx_fp32", "onnx_int8", "onnx_fp16")
#: Facts about an artifact's file; kept when a re-export writes the very same bytes again.
FACT_FIELDS = ("accuracy", "timings")

Log = Callable[[str], None]


@dataclass
class ExportOptions:
    """Everything an export run can be asked to do (the CLI maps its flags onto this one object)."""

    fp16: bool = False
    int8: bool = False
    tensorrt: bool = False
    triton: bool = False
    standalone: bool = False
    out: Path = DEFAULT_OUT
    cache_dir: Path = DEFAULT_CACHE
    opset: int = 17
    max_batch: int = 32
    parity_images: int = gates.PARITY_IMAGES
    parity_atol: float = gates.PARITY_ATOL
    fp16_min_agreement: float = gates.FP16_MIN_AGREEMENT
    calib_images: int = gates.CALIBRATION_IMAGES
    eval_images: int = gates.EVAL_IMAGES
    max_drop_pp: float = gates.INT8_MAX_DROP_PP
    data_dir: Path | None = None
    split_file: Path | None = None
    report_accuracy: bool = False
    timings: bool = True
    threads: int | None = None
    force: bool = False
    progress: bool = True


@dataclass
class ExportResult:
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    triton_models: list[Path] = field(default_factory=list)


class ExportContext:
    """What the stages of one run share: the bundle, options, images (loaded once, lazily) and references."""

    def __init__(self, root: Path, options: ExportOptions, log: Log):
        self.root, self.options, self.log = root, options, log
        self.bundle: Bundle = load_manifest(root)  # verifies every recorded sha256 before any work
        self.result = ExportResult()
        self.heads = self.bundle.heads
        self.height, self.width = self.bundle.input_size
        self.previous = {key: entry.to_dict() for key, entry in self.bundle.artifacts.items()}
        keras = self.previous.get("keras")
        self.keras_file: str = keras["file"] if keras else "model.keras"
        if not (root / self.keras_file).is_file():
            raise ExportError(f"{root / self.keras_file}: no Keras model to export (the bundle's training output)")
        self.fp32_entry: dict[str, Any] = {}
        self.fp32_reference: dict[str, np.ndarray] = {}
        self.tensorrt_ok, self.tensorrt_reason = False, ""

    @property
    def fp32_path(self) -> Path:
        return self.root / FILES["onnx_fp32"]

    # -- images: the one place the export reads the dataset --------------------------------------------
    @cached_property
    def _data(self) -> Any:
        from fashion.data.images import LabelledData
        from fashion.data.paths import resolve_data_dir, resolve_split_file

        data_dir = resolve_data_dir(self.options.data_dir)
        recorded = (self.bundle.manifest.to_dict().get("split") or {}).get("file")
        split_file = resolve_split_file(self.options.split_file, recorded, bases=[self.root])
        self.log(f"images: {data_dir} (split {split_file})")
        return LabelledData.open(
            data_dir,
            split_file,
            self.bundle.labels,
            (self.height, self.width),
            progress=self.options.progress,
            preprocessor=self.bundle.preprocessor(),
        )

    def images(self, split: str, limit: int | None, fill_from: tuple[str, ...] = (), desc: str = "") -> Any:
        """Readable labelled images of ``split`` (``.batch()`` float32 NHWC, ``.labels`` {head: int, -1 unknown})."""
        return self._data.images(split, limit, fill_from=fill_from, desc=desc or f"{split} images")

    @cached_property
    def parity_batch(self) -> np.ndarray:
        parity = self.images("val", self.options.parity_images, fill_from=("test", "train"), desc="parity images")
        if len(parity) < self.options.parity_images:
            raise ExportError(
                f"only {len(parity)} readable images for the parity gate, "
                f"need {self.options.parity_images} (check --data and --split)"
            )
        return parity.batch()

    @cached_property
    def calibration(self) -> Any:
        images = self.images("train", self.options.calib_images, desc="calibration images (train)")
        if len(images) == 0:
            raise ExportError("INT8: no training images to calibrate on (check --data and --split)")
        return images

    @cached_property
    def val(self) -> Any:
        images = self.images("val", self.options.eval_images or None, desc="gate images (val)")
        if len(images) == 0:
            raise ExportError("no val images for the accuracy gate (check --data and --split)")
        return images

    # -- references ----------------------------------------------------------------------------------
    @cached_property
    def keras_reference(self) -> dict[str, np.ndarray]:
        """Keras's probabilities on the parity images, run through the ``keras`` backend."""
        entry = self.previous.get("keras") or {"file": self.keras_file, "format": "keras"}
        return run_model(self.root / self.keras_file, {**entry, "format": "keras"}, self.parity_batch)

    @cached_property
    def fp32_val_accuracy(self) -> dict[str, dict[str, Any]]:
        probabilities = run_model(self.fp32_path, self.fp32_entry, self.val.batch())
        return gates.head_accuracy(probabilities, self.val.labels, self.heads)


class _Refused(Exception):
    """Internal: an attempt failed its gate; its staged file is discarded and the next attempt runs."""


# -- recording -----------------------------------------------------------------------------------------


def _record(ctx: ExportContext, key: str, target: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Record an accepted artifact; facts about the same bytes recorded earlier are kept."""
    sha = sha256_file(target)
    entry = {"file": target.name, "sha256": sha, "bytes": target.stat().st_size, **fields}
    previous = ctx.previous.get(key)
    same_file = bool(previous) and previous.get("sha256") == sha
    if same_file:
        entry.update({name: previous[name] for name in FACT_FIELDS if name in previous})
    with edit_manifest(ctx.root) as draft:
        if not same_file and draft.manifest.recorded_default == key:
            draft.put("default_artifact", None)  # an old "fastest here" fact about the file this one replaces
        return draft.put_artifact(key, entry).to_dict()


def _discard(ctx: ExportContext, key: str) -> None:
    """Drop an artifact that is no longer verified (file and manifest entry)."""
    with edit_manifest(ctx.root) as draft:
        entry = draft.manifest.artifacts.get(key)
        if entry is None:
            return
        (ctx.root / entry.file).unlink(missing_ok=True)
        draft.drop_artifact(key)


# -- the driver ----------------------------------------------------------------------------------------


def run_stage(ctx: ExportContext, stage: Stage) -> bool:
    """attempts -> staged build -> gate -> rename + record, or refuse. True when the artifact was accepted."""
    target = stage.target(ctx)
    summaries = []
    for attempt in stage.attempts(ctx):
        ctx.log(f"{stage.title}: {stage.describe(attempt)}")
        try:
            with stage.staging(ctx, target) as staged:
                built = stage.build(ctx, attempt, staged)
                verdict = stage.gate(ctx, attempt, staged, built)
                if not verdict.passed:
                    raise _Refused(verdict.summary)
        except _Refused as refused:
            summaries.append(f"{stage.describe(attempt)}: {refused}")
            ctx.log(f"{stage.title}: gate refused this attempt ({refused})")
            continue
        except FashionError:
            raise
        except Exception as exc:  # a converter or quantizer failing is "could not run" (exit 2), not a crash
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ExportError(
                f"{stage.title} ({stage.describe(attempt)}) failed: {type(exc).__name__}: {first}"
            ) from exc
        fields = stage.entry(ctx, attempt, built, verdict)
        entry = _record(ctx, stage.key, target, fields) if stage.records_artifact else fields
        if stage.records_artifact:
            ctx.result.written[stage.key] = entry
        stage.accepted(ctx, entry)
        ctx.log(f"{stage.title}: {verdict.summary} -> {target}")
        return True
    reason = f"{stage.title} refused by its gate: " + "; ".join(summaries)
    if stage.fatal:
        raise GateError(reason + " (nothing was written)")
    if stage.records_artifact:
        _discard(ctx, stage.key)
    ctx.result.refused[stage.key] = reason
    ctx.log(f"{stage.title}: REFUSED, not written. {reason}")
    return False


def _stages(options: ExportOptions) -> tuple[list[Stage], list[Stage]]:
    bundle_stages = [factory() for factory in STAGES.values()]
    if options.standalone:
        bundle_stages.append(standalone_stage())
    return bundle_stages, [factory() for factory in FINAL_STAGES.values()]


def _check_tensorrt(ctx: ExportContext) -> None:
    options = ctx.options
    if not (options.tensorrt or options.fp16 or options.int8):
        return
    from .tensorrt import tensorrt_status

    ctx.tensorrt_ok, ctx.tensorrt_reason = tensorrt_status()
    if options.tensorrt and not ctx.tensorrt_ok:
        raise TensorRTUnavailable(f"--tensorrt was asked for but cannot run here: {ctx.tensorrt_reason}")


def run_export(bundle_dir: str | Path, options: ExportOptions, log: Log = print) -> ExportResult:
    """Run every stage the options ask for; return what was written, refused and skipped.

    Raises ExportError (could not run, exit 2), GateError (FP32 refused, exit 3) or
    TensorRTUnavailable (``--tensorrt`` impossible here, exit 4) before or instead of half a run.
    """
    ctx = ExportContext(Path(bundle_dir), options, log)
    _check_tensorrt(ctx)
    bundle_stages, final_stages = _stages(options)
    ctx.parity_batch  # noqa: B018 - fail on missing images before converting anything
    for stage in bundle_stages:
        if not (stage.fatal or stage.wanted(ctx)):
            continue
        reason = stage.skip_reason(ctx)
        if reason:
            ctx.result.skipped[stage.key] = reason
            log(f"{stage.title}: skipped ({reason})")
            continue
        run_stage(ctx, stage)
    _drop_stale_derivatives(ctx)
    if options.timings:
        record_timings(ctx)
    if options.report_accuracy:
        report_accuracy(ctx)
    for stage in final_stages:
        if stage.wanted(ctx):
            run_stage(ctx, stage)
    return ctx.result


def _drop_stale_derivatives(ctx: ExportContext) -> None:
    """Artifacts derived from an earlier, different FP32 ONNX (not rebuilt in this run) are no longer verified."""
    fp32_sha = ctx.fp32_entry["sha256"]
    for key, artifact in load_manifest(ctx.root, verify_hashes=False).artifacts.items():
        source = artifact.get("source") or {}
        if source.get("artifact") == "onnx_fp32" and source.get("sha256") != fp32_sha and key not in ctx.result.written:
            _discard(ctx, key)
            ctx.log(f"{key}: removed, it was derived from an earlier FP32 ONNX (re-export it with this run's options)")


def record_timings(ctx: ExportContext) -> None:
    """Time every CPU ONNX artifact at batch 1 on this host and record the fact on each entry."""
    bundle = load_manifest(ctx.root, verify_hashes=False)
    models = {
        key: (ctx.root / bundle.artifacts[key].file, bundle.artifacts[key].to_dict())
        for key in CPU_ARTIFACTS
        if key in bundle.artifacts
    }
    threads = ctx.options.threads or available_cores()
    images = ctx.parity_batch[: gates.TIMING_IMAGES]
    timings = batch1_p50_ms(models, images, threads)
    with edit_manifest(ctx.root) as draft:
        for key, p50 in timings.items():
            fact = timing_fact(p50, threads, batch=1, images=len(images))
            draft.update_artifact(key, timings=merge_timings(draft.manifest.artifacts[key].timings, fact))
    ctx.result.timings = timings
    ctx.log(
        f"timing facts recorded ({threads} thread{'s' if threads > 1 else ''}, batch 1, median of "
        f"{len(images)} images x 3): " + ", ".join(f"{k} {v:.2f} ms" for k, v in timings.items())
    )


def report_accuracy(ctx: ExportContext) -> None:
    """Per-head accuracy of every CPU ONNX artifact on val and test, recorded in its manifest entry."""
    bundle = load_manifest(ctx.root, verify_hashes=False)
    limit = ctx.options.eval_images or None
    sets = {split: ctx.images(split, limit) for split in ("val", "test")}
    batches = {split: images.batch() for split, images in sets.items()}
    measured_by_key = {}
    for key in CPU_ARTIFACTS:
        if key not in bundle.artifacts:
            continue
        entry = bundle.artifacts[key].to_dict()
        measured = {}
        for split, images in sets.items():
            probabilities = run_model(ctx.root / entry["file"], entry, batches[split])
            measured[split] = {
                "images": len(images),
                "heads": gates.head_accuracy(probabilities, images.labels, ctx.heads),
            }
        measured_by_key[key] = copy.deepcopy(measured)
        ctx.log(
            f"{key} accuracy: "
            + "; ".join(
                f"{split} ({m['images']} images) "
                + ", ".join(f"{h} {r['accuracy']:.4f}" for h, r in m["heads"].items() if r["accuracy"] is not None)
                for split, m in measured.items()
            )
        )
    with edit_manifest(ctx.root) as draft:
        for key, measured in measured_by_key.items():
            draft.update_artifact(key, accuracy=measured)
