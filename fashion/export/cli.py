"""fashion-export: turn a trained bundle into gated ONNX / FP16 / INT8 / TensorRT artifacts and a Triton repository.

Exit codes: 0 everything asked for was written (a TensorRT engine that was only implied by
--fp16/--int8 may be skipped, with the reason printed); 1 the export could not run (bad bundle, no
images, TensorRT asked for with --tensorrt but unavailable, conversion error); 3 an artifact was
refused by its gate (nothing was written for it; artifacts that passed are kept and recorded).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .pipeline import DEFAULT_CACHE, DEFAULT_OUT, ExportOptions

EXIT_ERROR = 1
EXIT_REFUSED = 3


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True,
              help="Triton model repository to write (with --triton).")
@click.option("--fp16", is_flag=True, help="Also an FP16 ONNX (I/O FP32) and, where TensorRT runs, an FP16 engine.")
@click.option("--int8", is_flag=True, help="Also a static INT8 ONNX (QDQ, per-channel) gated on val accuracy, "
                                           "and, where TensorRT runs, an INT8 engine.")
@click.option("--tensorrt", is_flag=True, help="Require TensorRT engines: fail if TensorRT or a GPU is missing.")
@click.option("--triton", is_flag=True, help="Write a Triton model repository to --out.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--max-batch", type=click.IntRange(1), default=32, show_default=True,
              help="Largest batch for TensorRT profiles and Triton's max_batch_size.")
@click.option("--calib-images", type=click.IntRange(1), default=512, show_default=True,
              help="Training images used to calibrate INT8.")
@click.option("--eval-images", type=click.IntRange(0), default=1000, show_default=True,
              help="Val images for the INT8 accuracy gate (and per split for --report-accuracy); 0 = all.")
@click.option("--parity-images", type=click.IntRange(1), default=256, show_default=True,
              help="Real images for the Keras/ONNX parity gate.")
@click.option("--parity-atol", type=float, default=1e-4, show_default=True,
              help="Largest allowed per-head max abs difference between ONNX FP32 and Keras.")
@click.option("--max-drop", "max_drop_pp", type=float, default=1.0, show_default=True,
              help="Largest allowed per-head accuracy drop of INT8 vs FP32, in percentage points.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Labelled images (styles.csv + images/); default: $FASHION_SHARED_DATA or ../shared/datasets/"
                   "fashion-product-images.")
@click.option("--split", "split_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Split CSV (id,split); default: the bundle's, else data/splits/fashion-product-images.csv.")
@click.option("--report-accuracy", is_flag=True,
              help="Measure per-head val and test accuracy of every ONNX artifact and record it in the manifest.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE,
              show_default=True, help="TensorRT timing and calibration caches.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def main(bundle: Path, quiet: bool, **kwargs) -> None:
    """Export BUNDLE (a fashion-edge model bundle with model.keras) to gated ONNX artifacts.

    Always writes the FP32 ONNX (after a parity gate against Keras on real images) and sets the
    manifest's default_artifact to the fastest CPU artifact that passed its gate.
    """
    from fashion.runtime.errors import FashionError

    from .errors import GateError
    from .pipeline import run_export

    options = ExportOptions(progress=not quiet, **kwargs)
    try:
        result = run_export(bundle, options, log=click.echo)
    except FashionError as exc:
        refused = isinstance(exc, GateError)
        click.echo(f"fashion-export: {'REFUSED' if refused else 'error'}: {exc}", err=True)
        if refused:
            click.echo("fashion-export: nothing was written for the refused artifact.", err=True)
        sys.exit(EXIT_REFUSED if refused else EXIT_ERROR)

    written = ", ".join(f"{key} ({entry['file']}, {entry['bytes'] / 1e6:.1f} MB)" for key, entry in result.written.items())
    click.echo(f"written: {written}; default_artifact: {result.default_artifact}")
    for key, reason in result.skipped.items():
        click.echo(f"skipped {key}: {reason}")
    if result.refused:
        for key, reason in result.refused.items():
            click.echo(f"fashion-export: REFUSED {key} (not written): {reason}", err=True)
        sys.exit(EXIT_REFUSED)


if __name__ == "__main__":  # pragma: no cover
    main()
