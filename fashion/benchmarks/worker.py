"""Entry point of a benchmark worker process: ``python -m fashion.benchmarks.worker JOB.json RESULT.json``.

Only numpy and the light project modules are imported before the row opens, so the row's cold
start counts its framework's import.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    job_path, result_path = argv
    from .measure import run_worker

    result = run_worker(json.loads(Path(job_path).read_text()))
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
