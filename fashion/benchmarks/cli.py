"""fashion-bench: latency and accuracy of every artifact of a bundle, side by side, in one run.

fashion-bench BUNDLE ...                  the rows (every artifact, one fresh process each); = fashion-bench rows
fashion-bench photos BUNDLE ...           end-to-end predict(path) on real-size photos
fashion-bench cores BUNDLE --cores 1,2,4  predict_batch images/s per core count, one pinned process each
fashion-bench ab BUNDLE NAME=FILE.onnx    the bundle's FP32 graph vs variants of it, in one process
fashion-bench robustness BUNDLE ...       accuracy on the split, its sharp copies, shifts, other shops
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
import numpy as np

from fashion.data.cli_options import DataChoice, data_options
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from . import rows


def _int_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 1,8,32") from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: every value must be a positive integer")
    return sizes


def _backends(ctx, param, value: str) -> list[str]:
    try:
        return [spec.name for spec in rows.parse_rows(value)]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class _RowsByDefault(click.Group):
    """``fashion-bench BUNDLE ...`` is ``fashion-bench rows BUNDLE ...``: a first word that is not a mode runs rows."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [DEFAULT_MODE, *args]
        return super().parse_args(ctx, args)


DEFAULT_MODE = "rows"
#: The flags that were modes before the subcommands, and what to type now.
MOVED_MODES = {
    "--photos": "fashion-bench photos BUNDLE",
    "--cores": "fashion-bench cores BUNDLE --cores N,N,...",
    "--ab": "fashion-bench ab BUNDLE NAME=FILE.onnx ...",
    "--ab-rounds": "fashion-bench ab BUNDLE NAME=FILE.onnx --rounds N",
    "--robustness": "fashion-bench robustness BUNDLE",
    "--sharp": "fashion-bench robustness BUNDLE --sharp DIR",
    "--other-shops": "fashion-bench robustness BUNDLE --other-shops DIR",
    "--precision": "fashion-bench robustness BUNDLE --precision NAME",
}


def _moved(ctx, param, value) -> None:
    if value:
        flag = param.opts[0]
        raise click.UsageError(f"{flag} is a mode of its own now: {MOVED_MODES[flag]}", ctx)


def _moved_modes(fn):
    """Hidden options that only say where a former mode flag of the rows command went."""
    for flag in MOVED_MODES:
        is_flag = flag in ("--photos", "--robustness")
        fn = click.option(flag, hidden=True, expose_value=False, is_flag=is_flag, callback=_moved)(fn)
    return fn


def _bench_data_options(split_help: str, limit: bool = True, data_help: str = ""):
    return data_options(
        data_help=data_help
        or "Kaggle-layout folder (styles.csv + images/). Default: the shared Fashion Product Images data.",
        split="test",
        split_help=split_help,
        split_file_help="id,split CSV. Default: the manifest's split file, else data/splits/fashion-product-images.csv.",
        limit=limit,
        limit_help="Score a seeded sample of N images (the same ones on every run).",
        bundle_arg="bundle",
    )


def _output_options(table: str):
    def decorate(fn):
        for option in reversed(
            [
                click.option(
                    "--threads",
                    default=None,
                    type=click.IntRange(1),
                    help="Threads for the model (TF intra-op / ORT intra-op). Default: the cores available.",
                ),
                click.option(
                    "--json",
                    "json_path",
                    type=click.Path(dir_okay=False),
                    default=None,
                    help="Write the full result here.",
                ),
                click.option(
                    "--markdown",
                    "markdown_path",
                    type=click.Path(dir_okay=False),
                    default=None,
                    help=f"Also write {table} as Markdown (for READMEs).",
                ),
                click.option("--quiet", is_flag=True, help="No progress output, only the table."),
            ]
        ):
            fn = option(fn)
        return fn

    return decorate


def _log(quiet: bool):
    return (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))


def _optional(path) -> str | None:
    return str(path) if path is not None else None


