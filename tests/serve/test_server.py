"""fashion-serve on a real Triton server (loopback, free ports) against the in-process runtime.

Order matters: the last test kills the second server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fashion.runtime import Classifier
from fashion.runtime.cli import main as predict_main
from fashion.runtime.remote import (
    MODEL_BYTES,
    MODEL_TENSOR,
    OUTPUT_ERROR,
    RemoteClassifier,
    TritonHTTP,
    confidence_output,
    label_output,
)
from fashion.serve.supervisor import descendants, stub_name
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(300)
REQUEST_IMAGES = 16  # images per request in the equality tests (the server also splits what Triton batched)


@pytest.fixture(scope="module")
def sample_paths(sample_dir) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (sample_dir / "images").iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def local(shipped_bundle, sample_paths):
    """In-process reference: probabilities of every sample image and the CSV ``fashion-predict`` writes."""
    from click.testing import CliRunner

    with Classifier.load(shipped_bundle) as clf:
        probs: dict[str, list[np.ndarray]] = {head: [] for head in clf.heads}
        for first in range(0, len(sample_paths), 32):
            batch = np.stack([clf.preprocess(str(ROOT / p)) for p in sample_paths[first : first + 32]])
            for head, value in clf.infer(batch.astype(np.float32)).items():
                if head in probs:
                    probs[head].append(value)
        heads = list(clf.heads)
        labels = {h: clf.bundle.labels[h] for h in heads}
    run = CliRunner().invoke(
        predict_main,
        [str(shipped_bundle), str(ROOT / "data" / "sample" / "images"), "--format", "csv"],
        catch_exceptions=False,
    )
    assert run.exit_code == 0, run.output
    csv_text = run.stdout.replace(f"{ROOT}/", "")
    return {
        "heads": heads,
        "labels": labels,
        "probs": {h: np.concatenate(v) for h, v in probs.items()},
        "csv": csv_text,
    }


def _images(paths: list[str]) -> np.ndarray:
    return np.array([[(ROOT / p).read_bytes()] for p in paths], dtype=object)


def _check_outputs(results: dict[str, np.ndarray], local, rows: slice) -> None:
    assert all(e == b"" for e in results[OUTPUT_ERROR].reshape(-1))
    for head in local["heads"]:
        expected = local["probs"][head][rows]
        np.testing.assert_allclose(results[head], expected, atol=1e-5, rtol=0)
        top = expected.argmax(axis=1)
        assert [v.decode() for v in results[label_output(head)].reshape(-1)] == [local["labels"][head][i] for i in top]
        np.testing.assert_allclose(
            results[confidence_output(head)].reshape(-1), expected[np.arange(len(top)), top], atol=1e-5, rtol=0
        )


def _outputs_of(local) -> list[str]:
    return [OUTPUT_ERROR] + [name for h in local["heads"] for name in (h, label_output(h), confidence_output(h))]


def test_http_predictions_equal_in_process(server, local, sample_paths):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    assert client.is_server_ready() and client.is_model_ready(MODEL_BYTES)
    for first in range(0, len(sample_paths), REQUEST_IMAGES):
        chunk = sample_paths[first : first + REQUEST_IMAGES]
        tensor = httpclient.InferInput("image", [len(chunk), 1], "BYTES")
        tensor.set_data_from_numpy(_images(chunk), binary_data=True)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in _outputs_of(local)]
        result = client.infer(MODEL_BYTES, [tensor], outputs=outputs)
        _check_outputs(
            {name: result.as_numpy(name) for name in _outputs_of(local)}, local, slice(first, first + len(chunk))
        )


def test_grpc_predictions_equal_in_process(server, local, sample_paths):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_ready()
    for first in range(0, len(sample_paths), REQUEST_IMAGES):
        chunk = sample_paths[first : first + REQUEST_IMAGES]
        tensor = grpcclient.InferInput("image", [len(chunk), 1], "BYTES")
        tensor.set_data_from_numpy(_images(chunk))
        result = client.infer(
            MODEL_BYTES, [tensor], outputs=[grpcclient.InferRequestedOutput(n) for n in _outputs_of(local)]
        )
        _check_outputs(
            {name: result.as_numpy(name) for name in _outputs_of(local)}, local, slice(first, first + len(chunk))
        )


def test_tensor_model_takes_uint8_and_float32(server, local, shipped_bundle, sample_paths):
    import tritonclient.grpc as grpcclient

    with Classifier.load(shipped_bundle) as clf:
        batch = np.stack([clf.preprocess(str(ROOT / p)) for p in sample_paths[:4]])
    client = grpcclient.InferenceServerClient(server.grpc_url)
    head = local["heads"][0]
    for name, array in (("image_uint8", batch), ("image", batch.astype(np.float32))):
        tensor = grpcclient.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
        tensor.set_data_from_numpy(array)
        result = client.infer(MODEL_TENSOR, [tensor], outputs=[grpcclient.InferRequestedOutput(head)])
        np.testing.assert_allclose(result.as_numpy(head), local["probs"][head][:4], atol=1e-5, rtol=0)


def test_concurrent_clients_get_batched(server, sample_paths):
    """16 clients x 25 requests of one image each: no errors, and Triton ran batches larger than one."""
    http = TritonHTTP(server.url)
    before = http.statistics(MODEL_BYTES)["model_stats"][0]
    images = [(ROOT / p).read_bytes() for p in sample_paths[:25]]
    remote = RemoteClassifier(server.url, concurrency=1)

    def client(_: int) -> list[str]:
        return [remote.infer_bytes(data)[OUTPUT_ERROR][0].decode() for data in images]

    with ThreadPoolExecutor(16) as pool:
        errors = [e for batch in pool.map(client, range(16)) for e in batch]
    assert len(errors) == 400 and errors == [""] * 400
    after = http.statistics(MODEL_BYTES)["model_stats"][0]
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert inferences == 400
    assert executions < inferences, f"no batch larger than 1 formed: {inferences} inferences in {executions} runs"


def test_corrupt_image_in_a_burst_fails_alone(server, sample_paths):
    good = [(ROOT / p).read_bytes() for p in sample_paths[:31]]
    corrupt = good[0][: len(good[0]) // 3]  # a truncated JPEG
    burst = good[:15] + [corrupt] + good[15:]
    remote = RemoteClassifier(server.url, concurrency=32)
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(remote.infer_bytes, burst))
    errors = [a[OUTPUT_ERROR][0].decode() for a in answers]
    assert errors[15].startswith(f"<{len(corrupt)} bytes>: corrupt or truncated image")
    assert errors[:15] + errors[16:] == [""] * 31
    assert all(answers[i]["gender"].sum() > 0.99 for i in range(32) if i != 15)
    assert remote.infer_bytes(good[0])[OUTPUT_ERROR][0] == b""  # still serving


def _listening() -> dict[int, str]:
    """{port: bound address} of listening TCP sockets, from /proc/net/tcp and tcp6 (Linux)."""
    import ipaddress

    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].is_file():
        pytest.skip("no /proc/net/tcp to read bound addresses from")
    bound = {}
    for table in (t for t in tables if t.is_file()):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] != "0A":  # LISTEN
                continue
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            ip = ipaddress.ip_address(raw)
            mapped = getattr(ip, "ipv4_mapped", None)
            bound[int(port, 16)] = str(mapped or ip)
    return bound


def test_load_generator_reports_batches(server, sample_paths):
    from fashion.serve.loadgen import run_server

    photos = [(ROOT / p).read_bytes() for p in sample_paths[:8]]
    row = run_server(server.url, server.grpc_url, 4, 2, photos, 2.0)
    assert row.images > 0 and row.errors == 0
    assert row.inference_count is not None and 0 < row.execution_count <= row.inference_count


def test_server_binds_loopback_only(server):
    listening = _listening()
    for port in (server.http_port, server.grpc_port, server.metrics_port):
        assert listening.get(port) == "127.0.0.1", f"port {port} bound to {listening.get(port)}"


def _predict_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fashion.runtime.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def test_two_servers_share_the_load_and_match_local(server, second_server, local):
    run = _predict_cli(
        "--server", f"{server.url},{second_server.url}", "data/sample/images", "--format", "csv", "--concurrency", "8"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == local["csv"]
    stubs = [stub_name(pid) for pid in descendants(second_server.process.pid)]
    assert not Path("/proc/self/task").is_dir() or "fashion_0_1" in stubs, stubs  # --instances 2: a second stub
    spread = next(line for line in run.stderr.splitlines() if line.startswith("requests per server:"))
    for url in (server.url, second_server.url):
        assert url in spread
        count = int(spread.split(url)[1].split(",")[0])
        assert count > 100, spread


def test_bad_inputs_get_the_same_rows_as_local(server, shipped_bundle, sample_paths, tmp_path):
    """A folder with photos, a truncated JPEG, an empty file and a text file: --server writes local's CSV."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sample_paths[:3]:
        (folder / Path(path).name).write_bytes((ROOT / path).read_bytes())
    (folder / "truncated.jpg").write_bytes((ROOT / sample_paths[0]).read_bytes()[:300])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a photo")
    remote = _predict_cli("--server", server.url, str(folder), "--format", "csv")
    local = _predict_cli(str(shipped_bundle), str(folder), "--format", "csv")
    assert remote.returncode == local.returncode == 1, remote.stderr[-2000:]
    assert remote.stdout == local.stdout
    rows = remote.stdout.splitlines()[1:]
    assert len(rows) == 6 and sum(r.startswith(str(folder / "truncated.jpg")) for r in rows) == 1
    assert "corrupt or truncated image" in remote.stdout and "not an image file" in remote.stdout


