"""A small KServe v2 HTTP server on 127.0.0.1 that answers with a real ``Classifier``'s outputs, and misbehaves
on request: the faults a bulk client meets in production (a load balancer answering 503, a server still
loading, garbage, a server trickling its answer, TLS, a required bearer token).

It speaks the subset of the protocol ``fashion.runtime.remote`` uses: binary-tensor requests to the models
``fashion`` (encoded image bytes -> per-head probabilities + a per-image error) and ``fashion_info``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from fashion.runtime import Classifier
from fashion.runtime.remote import MODEL_BYTES, MODEL_INFO, OUTPUT_ERROR, OUTPUT_INFO, decode_bytes, encode_bytes

#: ok: answer like fashion-serve; info404/info500/infogarbage: fashion_info fails that way (inference works);
#: busy: every inference answers 503 (a load balancer in front of a dead backend); trickle: inference answers
#: one byte every ``trickle_s``; slow: each inference takes ``delay_s`` first.
MODES = ("ok", "info404", "info500", "infogarbage", "busy", "trickle", "slow")


def binary_response(outputs: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, int]:
    header = {
        "outputs": [
            {"name": name, "datatype": dtype, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
            for name, dtype, shape, raw in outputs
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(raw for *_, raw in outputs), len(head)


class FakeKServe:
    def __init__(
        self,
        clf: Classifier,
        mode: str = "ok",
        *,
        hierarchy: bool = True,
        delay_s: float = 0.0,
        trickle_s: float = 1.0,
        token: str | None = None,
        certificate: tuple[Path, Path] | None = None,
    ):
        assert mode in MODES, mode
        self.clf, self.mode, self.delay_s, self.trickle_s, self.token = clf, mode, delay_s, trickle_s, token
        self.inferences = 0
        self._lock = threading.Lock()
        info = {
            "name": "fake",
            "heads": list(clf.heads),
            "labels": {head: clf.bundle.labels[head] for head in clf.heads},
            "hierarchy": [list(row) for row in clf.bundle.hierarchy] if hierarchy else [],
            "input_size": list(clf.input_size),
            "artifact": clf.artifact,
            "backend": "onnxruntime",
            "providers": ["CPUExecutionProvider"],
            "precision": "fp32",
        }
        self.info_payload = json.dumps(info).encode()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeKServe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- answers -----------------------------------------------------------------------------------

    def infer_image(self, data: bytes) -> tuple[bytes, int]:
        heads = self.clf.heads
        try:
            tensor = self.clf.preprocess(data)
            error = b""
        except Exception as exc:  # noqa: BLE001 - the image's error goes into its output, as fashion-serve does
            tensor, error = None, str(exc).encode()
        if tensor is not None:
            probabilities = self.clf.infer(self.clf.preprocessor.to_batch([tensor]))
        else:
            probabilities = {h: np.zeros((1, len(self.clf.bundle.labels[h])), np.float32) for h in heads}
        outputs = [(OUTPUT_ERROR, "BYTES", [1, 1], encode_bytes([error]))]
        for head in heads:
            array = np.asarray(probabilities[head], dtype=np.float32).reshape(1, -1)
            outputs.append((head, "FP32", list(array.shape), array.tobytes()))
        return binary_response(outputs)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, header_length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if header_length is not None:
                    self.send_header("Inference-Header-Content-Length", str(header_length))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._send(status, json.dumps({"error": message}).encode())

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._send(200 if self.path.startswith("/v2/health") else 404, b"")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if fake.token is not None and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._error(401, "missing or wrong bearer token")
                model = self.path.split("/")[3] if self.path.count("/") >= 4 else ""
                if model == MODEL_INFO:
                    return self._info()
                if model != MODEL_BYTES:
                    return self._error(404, f"unknown model {model}")
                with fake._lock:
                    fake.inferences += 1
                if fake.mode == "busy":
                    return self._error(503, "no healthy upstream")
                if fake.mode == "slow":
                    time.sleep(fake.delay_s)
                length = int(self.headers["Inference-Header-Content-Length"])
                raw = body[length:]
                [image] = decode_bytes(raw)
                answer, header_length = fake.infer_image(image)
                if fake.mode == "trickle":
                    return self._trickle(answer, header_length)
                self._send(200, answer, header_length)

            def _info(self) -> None:
                if fake.mode == "info404":
                    return self._error(404, "Request for unknown model: 'fashion_info' is not found")
                if fake.mode == "info500":
                    return self._error(500, "failed to load 'fashion_info'")
                if fake.mode == "infogarbage":
                    return self._send(200, b"\xff\xfe\x00garbage from a half-started server")
                answer, header_length = binary_response(
                    [(OUTPUT_INFO, "BYTES", [1], encode_bytes([fake.info_payload]))]
                )
                self._send(200, answer, header_length)

            def _trickle(self, answer: bytes, header_length: int) -> None:
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(answer)}\r\n"
                    f"Inference-Header-Content-Length: {header_length}\r\n\r\n"
                ).encode()
                try:
                    for byte in head + answer:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(fake.trickle_s)
                except OSError:
                    pass  # the client gave up: that is the point

        return Handler


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made with the openssl command line."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def serve_forever(bundle: str, mode: str, port_file: str, delay_s: float = 0.0) -> None:
    """Run one fake in this process until killed (for tests that need a server in another process)."""
    with Classifier.load(bundle, threads=1) as clf, FakeKServe(clf, mode, delay_s=delay_s) as fake:
        Path(port_file).write_text(fake.url)
        threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve_forever(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
