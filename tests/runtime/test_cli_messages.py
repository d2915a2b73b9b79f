"""Issue 23, items 7 and 11: option errors are one ``Error:`` line and a help hint in every CLI (run_cli), and an
unknown or unavailable ONNX Runtime provider names the providers this onnxruntime really offers."""

from __future__ import annotations

import click
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from fashion.runtime import Classifier
from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli
from fashion.runtime.errors import BackendUnavailableError, UnknownBackendError


def _cli():
    @run_cli
    @click.group(context_settings=CONTEXT_SETTINGS)
    def cli() -> None:
        """Group."""

    @cli.command()
    @click.argument("bundle")
    @click.option("--n", type=int, default=1)
    def sub(bundle: str, n: int) -> None:
        click.echo(f"ok {bundle} {n}")

    return cli


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["sub", "b", "--n", "x"], "Error: Invalid value for '--n': 'x' is not a valid integer."),
        (["sub", "b", "--nn", "1"], "Error: No such option '--nn'."),
        (["sub"], "Error: Missing argument 'BUNDLE'."),
        (["--bad"], "Error: No such option '--bad'"),
        (["nope"], "Error: No such command 'nope'."),
    ],
)
def test_option_errors_print_one_error_line_and_a_hint(args, error):
    result = CliRunner().invoke(_cli(), args, prog_name="tool")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(error), lines
    assert lines[1].startswith("Try 'tool") and lines[1].endswith(" --help' for help.")
    assert "Usage:" not in result.output
    assert CliRunner().invoke(_cli(), ["sub", "b", "--n", "3"]).output == "ok b 3\n"


def test_every_fashion_command_shares_it():
    from fashion.benchmarks.cli import main

    result = CliRunner().invoke(main, ["--iters", "0", "."], prog_name="fashion-bench")
    assert result.exit_code == 2
    assert result.output.splitlines() == [  # the rows benchmark is fashion-bench's default subcommand
        "Error: Invalid value for '--iters': 0 is not in the range x>=1.",
        "Try 'fashion-bench rows --help' for help.",
    ]


def _available() -> str:
    return ", ".join(f"{p.removesuffix('ExecutionProvider').lower()} ({p})" for p in ort.get_available_providers())


def test_a_known_provider_missing_here_names_what_is_available(tiny_bundle):
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("OpenVINO is available here")
    with pytest.raises(BackendUnavailableError) as error:
        Classifier.load(tiny_bundle, providers=["openvino"])
    message = str(error.value)
    assert f"offers {_available()}, not OpenVINOExecutionProvider" in message
    assert "fashion-edge[gpu]" not in message and "CUDA" not in message
    with Classifier.load(tiny_bundle, providers=["openvino"], allow_fallback=True) as clf:
        assert clf.info["providers"] == ["CPUExecutionProvider"]


def test_an_unknown_provider_is_a_usage_error_naming_what_is_available(tiny_bundle):
    with pytest.raises(UnknownBackendError) as error:
        Classifier.load(tiny_bundle, providers=["openvnio"])
    assert "unknown ONNX Runtime provider(s) openvnio" in str(error.value)
    assert _available() in str(error.value) and error.value.exit_code == 2


def test_the_predict_command_says_it_in_one_line(tiny_bundle, sample_dir):
    from fashion.runtime.cli import main

    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("OpenVINO is available here")
    photo = sorted((sample_dir / "images").glob("*.jpg"))[0]
    result = CliRunner().invoke(main, [str(tiny_bundle), str(photo), "--provider", "openvino"])
    assert result.exit_code == 4
    assert result.output.count("Error:") == 1 and "cpu (CPUExecutionProvider)" in result.output
    assert "--allow-fallback" in result.output and "CUDA" not in result.output