def test_failover_when_a_server_is_killed(server, second_server, local, sample_paths):
    """SIGKILL the second server halfway: every row exactly once, same CSV as local, failover reported, exit 0."""
    http = TritonHTTP(second_server.url)
    start = int(http.statistics(MODEL_BYTES)["model_stats"][0]["inference_count"])
    killed = threading.Event()

    def killer() -> None:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            try:
                done = int(http.statistics(MODEL_BYTES)["model_stats"][0]["inference_count"]) - start
            except Exception:  # noqa: BLE001 - keep polling until it answers
                done = 0
            if done >= len(sample_paths) // 4:  # about half of the run: the second server takes half the requests
                second_server.kill()
                killed.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    run = _predict_cli(
        "--server",
        f"{server.url},{second_server.url}",
        "data/sample/images",
        "--format",
        "csv",
        "--concurrency",
        "8",
        "--retries",
        "2",
    )
    watcher.join(timeout=5)
    assert killed.is_set(), "the run finished before the server could be killed"
    assert run.returncode == 0, run.stderr[-2000:]
    rows = run.stdout.splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted(sample_paths)  # each input exactly once
    assert run.stdout == local["csv"]
    assert f"failover: {second_server.url} dropped out" in run.stderr


def test_info_model_describes_the_bundle(server, local):
    info = TritonHTTP(server.url).info()
    assert info["heads"] == local["heads"] and info["labels"] == local["labels"]
    assert json.dumps(info)  # plain JSON


