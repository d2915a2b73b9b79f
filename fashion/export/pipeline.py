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
for the optional standalone artifact, ``fashion.export.standalone.StandaloneStage`` runs when
``ExportOptions.standalone`` is set (CLI ``--standalone``; ``--standalone-only`` runs it alone). The
options, the result and the context the stages share live in ``context.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fashion.runtime.bundle import load_manifest, sha256_file
from fashion.runtime.errors import FashionError
from fashion.runtime.manifest import ArtifactEntry, edit_manifest

from . import gates
from .context import ExportContext, ExportOptions, ExportResult, Log
from .errors import ExportError, GateError, TensorRTUnavailable
from .runner import batch1_p50_ms, run_model
from .stages import FINAL_STAGES, STAGES, Stage
from .standalone import StandaloneStage
from .timing import available_cores, merge_timings, timing_fact

CPU_ARTIFACTS = ("onnx_fp32", "onnx_int8", "onnx_fp16")


class _Refused(Exception):
    """Internal: an attempt failed its gate; its staged file is discarded and the next attempt runs."""


# -- recording -----------------------------------------------------------------------------------------


def _record(ctx: ExportContext, key: str, target: Path, fields: dict[str, Any]) -> ArtifactEntry:
    """Record an accepted artifact; facts about the same bytes recorded earlier (accuracy, timings) are kept."""
    sha = sha256_file(target)
    entry = {"file": target.name, "sha256": sha, "bytes": target.stat().st_size, **fields}
    previous = ctx.previous.get(key)
    same_file = previous is not None and previous.sha256 == sha
    if previous is not None and same_file:
        kept = {"accuracy": copy.deepcopy(previous.accuracy), "timings": [t.to_dict() for t in previous.timings]}
        entry.update({name: value for name, value in kept.items() if value})
    with edit_manifest(ctx.root) as draft:
        if not same_file and draft.manifest.recorded_default == key:
            draft.put("default_artifact", None)  # an old "fastest here" fact about the file this one replaces
        return draft.put_artifact(key, entry)


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
        entry = _record(ctx, stage.key, target, fields) if stage.records_artifact else None
        if entry is not None:
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
        bundle_stages.append(StandaloneStage())
    return bundle_stages, [factory() for factory in FINAL_STAGES.values()]


def _standalone_only(ctx: ExportContext) -> ExportResult:
    """``--standalone-only``: the standalone model from the recorded (and verified) FP32 ONNX, nothing else."""
    fp32 = ctx.bundle.artifacts.get("onnx_fp32")
    if fp32 is None:
        raise ExportError(f"{ctx.root}: no onnx_fp32 artifact to build the standalone model from (run fashion-export)")
    ctx.fp32_entry = fp32
    run_stage(ctx, StandaloneStage())
    return ctx.result


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
    if options.standalone_only:
        return _standalone_only(ctx)
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
    fp32_sha = ctx.fp32_entry.sha256
    for key, artifact in load_manifest(ctx.root, verify_hashes=False).artifacts.items():
        source = artifact.derived_from("onnx_fp32")
        if source is not None and source != fp32_sha and key not in ctx.result.written:
            _discard(ctx, key)
            ctx.log(f"{key}: removed, it was derived from an earlier FP32 ONNX (re-export it with this run's options)")


def record_timings(ctx: ExportContext) -> None:
    """Time every CPU ONNX artifact at batch 1 on this host and record the fact on each entry."""
    bundle = load_manifest(ctx.root, verify_hashes=False)
    models = {
        key: (ctx.root / bundle.artifacts[key].file, bundle.artifacts[key])
        for key in CPU_ARTIFACTS
        if key in bundle.artifacts
    }
    threads = ctx.options.threads or available_cores()
    images = ctx.parity_batch[: gates.TIMING_IMAGES]
    timings = batch1_p50_ms(models, images, threads)
    with edit_manifest(ctx.root) as draft:
        for key, p50 in timings.items():
            fact = timing_fact(p50, threads, batch=1, images=len(images))
            draft.put_timings(key, merge_timings(draft.manifest.artifacts[key].timings, fact))
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
        entry = bundle.artifacts[key]
        measured = {}
        for split, images in sets.items():
            probabilities = run_model(ctx.root / entry.file, entry, batches[split])
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
