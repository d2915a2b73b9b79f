"""``fashion-export --standalone``: the pixels-in model as a Stage of the export driver.

Its options live on ``ExportOptions`` (``standalone_images``, ``standalone_upscaled_images``,
``standalone_ort``, ``standalone_report``, ``standalone_latency_images``); ``--standalone-only`` builds it
from the bundle's recorded FP32 ONNX without re-exporting anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import gates
from ..stages import Stage
from .gate import gate_sets, run_gate
from .graph import FILE, KEY, UPSCALED_SIZE, build_file, entry_fields
from .mobile import discard_ort, write_ort
from .report import measure_latency, write_report

if TYPE_CHECKING:
    from fashion.runtime.manifest import ArtifactEntry

    from ..context import ExportContext


class StandaloneStage(Stage):
    """Build the standalone ONNX from the FP32 ONNX, gate it against the runtime, record it (and its .ort)."""

    key, title, fatal, records_artifact = KEY, "Standalone ONNX (pixels in)", False, True

    def wanted(self, ctx: ExportContext) -> bool:
        return ctx.options.standalone

    def target(self, ctx: ExportContext) -> Path:
        return ctx.root / FILE

    def attempts(self, ctx: ExportContext) -> list[Any]:
        return [None]

    def describe(self, attempt: Any) -> str:
        return "composing pad + antialiased resize with the FP32 network"

    def build(self, ctx: ExportContext, attempt: Any, staged: Path) -> dict[str, Any]:
        return build_file(ctx.bundle, ctx.fp32_entry, staged)

    def gate(self, ctx: ExportContext, attempt: Any, staged: Path, built: dict[str, Any]) -> gates.Verdict:
        options = ctx.options
        sets = gate_sets(
            ctx.bundle,
            options.data_dir,
            options.split_file,
            limit=options.standalone_images,
            upscaled_limit=options.standalone_upscaled_images,
        )
        verdict = run_gate(ctx.root, staged, sets, ctx.log, threads=options.threads, progress=options.progress)
        if not verdict.passed:
            discard_ort(ctx.root)  # derived from the standalone model the driver is about to drop
        return verdict

    def entry(self, ctx: ExportContext, attempt: Any, built: dict[str, Any], verdict: gates.Verdict) -> dict[str, Any]:
        fields = entry_fields(ctx.bundle, ctx.fp32_entry.sha256, verdict.record)
        fields.pop("file")
        return fields

    def accepted(self, ctx: ExportContext, entry: ArtifactEntry | None) -> None:
        assert entry is not None
        options = ctx.options
        if options.standalone_ort:
            write_ort(ctx.root, entry.sha256, ctx.fp32_entry.sha256, list(ctx.heads), ctx.log)
        if options.standalone_report is None:
            return
        latency = None
        if options.standalone_latency_images:
            photos = gate_sets(
                ctx.bundle,
                options.data_dir,
                options.split_file,
                limit=options.standalone_latency_images,
                upscaled_limit=1,
            )[0].paths
            latency = measure_latency(ctx.root, photos, [None, UPSCALED_SIZE], threads=options.threads or 1)
        for path in write_report(entry, options.standalone_report, options.command or "fashion-export", latency):
            ctx.log(f"standalone report: {path}")