@run_cli
@click.group(cls=_RowsByDefault, context_settings=CONTEXT_SETTINGS, no_args_is_help=False)
def main():
    """Benchmark a bundle. fashion-bench BUNDLE [OPTIONS] runs the rows (the same as fashion-bench rows BUNDLE);
    the other modes are subcommands: fashion-bench MODE BUNDLE [OPTIONS] (fashion-bench MODE -h for each)."""


@main.command(DEFAULT_MODE, context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@_bench_data_options(
    "Split to score. Applies to the default data always, to --data when given explicitly or with --split-file.",
    data_help="Kaggle-layout folder (styles.csv + images/), scored whole. Default: the bundle's test "
    "split of the shared Fashion Product Images data.",
)
@click.option(
    "--backends",
    default=",".join(rows.DEFAULT_ROWS),
    show_default=True,
    callback=_backends,
    help="Rows to run, in order; rows that cannot run here are listed with the reason.",
)
@click.option(
    "--batch-sizes", default="1,8,32", show_default=True, callback=_int_list, help="Throughput is measured at each."
)
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0), help="Untimed calls first.")
@click.option(
    "--iters",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Timed batch-1 calls; also about this many images per throughput measurement.",
)
@click.option(
    "--rounds",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Split the timed calls of every row into this many rounds (all batch sizes in turn); the table's "
    "'spread %' is the range of the rounds' p50s, below which a difference between rows is noise.",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An older bundle to compare with: its rows run too, in the same run and machine, on the same "
    "images (each through its own preprocessing); adds a 'vs baseline' section and ratios new/old. "
    "Refused when the two labels.json differ.",
)
@click.option(
    "--plot",
    "plot_prefix",
    type=click.Path(),
    default=None,
    help="Write PREFIX_latency.png and PREFIX_accuracy.png (a trailing .png is dropped; the paths are printed).",
)
@click.option(
    "--min-accuracy",
    multiple=True,
    metavar="HEAD=VALUE",
    help="Exit 1 if any row's accuracy on HEAD (a fraction, e.g. 0.9) is below VALUE. Repeatable.",
)
@_output_options("the table")
@_moved_modes
def rows_command(
    bundle,
    data_choice: DataChoice,
    backends,
    batch_sizes,
    warmup,
    iters,
    rounds,
    baseline,
    plot_prefix,
    min_accuracy,
    threads,
    json_path,
    markdown_path,
    quiet,
):
    """(default) Every artifact of BUNDLE: latency, throughput, cold start, memory and per-head accuracy.

    Each row runs in its own fresh process with the same threads, images and iteration counts;
    speed-ups are relative to the compiled Keras call measured in the same run. With --baseline OLD,
    OLD's rows run in the same run too (row by row, old then new) and the output adds "vs baseline".
    """
    from fashion.runtime.errors import FashionError

    from .bench import accuracy_failures, parse_thresholds, run_benchmark
    from .report import render_markdown, render_text, write_json, write_plots

    log = _log(quiet)
    config = _config(bundle, data_choice, backends, batch_sizes, warmup, iters, rounds, threads, baseline)
    try:
        from fashion.runtime.bundle import load_manifest

        thresholds = parse_thresholds(list(min_accuracy), load_manifest(bundle, verify_hashes=False).heads)
        result = run_benchmark(config, progress=not quiet, log=log)
    except (FashionError, FileNotFoundError):
        raise  # run_cli: "Error: ..." and the documented exit code (2 for unusable data or bundle)
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None

    failures = accuracy_failures(result, thresholds)
    result["accuracy_gate"] = {"thresholds": thresholds, "failures": failures}
    click.echo(render_text(result))
    written = []  # said even with --quiet: the user needs the names (--plot X.png writes two other files)
    if json_path:
        write_json(result, json_path)
        written.append(f"{json_path} (full result)")
    if markdown_path:
        Path(markdown_path).write_text(render_markdown(result) + "\n", encoding="utf-8")
        written.append(f"{markdown_path} (table)")
    if plot_prefix:
        latency_png, accuracy_png = write_plots(result, plot_prefix)
        written += [f"{latency_png} (latency plot)", f"{accuracy_png} (accuracy plot)"]
    for line in written:
        click.echo(f"wrote {line}", err=True)
    failed_rows = [row["name"] for row in result["rows"] if row["status"] == "failed"]
    failed_rows += [
        f"baseline {row['name']}" for row in (result.get("baseline") or {}).get("rows", []) if row["status"] == "failed"
    ]
    if failed_rows:
        click.echo(f"error: row(s) failed: {', '.join(failed_rows)}", err=True)
    for failure in failures:
        click.echo(f"accuracy gate: {failure}", err=True)
    sys.exit(1 if failures or failed_rows else 0)


