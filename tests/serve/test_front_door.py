"""fashion-serve's front door on real servers on loopback (issue 21, item 3, and the SIGTERM drain).

* 100 MB bodies (HTTP and gRPC) are refused at the door, quickly, and the server tree's memory and /dev/shm
  stay where they were (they used to cross tritonserver, a stub and the Python process: +440 MB RSS for three);
* normal requests (KServe v2 binary and JSON, metadata, statistics, gRPC) still work through it;
* during a SIGTERM drain new requests get 503 with Retry-After (they used to get 404 "unknown model", which the
  bulk client does not retry) and ``fashion-predict --server A,B`` moves them to B: every row, local's CSV.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fashion.runtime.remote import MODEL_BYTES, OUTPUT_ERROR, TritonHTTP, build_request, encode_bytes
from fashion.serve.supervisor import descendants, shm_segments
from tests.conftest import ROOT
from tests.serve.conftest import start_server

pytestmark = pytest.mark.timeout(400)

LIMIT = 20 * 1024 * 1024 + 1024 * 1024  # --max-image-bytes (20 MiB) + 1 MiB, the default --max-body-bytes
HUNDRED_MB = os.urandom(1024) * (100 * 1024)


def _tree_rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
        except (OSError, IndexError):
            continue
    return total / 1024


def _shm_mb(pid: int) -> float:
    names = shm_segments([pid, *descendants(pid)])
    return sum((Path("/dev/shm") / n).stat().st_size for n in names if (Path("/dev/shm") / n).exists()) / 2**20


class Peak:
    """Samples the tree's RSS every 20 ms while a block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> Peak:
        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, _tree_rss_mb(self.pid))
                time.sleep(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def sample_paths(sample_dir) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (sample_dir / "images").iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def front(shipped_bundle, tmp_path_factory):
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc (Linux) to measure the server tree")
    server = start_server(shipped_bundle, tmp_path_factory.mktemp("front"), "--max-queue-delay-us", "5000")
    yield server
    server.stop()


def test_oversized_http_bodies_are_refused_at_the_door_and_memory_stays_bounded(front):
    """Three 100 MB KServe v2 requests: 413 each within seconds; tree RSS and /dev/shm do not grow."""
    body, header_length = build_request([("image", "BYTES", [1, 1], encode_bytes([HUNDRED_MB]))], [OUTPUT_ERROR])
    rss_before, shm_before = _tree_rss_mb(front.process.pid), _shm_mb(front.process.pid)
    answers = []
    with Peak(front.process.pid) as peak:
        for _ in range(3):
            start = time.monotonic()
            status, headers, data = _post(
                front.http_port,
                f"/v2/models/{MODEL_BYTES}/infer",
                body,
                {"Inference-Header-Content-Length": str(header_length)},
            )
            answers.append((status, time.monotonic() - start, headers, data))
    rss_after, shm_after = _tree_rss_mb(front.process.pid), _shm_mb(front.process.pid)
    numbers = {
        "rss_before_mb": round(rss_before),
        "rss_peak_mb": round(peak.peak),
        "rss_after_mb": round(rss_after),
        "shm_before_mb": round(shm_before),
        "shm_after_mb": round(shm_after),
        "seconds": [round(a[1], 3) for a in answers],
    }
    print("oversized x3:", json.dumps(numbers))
    for status, seconds, headers, data in answers:
        assert status == 413, (status, data[:300])
        assert headers.get("Content-Type") == "application/json"
        message = json.loads(data)["error"]
        assert f"request body of {len(body)} bytes is over this server's limit of {LIMIT} bytes" in message
        assert "--max-body-bytes" in message
        assert seconds < 10, seconds
    assert peak.peak - rss_before < 64, numbers  # a 100 MB body used to add ~150 MB per request
    assert shm_after - shm_before < 8, numbers
    assert TritonHTTP(front.url).ready()  # and the server goes on


def test_oversized_grpc_message_is_refused_at_the_door(front):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(front.grpc_url)
    photo = grpcclient.InferInput("image", [1, 1], "BYTES")
    photo.set_data_from_numpy(np.array([[HUNDRED_MB]], dtype=object))
    rss_before = _tree_rss_mb(front.process.pid)
    start = time.monotonic()
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL_BYTES, [photo])
    assert time.monotonic() - start < 10
    assert "RESOURCE_EXHAUSTED" in str(refused.value) and f"vs. {LIMIT}" in str(refused.value)
    assert _tree_rss_mb(front.process.pid) - rss_before < 64
    client.close()


def test_normal_requests_pass_the_door(front, sample_paths):
    remote = TritonHTTP(front.url)
    photo = (ROOT / sample_paths[0]).read_bytes()
    out = remote.infer(
        MODEL_BYTES, [("image", "BYTES", [1, 1], encode_bytes([photo]))], [OUTPUT_ERROR, "articleType_label"]
    )
    assert out[OUTPUT_ERROR][0] in (b"", "") and out["articleType_label"][0]
    assert remote.info()["heads"]
    assert remote.statistics(MODEL_BYTES)["model_stats"][0]["name"] == MODEL_BYTES
    # the JSON (non-binary) form of the protocol and metadata go through unchanged too
    status, _, data = _post(
        front.http_port,
        "/v2/models/fashion_info/infer",
        json.dumps({"inputs": [{"name": "query", "datatype": "BYTES", "shape": [1], "data": ["info"]}]}).encode(),
    )
    assert status == 200 and json.loads(json.loads(data)["outputs"][0]["data"][0])["heads"]
    status, _, data = _post(front.http_port, "/v2/models/nope/infer", b"{}")
    assert status in (400, 404) and "error" in json.loads(data)  # Triton's own answer, forwarded
    grpcclient = pytest.importorskip("tritonclient.grpc")
    client = grpcclient.InferenceServerClient(front.grpc_url)
    assert client.is_server_ready() and client.get_model_metadata(MODEL_BYTES).name == MODEL_BYTES
    image = grpcclient.InferInput("image", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[photo]], dtype=object))
    assert client.infer(MODEL_BYTES, [image]).as_numpy(OUTPUT_ERROR)[0, 0] == b""
    client.close()


