"""fashion-eda: plots and a Markdown report about a Kaggle-layout Fashion Product Images folder."""

from __future__ import annotations

from pathlib import Path

import click

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

from .cli_options import DataChoice, data_options


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@data_options(
    data="required",
    data_help="Folder with styles.csv and images/<id>.jpg (or one folder above it), full or small Kaggle variant.",
    split_file_help="Optional split CSV (id,split) to report split sizes and check duplicate groups against.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the PNG plots and report.md (created if missing).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar while hashing.")
def main(data_choice: DataChoice, out_dir: Path, progress: bool) -> None:
    """Analyse the dataset: class counts, long tail, missing values, imbalance, pixel-identical groups and
    their label conflicts, split sizes. Writes PNGs and report.md into OUT."""
    from fashion.data.eda import run_eda

    data_dir, split_file = data_choice.data_dir, data_choice.split_file
    assert data_dir is not None  # --data is required
    result = run_eda(data_dir, out_dir, split_file=split_file, progress=progress)
    click.echo(result.report.summary())
    click.echo(
        f"{len(result.groups)} pixel-identical groups ({sum(map(len, result.groups))} ids), "
        f"{len(result.conflicts['articleType'])} with conflicting articleType"
    )
    if result.crossing_groups is not None:
        click.echo(f"groups crossing the split: {len(result.crossing_groups)}")
    click.echo(f"wrote {len(result.files)} files to {out_dir}")


if __name__ == "__main__":
    main()