def _config(
    bundle,
    choice: DataChoice,
    backends=None,
    batch_sizes=None,
    warmup=20,
    iters=200,
    rounds=5,
    threads=None,
    baseline=None,
):
    from .bench import BenchConfig

    return BenchConfig(
        bundle=bundle,
        data=_optional(choice.data_dir),
        split=choice.split or "test",
        split_file=_optional(choice.split_file),
        split_explicit=choice.split_explicit,
        backends=list(backends) if backends is not None else list(rows.DEFAULT_ROWS),
        batch_sizes=list(batch_sizes) if batch_sizes is not None else [1, 8, 32],
        warmup=warmup,
        iters=iters,
        rounds=rounds,
        threads=threads,
        limit=choice.limit,
        baseline=baseline,
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@_bench_data_options("Split the photos are drawn from.", limit=False)
@_output_options("the tables")
def photos(bundle, data_choice: DataChoice, threads, json_path, markdown_path, quiet):
    """End-to-end predict(path) on real photos upscaled to 1080x1440, 2400x3200, 4000x3000 (JPEG/PNG/RGBA
    PNG/WebP) and predict_batch images/s: fast decode path and parallel decoding vs not."""
    from .photos.cli import run_photo_bench_cli

    split_file = str(data_choice.resolved_split_file())  # --split-file, else the bundle's, else the default
    data, split = _optional(data_choice.data_dir), data_choice.split or "test"
    sys.exit(run_photo_bench_cli(bundle, data, split, split_file, threads, json_path, markdown_path, _log(quiet)))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--cores",
    required=True,
    callback=_int_list,
    metavar="N,N,...",
    help="Core counts to measure (e.g. 1,2,4,8); counts above this machine's CPUs are skipped.",
)
@_bench_data_options("Split the photos are drawn from.", limit=False)
@_output_options("the table")
def cores(bundle, cores, data_choice: DataChoice, threads, json_path, markdown_path, quiet):
    """predict_batch images/s on 200 photos of 2400x3200 in one fresh process per core count, pinned to that
    many CPUs."""
    from .photos.cli import run_photo_bench_cli

    split_file = str(data_choice.resolved_split_file())
    data, split = _optional(data_choice.data_dir), data_choice.split or "test"
    log = _log(quiet)
    sys.exit(run_photo_bench_cli(bundle, data, split, split_file, threads, json_path, markdown_path, log, cores))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("variants", nargs=-1, required=True, metavar="NAME=FILE.onnx[@disable]...")
