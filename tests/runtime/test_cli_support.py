"""The shared CLI contract: -h works, every error becomes ``Error: ...`` plus its documented exit code."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from fashion.runtime.cli_support import CONTEXT_SETTINGS, DEBUG_ENV, run_cli
from fashion.runtime.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    BackendUnavailableError,
    BundleError,
    FashionError,
    Interrupted,
    InvalidImageError,
    PartialFailure,
    exit_code_for,
)


class Refused(FashionError):
    exit_code = EXIT_REFUSED


def _command(exc: BaseException | None):
    @run_cli
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.option("--n", type=int, default=1)
    def main(n: int) -> None:
        """Raise the configured error."""
        if exc is not None:
            raise exc
        click.echo(f"ok {n}")

    return main


def test_exit_code_table_is_documented() -> None:
    assert (EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_INTERRUPTED) == (0, 1, 2, 3, 4, 130)
    assert set(EXIT_CODES) == {0, 1, 2, 3, 4, 5, 130}  # 5: EXIT_SERVER_FAILED (fashion-serve)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (FashionError, 2),
        (BundleError, 2),
        (InvalidImageError, 2),
        (BackendUnavailableError, 4),
        (PartialFailure, 1),
        (Interrupted, 130),
        (Refused, 3),
    ],
)
def test_each_error_class_carries_its_exit_code(cls: type[FashionError], code: int) -> None:
    assert cls.exit_code == code
    assert exit_code_for(cls("x")) == code


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (BundleError("models/x/bundle.json: missing"), 2, "Error: models/x/bundle.json: missing"),
        (BackendUnavailableError("tensorrt is not installed: pip install 'fashion-edge[gpu]'"), 4, "Error: tensorrt"),
        (Refused("int8 refused: drop 1.2 pp > 1.0 pp"), 3, "Error: int8 refused"),
        (PartialFailure("2 of 5 inputs failed"), 1, "Error: 2 of 5 inputs failed"),
        (
            FileNotFoundError(2, "No such file or directory", "out/x.csv"),
            2,
            "Error: out/x.csv: No such file or directory",
        ),
        (KeyboardInterrupt(), 130, "Error: interrupted"),
        (Interrupted("interrupted; 64 rows kept in out.csv"), 130, "kept in out.csv"),
    ],
)
def test_errors_become_one_line_and_exit_code(
    exc: BaseException, code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    result = CliRunner().invoke(_command(exc), [])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.count("Error:") == 1


def test_unexpected_error_is_one_line_with_debug_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    result = CliRunner().invoke(_command(KeyError("height")), [])
    assert result.exit_code == 1
    assert "Error: KeyError: 'height'" in result.output
    assert f"{DEBUG_ENV}=1" in result.output
    assert "Traceback" not in result.output


def test_debug_env_lets_the_traceback_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    result = CliRunner().invoke(_command(KeyError("height")), [])
    assert isinstance(result.exception, KeyError)


def test_click_usage_errors_and_help_are_left_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    command = _command(None)
    assert CliRunner().invoke(command, ["-h"]).exit_code == 0
    assert "Raise the configured error" in CliRunner().invoke(command, ["--help"]).output
    bad = CliRunner().invoke(command, ["--n", "x"])
    assert bad.exit_code == 2 and "Invalid value" in bad.output
    assert CliRunner().invoke(command, ["--n", "3"]).output == "ok 3\n"


def test_group_subcommands_are_covered() -> None:
    @run_cli
    @click.group(context_settings=CONTEXT_SETTINGS)
    def cli() -> None:
        """Group."""

    @cli.command()
    def sub() -> None:
        raise BundleError("bad bundle")

    result = CliRunner().invoke(cli, ["sub"])
    assert result.exit_code == 2 and "Error: bad bundle" in result.output


def test_plain_function_wrapper() -> None:
    def work(x: int) -> int:
        if x < 0:
            raise BackendUnavailableError("no GPU")
        return x * 2

    wrapped = run_cli(work)
    assert wrapped(2) == 4
    with pytest.raises(SystemExit) as info:
        wrapped(-1)
    assert info.value.code == 4


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True])
def test_top_k_must_be_a_positive_integer(top_k) -> None:
    import numpy as np

    from fashion.runtime.results import decode_head

    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        decode_head(np.array([0.2, 0.8]), ["a", "b"], top_k)
    assert decode_head(np.array([0.2, 0.8]), ["a", "b"], 1).top_k == [("b", 0.8)]


def test_model_options_parse_into_load_options() -> None:
    """model_options hands the command one LoadOptions; load_kwargs is what Classifier.load takes."""
    from fashion.runtime.cli_support import LoadOptions, model_options

    seen: list[LoadOptions] = []

    @run_cli
    @click.command(context_settings=CONTEXT_SETTINGS)
    @model_options
    def plain(load_options: LoadOptions) -> None:
        seen.append(load_options)

    @run_cli
    @click.command(context_settings=CONTEXT_SETTINGS)
    @model_options(exact_decode=True)
    def exact(load_options: LoadOptions) -> None:
        seen.append(load_options)

    runner = CliRunner()
    assert runner.invoke(plain, []).exit_code == 0
    assert seen[-1] == LoadOptions()
    assert seen[-1].load_kwargs() == {
        "backend": "auto",
        "precision": "auto",
        "providers": None,
        "threads": None,
        "allow_fallback": False,
    }
    args = ["--backend", "onnxruntime", "--precision", "int8", "--provider", "cuda", "--provider", "cpu"]
    result = runner.invoke(plain, [*args, "--threads", "2", "--allow-fallback"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == LoadOptions("onnxruntime", "int8", ("cuda", "cpu"), 2, True)
    assert seen[-1].load_kwargs()["providers"] == ["cuda", "cpu"]
    assert "--exact-decode" not in runner.invoke(plain, ["--help"]).output
    assert runner.invoke(plain, ["--exact-decode"]).exit_code == 2
    assert runner.invoke(exact, ["--exact-decode"]).exit_code == 0
    assert seen[-1].fast_decode is False and seen[-1].load_kwargs()["fast_decode"] is False
    assert runner.invoke(exact, []).exit_code == 0 and "fast_decode" not in seen[-1].load_kwargs()
    assert runner.invoke(plain, ["--precision", "int4"]).exit_code == 2


def test_load_classifier_takes_load_options(tiny_bundle) -> None:
    from fashion.runtime.cli_support import LoadOptions, load_classifier

    classifier = load_classifier(tiny_bundle, LoadOptions(precision="fp32", threads=1))
    try:
        assert classifier.entry.precision == "fp32" and classifier.info["precision"] == classifier.entry.precision
    finally:
        classifier.close()
    with pytest.raises(BundleError):
        load_classifier(tiny_bundle, LoadOptions(precision="fp32"), threads="many")
