"""``fashion-predict --server`` against faulty servers on loopback: every input keeps its row.

The servers are ``kserve_fake.FakeKServe``: real KServe v2 HTTP on 127.0.0.1 answering with the tiny bundle's
real outputs, or failing the way production servers do (503 from a load balancer, fashion_info still loading,
garbage, a trickling answer, TLS with a bearer token, a gRPC port).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion import HEADS
from fashion.runtime import BundleError, Classifier
from fashion.runtime.cli import main
from fashion.runtime.remote import RemoteClassifier, ServerUnavailableError
from tests.runtime.kserve_fake import FakeKServe, self_signed_certificate


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    with Classifier.load(tiny_bundle, threads=1) as classifier:
        yield classifier


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[str]:
    return [str(p) for p in sorted((sample_dir / "images").glob("*.jpg"))[:20]]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def command() -> list[str]:
    script = Path(sys.executable).with_name("fashion-predict")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fashion.runtime.cli"]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_remote_rows_equal_local_rows_through_the_one_streaming_path(clf, tiny_bundle, photos, tmp_path):
    """Same CSV from --server and in-process, bad files included: one Decoder, one writer."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in photos[:5]:
        (folder / Path(path).name).write_bytes(Path(path).read_bytes())
    (folder / "truncated.jpg").write_bytes(Path(photos[0]).read_bytes()[:300])
    (folder / "notes.txt").write_text("not a photo")
    with FakeKServe(clf) as fake:
        remote = invoke("--server", fake.url, folder, "--format", "csv", "--consistent", "--top-k", "2")
    local = invoke(tiny_bundle, folder, "--format", "csv", "--consistent", "--top-k", "2")
    assert remote.exit_code == local.exit_code == 1, remote.stderr
    assert remote.stdout == local.stdout
    assert len(csv_rows(remote.stdout)) == 7


def test_unhealthy_servers_are_marked_down_and_the_others_used(clf, photos):
    """fashion_info answering 404, 500 or garbage (a server still loading) used to end the run with exit 2 or a
    traceback and 0 rows; now those servers start down, are named, and the healthy one does the work."""
    with (
        FakeKServe(clf, "info404") as a,
        FakeKServe(clf, "info500") as b,
        FakeKServe(clf, "infogarbage") as c,
        FakeKServe(clf) as good,
    ):
        result = invoke("--server", ",".join(s.url for s in (a, b, c, good)), *photos, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = csv_rows(result.stdout)
    assert [r["source"] for r in rows] == photos and all(r["articleType"] for r in rows)
    for bad in (a, b, c):
        assert f"server down at start: {bad.url}" in result.stderr
    assert "HTTP 404" in result.stderr and "HTTP 500" in result.stderr and "not a fashion-serve" in result.stderr
    assert "Traceback" not in result.stderr and good.inferences == len(photos)


def test_a_503_node_beside_a_healthy_one_loses_no_row(clf, photos):
    """A load balancer in front of a dead backend answers 503: retried on the healthy server (was 10 of 20 lost)."""
    with FakeKServe(clf, "busy") as busy, FakeKServe(clf) as good:
        result = invoke("--server", f"{busy.url},{good.url}", *photos, "--format", "csv", "--concurrency", "4")
    assert result.exit_code == 0, result.stderr
    rows = csv_rows(result.stdout)
    assert len(rows) == len(photos) and all(r["articleType"] and not r["error"] for r in rows)
    assert f"failover: {busy.url} dropped out ({busy.url}: HTTP 503" in result.stderr and busy.inferences >= 1


def test_a_trickling_server_is_cut_at_the_total_deadline(clf, photos):
    """One byte per second kept every socket read under the old per-read timeout: the run hung with 0 rows.
    --timeout is now a deadline for the whole request; the request then goes to the other server."""
    with FakeKServe(clf, "trickle", trickle_s=0.5) as slow, FakeKServe(clf) as good:
        start = time.monotonic()
        result = invoke("--server", f"{slow.url},{good.url}", *photos[:8], "--format", "csv", "--timeout", "2")
        took = time.monotonic() - start
    assert result.exit_code == 0, result.stderr
    assert len(csv_rows(result.stdout)) == 8 and took < 15
    assert f"failover: {slow.url} dropped out ({slow.url}: no complete answer within 2 s" in result.stderr


def test_the_last_server_answering_503_stops_the_run_keeping_rows_for_resume(clf, photos, tmp_path):
    out = tmp_path / "tags.csv"
    with FakeKServe(clf, "busy") as busy:
        result = invoke("--server", busy.url, *photos, "--format", "csv", "-o", out, "--retries", "1")
    assert result.exit_code == 4 and "no server left" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "tags.csv.partial").is_file() and not out.exists()
    with FakeKServe(clf) as good:
        again = invoke("--server", good.url, *photos, "--format", "csv", "-o", out, "--resume")
    assert again.exit_code == 0, again.stderr
    assert [r["source"] for r in csv_rows(out.read_text())] == photos