@_bench_data_options("Split the images are drawn from (with --data: only when named).")
@click.option(
    "--batch-sizes", default="1,8,32", show_default=True, callback=_int_list, help="Throughput is measured at each."
)
@click.option("--iters", default=200, show_default=True, type=click.IntRange(1), help="Timed batch-1 calls.")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1), help="Cold starts per variant.")
@_output_options("the table")
def ab(bundle, variants, data_choice: DataChoice, batch_sizes, iters, rounds, threads, json_path, markdown_path, quiet):
    """Compare the bundle's FP32 graph with VARIANTS of it in one process, taking turns (cold start, batch-1
    p50, throughput at --batch-sizes, output difference), as ratios. @disable opens a file saved already
    optimised with graph optimisation off. Images: --limit of them (default 64)."""
    config = _config(bundle, data_choice, batch_sizes=batch_sizes, iters=iters, threads=threads)
    sys.exit(_run_ab(config, variants, rounds, json_path, markdown_path, quiet, _log(quiet)))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@_bench_data_options("Split to score.")
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An older bundle scored side by side (differences in pp).",
)
@click.option(
    "--sharp",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of sharper copies by id (default: fashion-product-images-sharp beside the data).",
)
@click.option(
    "--other-shops",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder with labels.csv of other shops' photos (default: other-shops-val beside the data).",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "fp16", "int8"]),
    help="The artifact each bundle runs (auto: the runtime's default on this host).",
)
@_output_options("the tables")
def robustness(
    bundle, data_choice: DataChoice, baseline, sharp, other_shops, precision, threads, json_path, markdown_path, quiet
):
    """Accuracy per head on the split, its sharp copies and named shifts (background, framing, aspect, blur,
    JPEG quality) and other shops' photos, side by side with --baseline."""
    sys.exit(
        _run_robustness(
            bundle,
            baseline,
            _optional(data_choice.data_dir),
            data_choice.split or "test",
            _optional(data_choice.split_file),
            sharp,
            other_shops,
            precision,
            data_choice.limit,
            threads,
            json_path,
            markdown_path,
            _log(quiet),
        )
    )


def _run_robustness(
    bundle, baseline, data, split, split_file, sharp, other_shops, precision, limit, threads, json_path, md_path, log
) -> int:
    from fashion.data.paths import resolve_data_dir

    from .robustness import RobustnessConfig, render_markdown, run_robustness

    root = resolve_data_dir(data).parent
    sharp = sharp or _beside(root, "fashion-product-images-sharp")
    other_shops = other_shops or _beside(root, "other-shops-val")
    config = RobustnessConfig(
        bundles=[bundle] + ([baseline] if baseline else []),
        data=data,
        split_file=split_file,
        split=split,
        sharp=sharp,
        other_shops=other_shops,
        precision=precision,
        limit=limit,
        threads=threads,
    )
    result = run_robustness(config, Path(json_path) if json_path else None, Path(md_path) if md_path else None, log=log)
    click.echo(render_markdown(result))
    for path in (json_path, md_path):
        if path:
            click.echo(f"wrote {path}", err=True)
    return 0


def _beside(root: Path, name: str) -> str | None:
    folder = root / name
    return str(folder) if folder.is_dir() else None


def _run_ab(config, ab_variants, ab_rounds, json_path, markdown_path, quiet, log) -> int:
    """``ab``: the bundle's FP32 graph vs variants of it, in this one process (see ab.py)."""
    from fashion.runtime.bundle import load_manifest

    from . import system
    from .ab import compare_graphs, parse_variants, render_markdown
    from .bench import LoadWatch, load_images
    from .report import write_json

    try:
        variants = parse_variants(list(ab_variants))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="VARIANTS") from None
    loaded = load_manifest(config.bundle)
    config = dataclasses.replace(config, limit=config.limit or 64)
    images, source = load_images(loaded, config, progress=not quiet)
    load = LoadWatch(log)
    load.sample("start")
    result = compare_graphs(
        loaded,
        variants,
        np.asarray(images.images[: config.limit], dtype=np.float32),
        config.threads or system.available_cores(),
        config.batch_sizes,
        iters=config.iters,
        rounds=ab_rounds,
        log=log,
    )
    load.sample("end")
    result["data"] = source
    result["machine"]["load_average_samples"] = load.samples
    result["notes"] = [load.warning] if load.warning else []
    click.echo(render_markdown(result))
    if json_path:
        write_json(result, json_path)
    if markdown_path:
        Path(markdown_path).write_text(render_markdown(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