def test_bulk_client_reports_a_refused_image_as_that_image_s_error(front, sample_paths, tmp_path):
    """A 25 MB file (under the client's 64 MiB cap, over the server's limit): its row says 413, the server stays up."""
    from fashion.runtime.remote import RemoteClassifier

    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(25 * 1024 * 1024))
    with RemoteClassifier(front.url, concurrency=2) as remote:
        refused, fine = remote.predict_files([str(big), str(ROOT / sample_paths[0])])
        assert not remote.pool.down
    assert refused.prediction is None and "HTTP 413" in refused.error and "--max-body-bytes" in refused.error
    assert fine.prediction is not None and not fine.error


def _statuses_until_closed(server, photo: bytes, seconds: float = 60) -> list[tuple[str, int, str]]:
    """Alternate GET /v2/health/ready and a POST infer until the port closes: (what, status, Retry-After)."""
    body, header_length = build_request([("image", "BYTES", [1, 1], encode_bytes([photo]))], [OUTPUT_ERROR])
    seen: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for what in ("ready", "infer"):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
                if what == "ready":
                    connection.request("GET", "/v2/health/ready")
                else:
                    connection.request(
                        "POST",
                        f"/v2/models/{MODEL_BYTES}/infer",
                        body=body,
                        headers={"Inference-Header-Content-Length": str(header_length)},
                    )
                response = connection.getresponse()
                response.read()
                seen.append((what, response.status, response.getheader("Retry-After") or ""))
                connection.close()
            except OSError:
                seen.append((what, 0, ""))
                return seen
        time.sleep(0.01)
    return seen


def test_sigterm_drain_answers_503_and_the_bulk_client_loses_no_row(front, shipped_bundle, tmp_path, sample_paths):
    """fashion-predict --server A,B; SIGTERM to A a quarter into the run: A answers 503 (Retry-After) while it
    drains, the client sends those images to B, every row is written (the local CSV), A exits 0. Then SIGTERM
    to B, idle: every request from then on gets 503 until the port closes, never 404 "unknown model"."""
    second = start_server(shipped_bundle, tmp_path, "--max-queue-delay-us", "5000")
    try:
        local = subprocess.run(
            [sys.executable, "-m", "fashion.runtime.cli", str(shipped_bundle), "data/sample/images", "--format", "csv"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert local.returncode == 0, local.stderr[-2000:]
        stats = TritonHTTP(front.url)
        start = int(stats.statistics(MODEL_BYTES)["model_stats"][0]["inference_count"])
        signalled = threading.Event()

        def terminate_when_busy() -> None:
            deadline = time.monotonic() + 200
            while time.monotonic() < deadline:
                try:
                    done = int(stats.statistics(MODEL_BYTES)["model_stats"][0]["inference_count"]) - start
                except Exception:  # noqa: BLE001 - keep polling
                    done = 0
                if done >= len(sample_paths) // 8:
                    front.process.send_signal(signal.SIGTERM)
                    signalled.set()
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=terminate_when_busy, daemon=True)
        watcher.start()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "fashion.runtime.cli",
                "--server",
                f"{front.url},{second.url}",
                "data/sample/images",
                "--format",
                "csv",
                "--concurrency",
                "8",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
        watcher.join(timeout=5)
        assert signalled.is_set(), "the run finished before SIGTERM"
        code = front.process.wait(timeout=90)
        log = front.log.read_text(errors="replace")
        assert run.returncode == 0, run.stderr[-3000:]
        rows = run.stdout.splitlines()[1:]
        assert sorted(r.split(",")[0] for r in rows) == sorted(sample_paths)  # each input exactly once
        assert run.stdout == local.stdout
        assert f"failover: {front.url} dropped out" in run.stderr, run.stderr[-3000:]
        assert "HTTP 503" in run.stderr, run.stderr[-3000:]
        # never Triton's "unknown model" (a bare "404" would also match a port number such as 40419)
        assert "HTTP 404" not in run.stderr and "unknown model" not in run.stderr, run.stderr[-3000:]
        assert code == 0, log[-3000:]
        assert "front door: " in log, log[-3000:]

        # SIGTERM to the idle second server: 503 from the moment it drains, then the port closes
        photo = (ROOT / sample_paths[0]).read_bytes()
        assert TritonHTTP(second.url).ready()
        second.process.send_signal(signal.SIGTERM)
        seen = _statuses_until_closed(second, photo)
        assert second.process.wait(timeout=90) == 0
        statuses = [s for _, s, _ in seen]
        assert statuses[-1] == 0 and 503 in statuses, seen
        first_503 = statuses.index(503)
        assert set(statuses[first_503:-1]) == {503}, seen  # nothing reaches the unloading models
        assert all(r == "2" for _, s, r in seen if s == 503), seen
        assert {w for w, s, _ in seen if s == 503} == {"ready", "infer"}, seen
    finally:
        second.stop()
