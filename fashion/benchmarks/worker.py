"""Entry point of a benchmark worker process: ``python -m fashion.benchmarks.worker JOB.json RESULT.json``.

Only numpy and the light project modules are imported before the row opens, so the row's cold
start counts its framework's import. Errors go through ``run_cli`` like every entry point: one
``Error: ...`` line on stderr (the parent reports it as the row's reason) and the error's exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fashion.runtime.cli_support import CONTEXT_SETTINGS, run_cli


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("job_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("result_path", type=click.Path(dir_okay=False, path_type=Path))
def main(job_path: Path, result_path: Path) -> None:
    """Run the benchmark row described by JOB_PATH; write its measurements to RESULT_PATH."""
    from .measure import run_worker

    result = run_worker(json.loads(job_path.read_text()))
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