def test_https_with_a_bearer_token(clf, photos, tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this private CA, as documented
    with FakeKServe(clf, token="s3cret", certificate=(cert, key)) as fake:
        assert fake.url.startswith("https://")
        ok = invoke("--server", fake.url, *photos[:3], "--format", "jsonl", "--header", "Authorization: Bearer s3cret")
        refused = invoke("--server", fake.url, photos[0])
    assert ok.exit_code == 0, ok.stderr
    assert [json.loads(line)["source"] for line in ok.stdout.splitlines()] == photos[:3]
    assert refused.exit_code == 4 and "HTTP 401" in refused.stderr
    bad = invoke("--server", "http://127.0.0.1:1", photos[0], "--header", "no colon here")
    assert bad.exit_code == 2 and "'Name: value'" in bad.stderr


def test_a_grpc_port_is_named_as_such(photos):
    grpc = pytest.importorskip("grpc")
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = invoke("--server", f"http://127.0.0.1:{port}", photos[0], "--timeout", "5")
    finally:
        server.stop(0)
    assert result.exit_code == 4, result.stderr
    assert "not an HTTP KServe endpoint" in result.stderr and "gRPC" in result.stderr
    assert "BadStatusLine" not in result.stderr and "\\x00" not in result.stderr


def test_remote_consistent_without_a_hierarchy_raises_like_local(clf, tiny_bundle, photos, tmp_path):
    """The remote decoder used to ignore --consistent silently when the model had no hierarchy."""
    import shutil

    from fashion.runtime.bundle import record_file

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    (bundle / "hierarchy.json").write_text("[]")
    record_file(bundle, "hierarchy.json")
    with Classifier.load(bundle) as local, pytest.raises(BundleError, match="consistent decoding needs"):
        local.predict_batch(photos[:1], consistent=True)
    with FakeKServe(clf, hierarchy=False) as fake, RemoteClassifier(fake.url) as remote:
        with pytest.raises(BundleError, match="consistent decoding needs"):
            remote.predict_batch(photos[:1], consistent=True)
        assert remote.predict_batch(photos[:1])[0].ok
        info = remote.info
    assert {"backend", "providers", "precision", "artifact", "input_size"} <= set(info) and info["servers"] == [
        fake.url
    ]
    assert set(clf.info) >= {"backend", "providers", "precision", "artifact", "input_size"}


def test_no_usable_server_is_unavailable_with_every_reason(clf):
    with FakeKServe(clf, "info500") as fake:
        with pytest.raises(ServerUnavailableError, match=r"no usable server: .*HTTP 500") as info:
            RemoteClassifier(fake.url)
    assert info.value.exit_code == 4


# -- signals: rows written so far survive, --resume finishes the run ---------------------------------------


def _wait_for_rows(partial: Path, process: subprocess.Popen, rows: int) -> None:
    deadline = time.time() + 120
    while not (partial.is_file() and partial.read_bytes().count(b"\n") > rows):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.time() < deadline, "no rows within 120 s"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_stopped_server_run_keeps_its_rows_and_resume_completes_it(clf, photos, tmp_path, how, fmt):
    """Ctrl-C used to lose every finished row of a --server run (nothing was written until the end)."""
    inputs = [p for p in photos for _ in range(8)][:120]  # 120 inputs, each answered after 20 ms
    out = tmp_path / f"tags.{fmt}"
    partial = tmp_path / f"tags.{fmt}.partial"
    with FakeKServe(clf, "slow", delay_s=0.02) as fake:
        args = [
            "--server",
            fake.url,
            *inputs,
            "--format",
            fmt,
            "-o",
            str(out),
            "--batch-size",
            "2",
            "--concurrency",
            "2",
        ]
        process = subprocess.Popen(
            command() + args,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        _wait_for_rows(partial, process, 16)
        process.send_signal(getattr(signal, how))
        _, stderr = process.communicate(timeout=60)
        kept = partial.read_text().splitlines()
        if how == "SIGKILL":
            assert process.returncode == -signal.SIGKILL
        else:
            assert process.returncode == 130, stderr
            assert ("terminated (SIGTERM)" if how == "SIGTERM" else "interrupted after") in stderr
            assert str(partial) in stderr and "--resume" in stderr
        assert not out.exists() and len(kept) >= 16
        resumed = subprocess.run(command() + args + ["--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming:" in resumed.stderr
    if fmt == "csv":
        sources = [row["source"] for row in csv_rows(out.read_text())]
    else:
        sources = [json.loads(line)["source"] for line in out.read_text().splitlines()]
    assert sorted(sources) == sorted(inputs) and len(sources) == len(inputs)  # every input once, none lost


def test_resume_drops_a_row_cut_short_by_sigkill(tiny_bundle, photos, tmp_path):
    out = tmp_path / "tags.csv"
    done = invoke(tiny_bundle, *photos[:4], "--format", "csv", "-o", out)
    assert done.exit_code == 0
    text = out.read_text()
    os.remove(out)
    (tmp_path / "tags.csv.partial").write_text(text[: text.rindex(photos[3]) + 10])  # the 4th row cut mid-way
    again = invoke(tiny_bundle, *photos[:4], "--format", "csv", "-o", out, "--resume")
    assert again.exit_code == 0, again.stderr
    assert out.read_text() == text and "3 rows kept" in again.stderr
    assert set(HEADS) <= set(csv_rows(text)[0])
