"""``python -m fashion.benchmarks.photos check|vips-check BUNDLE ...``: ``cli.main``, a click group wrapped by
``run_cli`` (errors: ``Error: ...`` and the documented exit code)."""

from .cli import PROG, main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name=PROG)
