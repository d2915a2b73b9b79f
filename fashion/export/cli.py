"""fashion-export: turn a trained bundle into gated ONNX / FP16 / INT8 / TensorRT artifacts and a Triton repository.

Exit codes (the table in fashion.runtime.errors): 0 everything asked for was written (a TensorRT
engine only implied by --fp16/--int8 may be skipped, with the reason printed); 2 the export could
not run (bad bundle or options, no images, conversion error); 3 an artifact was refused by its gate
(nothing was written for it; artifacts that passed are kept and recorded); 4 --tensorrt was asked
for but TensorRT, cuda-python or a GPU is missing.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from fashion.data.cli_options import DataChoice, data_options
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from . import gates
from .context import DEFAULT_CACHE, DEFAULT_OUT


@run_cli
@click.command(
    context_settings=CONTEXT_SETTINGS,
    epilog="Exit codes: 0 written, 2 could not run, "
    "3 an artifact was refused by its gate, 4 TensorRT/GPU unavailable for --tensorrt.",
)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Triton model repository to write (with --triton).",
)
@click.option("--fp16", is_flag=True, help="Also an FP16 ONNX (I/O FP32) and, where TensorRT runs, an FP16 engine.")
@click.option(
    "--int8",
    is_flag=True,
    help="Also a static INT8 ONNX (QDQ, per-channel) gated on val accuracy, and, where TensorRT runs, an INT8 engine.",
)
@click.option("--tensorrt", is_flag=True, help="Require TensorRT engines: exit 4 if TensorRT or a GPU is missing.")
@click.option("--triton", is_flag=True, help="Write a Triton model repository to --out.")
@click.option("--standalone", is_flag=True, help="Also the standalone ONNX (decoded pixels in, labelled heads out).")
@click.option(
    "--standalone-only",
    is_flag=True,
    help="Only the standalone ONNX, built from the bundle's recorded FP32 ONNX (no Keras model needed).",
)
@click.option(
    "--standalone-images",
    type=click.IntRange(0),
    default=gates.STANDALONE_IMAGES,
    show_default=True,
    help="Test photos for the standalone gate (a seeded subset); 0 = all.",
)
@click.option(
    "--standalone-upscaled-images",
    type=click.IntRange(0),
    default=gates.STANDALONE_UPSCALED_IMAGES,
    show_default=True,
    help="Of those, how many the standalone gate also runs upscaled to 1080x1440; 0 = all.",
)
@click.option(
    "--standalone-ort/--no-standalone-ort",
    default=True,
    show_default=True,
    help="Also the .ort file and operator list for ONNX Runtime Mobile.",
)
@click.option(
    "--standalone-report",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the standalone gate's table and batch-1 latency to DIR/standalone.{json,md}.",
)
@click.option(
    "--standalone-latency-images",
    type=click.IntRange(0),
    default=30,
    show_default=True,
    help="With --standalone-report: photos timed at batch 1 (as they are and at 1080x1440); 0 = no timing.",
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Largest batch for TensorRT profiles and Triton's max_batch_size.",
)
@click.option(
    "--calib-images",
    type=click.IntRange(1),
    default=gates.CALIBRATION_IMAGES,
    show_default=True,
    help="Training images used to calibrate INT8.",
)
@click.option(
    "--eval-images",
    type=click.IntRange(0),
    default=gates.EVAL_IMAGES,
    show_default=True,
    help="Val images for the INT8 accuracy gate (and per split for --report-accuracy); 0 = all.",
)
@click.option(
    "--parity-images",
    type=click.IntRange(1),
    default=gates.PARITY_IMAGES,
    show_default=True,
    help="Real images for the Keras/ONNX parity gate and the FP16 gate.",
)
@click.option(
    "--parity-atol",
    type=float,
    default=gates.PARITY_ATOL,
    show_default=True,
    help="Largest allowed per-head max abs difference between ONNX FP32 and Keras.",
)
@click.option(
    "--max-drop",
    "max_drop_pp",
    type=float,
    default=gates.INT8_MAX_DROP_PP,
    show_default=True,
    help="Largest allowed per-head accuracy drop of INT8 vs FP32, in percentage points.",
)
@data_options(
    data_help="Labelled images (styles.csv + images/); default: $FASHION_SHARED_DATA or ../shared/datasets/"
    "fashion-product-images.",
    split_file_help="Split CSV (id,split); default: the bundle's, else data/splits/fashion-product-images.csv.",
)
@click.option(
    "--report-accuracy",
    is_flag=True,
    help="Measure per-head val and test accuracy of every ONNX artifact and record it in the manifest.",
)
@click.option(
    "--timings/--no-timings",
    default=True,
    show_default=True,
    help="Record each CPU artifact's batch-1 latency on this CPU (a fact tagged with the CPU and its "
    "ISA flags; the runtime chooses the artifact where it runs).",
)
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads for the timings (default: all usable).")
@click.option(
    "--force",
    is_flag=True,
    help="Reconvert the FP32 ONNX even if the recorded one comes from the same Keras file, opset and recipe.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    show_default=True,
    help="TensorRT timing and calibration caches.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def main(bundle: Path, quiet: bool, data_choice: DataChoice, **kwargs) -> None:
    """Export BUNDLE (a fashion-edge model bundle with model.keras) to gated ONNX artifacts.

    Always writes the FP32 ONNX (after a parity gate against Keras on real images) and records a
    batch-1 timing of every CPU artifact on this CPU; artifacts refused by their gate are not written.
    """
    from .errors import GateError
    from .pipeline import ExportOptions, run_export

    command = shlex.join(["fashion-export", *sys.argv[1:]])  # quoted in reports
    data = {"data_dir": data_choice.data_dir, "split_file": data_choice.split_file}  # resolved when images are read
    options = ExportOptions(progress=not quiet, command=command, **data, **kwargs)
    result = run_export(bundle, options, log=click.echo)
    written = ", ".join(
        f"{key} ({entry.file}, {(entry.bytes or 0) / 1e6:.1f} MB)" for key, entry in result.written.items()
    )
    click.echo(f"written: {written or 'nothing'}")
    if result.triton_models:
        click.echo(f"Triton model repository: {kwargs['out']} ({', '.join(p.name for p in result.triton_models)})")
    for key, reason in result.skipped.items():
        click.echo(f"skipped {key}: {reason}")
    if result.refused:
        raise GateError("; ".join(f"REFUSED {key} (not written): {reason}" for key, reason in result.refused.items()))


if __name__ == "__main__":  # pragma: no cover
    main()