def test_consistent_decoding_and_top_k_match_local(server, shipped_bundle, sample_paths):
    paths = [str(ROOT / p) for p in sample_paths[:24]]
    with RemoteClassifier(server.url, concurrency=4) as remote:
        remote_items = remote.predict_files(paths, top_k=5, consistent=True)
    with Classifier.load(shipped_bundle) as clf:
        local_items = clf.predict_batch(paths, top_k=5, consistent=True)
    for got, want in zip(remote_items, local_items):
        assert got.prediction.consistent and want.prediction.consistent
        for head, expected in want.prediction.heads.items():
            actual = got.prediction.heads[head]
            assert (actual.label, actual.index) == (expected.label, expected.index)
            assert [label for label, _ in actual.top_k] == [label for label, _ in expected.top_k]
            np.testing.assert_allclose([p for _, p in actual.top_k], [p for _, p in expected.top_k], atol=1e-5)


def test_sigterm_stops_triton_too(server):
    """SIGTERM to fashion-serve alone (docker stop, kubectl delete) also ends the tritonserver it started."""
    import signal

    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    if not children.is_file():
        pytest.skip("no /proc children file to find tritonserver")
    triton_pids = [int(p) for p in children.read_text().split()]
    assert triton_pids, "fashion-serve has no child process"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in triton_pids):
        assert time.monotonic() < deadline, f"tritonserver {triton_pids} still running after fashion-serve exited"
        time.sleep(0.2)
    assert "stopped" in server.log.read_text(errors="replace")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
