"""data_options: one spelling (--data, --split-file FILE, --split NAME, --limit) parsed into a DataChoice."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fashion.data.cli_options import DataChoice, data_options, looks_like_file
from fashion.data.errors import DataError
from fashion.data.paths import DEFAULT_SPLIT, REPO_ROOT
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli


def _command(seen: list[DataChoice], **options):
    @run_cli
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.argument("bundle", required=False)
    @data_options(**options)
    def main(bundle, data_choice: DataChoice) -> None:
        seen.append(data_choice)

    return main


def test_parses_into_one_choice(tmp_path, sample_dir) -> None:
    split_file = tmp_path / "s.csv"
    split_file.write_text("id,split\n1,val\n")
    seen: list[DataChoice] = []
    main = _command(seen, split="test", limit=True)
    args = ["--data", str(sample_dir), "--split-file", str(split_file), "--split", "val", "--limit", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert seen[-1] == DataChoice(
        data_dir=Path(sample_dir), split_file=split_file, split="val", limit=5, split_explicit=True
    )
    assert seen[-1].resolved_split_file() == split_file
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0, result.output
    assert seen[-1] == DataChoice(split="test", split_explicit=False)  # the default split is not "explicit"


def test_split_file_default_and_required_data(tmp_path, sample_dir) -> None:
    seen: list[DataChoice] = []
    main = _command(seen, data="required", split_file_default=str(DEFAULT_SPLIT))
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2 and "Missing option '--data'" in result.output
    result = CliRunner().invoke(main, ["--data", str(sample_dir)])
    assert result.exit_code == 0, result.output
    assert seen[-1].split_file == Path(DEFAULT_SPLIT) and seen[-1].split is None and seen[-1].limit is None


@pytest.mark.parametrize("with_name", [True, False])
def test_old_spelling_says_use_split_file(tmp_path, with_name) -> None:
    """--split FILE (the spelling before): exit 2, one Error line naming --split-file FILE."""
    existing = tmp_path / "split"  # an existing file without .csv
    existing.write_text("id,split\n")
    main = _command([], split="test" if with_name else None)
    for value in ("data/splits/not-there.csv", str(existing)):
        result = CliRunner().invoke(main, ["--split", value])
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "use --split-file FILE" in errors[0], result.output
    result = CliRunner().invoke(main, ["--split", "val"])
    assert (result.exit_code == 0) is with_name, result.output
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert ("--split [train|val|test]" in help_text) is with_name and "--split-file" in help_text


def test_old_subset_says_split() -> None:
    main = _command([], split="test", old_subset=True)
    result = CliRunner().invoke(main, ["--subset", "val"])
    assert result.exit_code == 2 and "use --split val" in result.output
    assert "--subset" not in CliRunner().invoke(main, ["--help"]).output


def test_recorded_split_file_of_the_bundle(tmp_path, tiny_bundle) -> None:
    """No --split-file: the bundle's recorded one (Bundle.manifest.recorded_split_file), found beside it."""
    from fashion.runtime.bundle import load_bundle

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    recorded = load_bundle(bundle, verify_hashes=False).manifest.recorded_split_file
    seen: list[DataChoice] = []
    result = CliRunner().invoke(_command(seen, split="test", bundle_arg="bundle"), [str(bundle)])
    assert result.exit_code == 0, result.output
    choice = seen[-1]
    assert choice.split_file is None and choice.recorded_split_file == recorded and choice.bundle_root == bundle
    if recorded:
        resolved = choice.resolved_split_file()
        assert resolved.name == Path(recorded).name
    # A split file the bundle recorded and that lies only in the bundle folder is found there.
    local = DataChoice(recorded_split_file="mine.csv", bundle_root=bundle)
    (bundle / "mine.csv").write_text("id,split\n")
    assert local.resolved_split_file() == bundle / "mine.csv"
    # An explicit file wins; a missing explicit one names --split-file.
    assert DataChoice(split_file=bundle / "mine.csv", recorded_split_file="x.csv").resolved_split_file().is_file()
    with pytest.raises(DataError, match="--split-file"):
        DataChoice(split_file=tmp_path / "gone.csv").resolved_split_file()


def test_unreadable_bundle_is_left_to_the_command(tmp_path) -> None:
    seen: list[DataChoice] = []
    result = CliRunner().invoke(_command(seen, bundle_arg="bundle"), [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen[-1].recorded_split_file is None


def test_looks_like_file(tmp_path) -> None:
    assert looks_like_file("x/split.CSV") and looks_like_file(str(REPO_ROOT / "pyproject.toml"))
    assert not looks_like_file("val") and not looks_like_file(str(tmp_path))
