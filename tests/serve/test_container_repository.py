"""The exported repository's fashion_preprocess model on a real tritonserver (the one PyTriton bundles).

NVIDIA's container cannot be pulled here, but its Python backend is the same one PyTriton ships, so the
generated ``model.py`` is loaded by a real Triton 2.51 from the ``fashion-export --triton`` folder and
answers image bytes with the runtime's exact tensor; a bad image in a concurrent burst gets its own error
response while the others succeed. (The ensemble also needs Triton's ONNX Runtime backend, which only the
container has; its config is schema-checked in tests/export.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fashion.export.triton import PREPROCESS_MODEL, write_repository
from fashion.runtime import Classifier
from fashion.runtime.bundle import load_manifest
from fashion.runtime.remote import RemoteError, TritonHTTP, encode_bytes
from tests.serve.conftest import free_ports, serve_python

pytestmark = pytest.mark.timeout(180)

_PATHS = """
import json, sys
from pytriton.triton import TRITONSERVER_DIST_DIR
from pytriton.utils.distribution import get_libs_path, get_stub_path
version = f"{sys.version_info[0]}.{sys.version_info[1]}"
print(json.dumps({"dist": str(TRITONSERVER_DIST_DIR), "libs": str(get_libs_path()),
                  "stub": str(get_stub_path(version)), "bin": sys.prefix + "/bin"}))
"""


@pytest.fixture(scope="module")
def triton(tiny_bundle, tmp_path_factory):
    python = serve_python()
    if python is None:
        pytest.skip("no interpreter with PyTriton: run `make test` (builds .venv-serve) or set FASHION_SERVE_PYTHON")
    paths = json.loads(subprocess.run([python, "-c", _PATHS], capture_output=True, text=True, check=True).stdout)
    root = tmp_path_factory.mktemp("container")
    write_repository(load_manifest(tiny_bundle), root / "repo", 8)
    backend = root / "backends" / "python"
    shutil.copytree(os.path.join(paths["dist"], "backends", "python"), backend)
    shutil.copy(paths["stub"], backend / "triton_python_backend_stub")
    http_port, grpc_port = free_ports(2)
    env = dict(
        os.environ,
        PATH=f"{paths['bin']}:{os.environ.get('PATH', '')}",
        LD_LIBRARY_PATH=f"{sysconfig.get_config_var('LIBDIR')}:{paths['libs']}",
    )
    log = root / "tritonserver.log"
    command = [
        os.path.join(paths["dist"], "bin", "tritonserver"),
        f"--model-repository={root / 'repo'}",
        f"--backend-directory={root / 'backends'}",
        "--model-control-mode=explicit",
        f"--load-model={PREPROCESS_MODEL}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--log-verbose=0",
        "--exit-timeout-secs=2",
    ]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/models/{PREPROCESS_MODEL}/ready", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tritonserver did not load {PREPROCESS_MODEL}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_real_triton_runs_the_generated_preprocessing_model(triton, tiny_bundle, sample_dir):
    photos = [p.read_bytes() for p in sorted((sample_dir / "images").iterdir())[:12]]
    http = TritonHTTP(triton)
    out = http.infer(PREPROCESS_MODEL, [("image_bytes", "BYTES", [3, 1], encode_bytes(photos[:3]))], ["image"])
    with Classifier.load(tiny_bundle) as clf:
        expected = np.stack([clf.preprocess(p) for p in photos]).astype(np.float32)
    np.testing.assert_array_equal(out["image"], expected[:3])

    burst = photos[:6] + [b"\x89PNG broken"] + photos[6:]

    def send(data: bytes):
        try:
            return http.infer(PREPROCESS_MODEL, [("image_bytes", "BYTES", [1, 1], encode_bytes([data]))], ["image"])
        except RemoteError as exc:
            return exc

    with ThreadPoolExecutor(len(burst)) as pool:
        answers = list(pool.map(send, burst))
    assert isinstance(answers[6], RemoteError) and "not a recognised image format" in str(answers[6])
    good = [a for i, a in enumerate(answers) if i != 6]
    assert all(isinstance(a, dict) for a in good)
    np.testing.assert_array_equal(np.concatenate([a["image"] for a in good]), expected)
