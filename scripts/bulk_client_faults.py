"""Measure what ``fashion-predict --server`` keeps under faults; writes results/bulk-client-faults.md.

    .venv/bin/python scripts/bulk_client_faults.py [--images 400] [--bundle models/fashion-effnetb0]

Servers are ``tests/runtime/kserve_fake.FakeKServe`` on 127.0.0.1 answering with the bundle's real outputs
(or failing on purpose). Each fault is injected into a run over the same N real photos; the table gives the
exit status, the rows in the output (or ``.partial``) right after the fault, and the rows once the same
command was rerun with ``--resume`` where the run had stopped. "lost" counts inputs without exactly one row.
"""

from __future__ import annotations

import argparse
import csv
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fashion.runtime import Classifier  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.runtime.kserve_fake import FakeKServe  # noqa: E402

PREDICT = [str(Path(sys.executable).with_name("fashion-predict"))]


def rows_of(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["source"] for row in csv.DictReader(handle)]


def run(args: list[str], stop: str | None, partial: Path, after_rows: int) -> tuple[int, str]:
    process = subprocess.Popen(
        PREDICT + args,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    if stop:
        while process.poll() is None and not (partial.is_file() and partial.read_bytes().count(b"\n") > after_rows):
            time.sleep(0.01)
        process.send_signal(getattr(signal, stop))
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


def last_line(stderr: str) -> str:
    """The line that says what happened: an error, a failover, a server down at start, else the last one."""
    lines = [line for line in stderr.splitlines() if line.strip() and "predicting" not in line]
    telling = [line for line in lines if line.startswith(("Error:", "failover:", "server down at start:"))]
    return (telling or lines or [""])[-1][:160]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--bundle", default=str(ROOT / "models" / "fashion-effnetb0"))
    parser.add_argument("--out", default=str(ROOT / "results" / "bulk-client-faults.md"))
    options = parser.parse_args()
    photos = [str(p) for p in sorted((SHARED_DATA / "images").glob("*.jpg"))[: options.images]]
    n = len(photos)
    results = []
    with TemporaryDirectory() as tmp, Classifier.load(options.bundle, threads=1) as clf:
        cases = [
            ("SIGKILL mid-run (kill -9 of the client)", "ok", None, "SIGKILL"),
            ("SIGTERM mid-run", "ok", None, "SIGTERM"),
            ("Ctrl-C (SIGINT) mid-run", "ok", None, "SIGINT"),
            ("a node answering 503 beside a healthy one", "ok", "busy", None),
            ("a node trickling 1 byte / 0.5 s beside a healthy one (--timeout 2)", "ok", "trickle", None),
            ("a node whose fashion_info answers 404 (still loading)", "ok", "info404", None),
            ("a node whose fashion_info answers garbage", "ok", "infogarbage", None),
            ("the only node answers 503 (then --resume on a healthy one)", "busy", None, None),
        ]
        for number, (fault, first_mode, second_mode, stop) in enumerate(cases):
            out = Path(tmp) / f"run{number}.csv"
            partial = out.with_name(out.name + ".partial")
            servers = [FakeKServe(clf, first_mode)]
            if second_mode:
                servers.append(FakeKServe(clf, second_mode, trickle_s=0.5))
            for server in servers:
                server.__enter__()
            args = ["--server", ",".join(s.url for s in servers), *photos, "--format", "csv", "-o", str(out)]
            args += ["--concurrency", "4", "--timeout", "2", "--retries", "2"]
            start = time.monotonic()
            code, stderr = run(args, stop, partial, n // 3)
            seconds = time.monotonic() - start
            right_after = len(rows_of(out if out.exists() else partial))
            for server in servers:
                server.__exit__()
            resumed_code = None
            if not out.exists():
                with FakeKServe(clf) as healthy:
                    again = ["--server", healthy.url] + args[2:] + ["--resume"]
                    resumed_code, _ = run(again, None, partial, 0)
            final = rows_of(out)
            lost = sum(final.count(p) != 1 for p in photos)
            results.append((fault, code, last_line(stderr), right_after, resumed_code, len(final), lost, seconds))
            print(results[-1], flush=True)
    lines = [
        "# Bulk client under faults (`fashion-predict --server`)",
        "",
        f"Generated by `scripts/bulk_client_faults.py --images {n}` on {platform.node()} "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC): {n} photos of the shared dataset, CSV output, "
        "`--concurrency 4 --timeout 2 --retries 2`, servers are `tests/runtime/kserve_fake.py` on 127.0.0.1 "
        f"answering with `{Path(options.bundle).name}`'s real outputs. Signals are sent once a third of the rows "
        "are in `OUTPUT.partial`; a run that stopped is rerun with `--resume` against a healthy server.",
        "",
        "| fault injected | exit | what the client said (last line) | rows right after | exit of --resume | "
        "rows in the output | inputs lost | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fault, code, said, right_after, resumed, final, lost, seconds in results:
        said = said.replace("|", "\\|")
        lines.append(
            f"| {fault} | {code} | {said} | {right_after} | {'' if resumed is None else resumed} | "
            f"{final} of {n} | {lost} | {seconds:.1f} |"
        )
    Path(options.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
