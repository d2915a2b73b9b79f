"""One resolver for data / split / weights: what it looks for, and errors that say how to pass it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fashion.data import paths
from fashion.data.errors import DataError, DataLayoutError
from fashion.runtime.errors import EXIT_USAGE, FashionError


def _kaggle(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "styles.csv").write_text("id,gender\n")
    return folder


def test_constants_live_in_one_place():
    from fashion.data import labels, split

    assert paths.MISSING == labels.MISSING == -1
    assert split.DEFAULT_SEED == paths.SPLIT_SEED
    assert (paths.REPO_ROOT / paths.DEFAULT_SPLIT).is_file()


def test_explicit_data_dir_must_be_kaggle_layout(tmp_path):
    assert paths.resolve_data_dir(_kaggle(tmp_path / "ok")) == tmp_path / "ok"
    nested = tmp_path / "zip"
    _kaggle(nested / "myntradataset")
    assert paths.resolve_data_dir(nested) == nested  # one nesting level is accepted, like find_layout
    with pytest.raises(DataLayoutError, match="Kaggle layout") as info:
        paths.resolve_data_dir(tmp_path / "nowhere")
    assert "no such folder" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and info.value.exit_code == EXIT_USAGE


def test_env_var_then_error_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(_kaggle(tmp_path / "env")))
    assert paths.resolve_data_dir() == tmp_path / "env"
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataError) as info:
        paths.resolve_data_dir(option="--data")
    message = str(info.value)
    assert "pass --data DIR" in message and f"${paths.DATA_ENV}" in message and str(tmp_path / "missing") in message


def test_split_file_explicit_recorded_default(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="--split-file .*no such file"):
        paths.resolve_split_file(tmp_path / "nope.csv", option="--split-file")
    recorded = tmp_path / "bundle" / "split.csv"
    recorded.parent.mkdir()
    recorded.write_text("id,split\n")
    assert paths.resolve_split_file(None, "split.csv", bases=[tmp_path / "bundle"]) == recorded
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_split_file() == paths.REPO_ROOT / paths.DEFAULT_SPLIT  # the committed split
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataError, match="pass --split-file FILE") as info:
        paths.resolve_split_file(None, "gone.csv")
    assert "gone.csv" in str(info.value)


def test_weights_explicit_env_fallback(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="--weights .*no such file"):
        paths.resolve_weights(tmp_path / "none.h5")
    weights = tmp_path / paths.WEIGHTS_FILE
    weights.write_bytes(b"\0")
    monkeypatch.setenv(paths.WEIGHTS_ENV, str(weights))
    assert paths.resolve_weights() == str(weights)
    monkeypatch.setenv(paths.WEIGHTS_ENV, str(tmp_path / "missing.h5"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")
    assert paths.resolve_weights() == "imagenet"
    with pytest.raises(DataError, match=paths.WEIGHTS_ENV):
        paths.resolve_weights(download=False)


def test_resolver_error_through_the_cli_wrapper_is_one_line_and_exit_2(tmp_path):
    from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli

    @run_cli
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.option("--data")
    def main(data):
        paths.resolve_data_dir(data)

    result = CliRunner().invoke(main, ["--data", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "Kaggle layout" in result.output and "Traceback" not in result.output
    assert issubclass(DataError, FashionError)


def test_find_layout_still_reachable_from_dataset(tmp_path):
    from fashion.data.dataset import find_layout

    _kaggle(tmp_path / "copy" / "inner")
    styles, images = find_layout(tmp_path / "copy")
    assert styles == tmp_path / "copy" / "inner" / "styles.csv" and images.is_dir()
