"""fashion.serve.doorcheck goes through run_cli: one ``Error:`` line and the documented exit code."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fashion.runtime.errors import EXIT_SERVER_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE
from fashion.serve import doorcheck
from tests.conftest import ROOT


def test_a_folder_without_photos_is_exit_2_before_any_server_starts(tmp_path, monkeypatch):
    def no_server(*args, **kwargs):
        raise AssertionError("no server may start for unusable inputs")

    monkeypatch.setattr(doorcheck.subprocess, "Popen", no_server)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not a photo")
    result = CliRunner().invoke(doorcheck.main, [str(tmp_path / "bundle"), str(tmp_path / "images")])
    assert result.exit_code == EXIT_USAGE
    assert "Error: " in result.output and "no .jpg or .png photos to send" in result.output
    assert "Traceback" not in result.output


def test_a_server_that_never_gets_ready_keeps_its_own_code_or_is_exit_5():
    assert doorcheck.not_ready(EXIT_USAGE, "bad bundle").exit_code == EXIT_USAGE
    assert doorcheck.not_ready(EXIT_UNAVAILABLE, "no pytriton").exit_code == EXIT_UNAVAILABLE
    crashed = doorcheck.not_ready(-9, "killed")
    assert crashed.exit_code == EXIT_SERVER_FAILED and "code -9" in str(crashed) and "killed" in str(crashed)
    assert doorcheck.not_ready(None, "slow").exit_code == EXIT_SERVER_FAILED


def test_a_bundle_fashion_serve_refuses_is_one_error_line_with_its_code(tmp_path):
    """The real module: fashion-serve exits 2 on a folder without bundle.json, doorcheck says so and exits 2."""
    (tmp_path / "bundle").mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "fashion.serve.doorcheck", str(tmp_path / "bundle"), "data/sample/images"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == EXIT_USAGE, run.stderr
    assert run.stderr.startswith("Error: fashion-serve exited with code 2 before it was ready")
    assert "bundle.json" in run.stderr and "Traceback" not in run.stderr
