"""The served models' Python side on a tiny real bundle (no server), the libpython fix and the CLI's checks."""

from __future__ import annotations

import json
import os
import sysconfig

import numpy as np
import pytest
from click.testing import CliRunner

from fashion.runtime import Classifier
from fashion.runtime.remote import (
    OUTPUT_ERROR,
    OUTPUT_INFO,
    RemoteClassifier,
    ServerUnavailableError,
    build_request,
    decode_bytes,
    encode_bytes,
    label_output,
    parse_response,
)
from fashion.serve.cli import main as serve_main
from fashion.serve.errors import ServeUnavailable
from fashion.serve.models import BytesModel, InfoModel, TensorModel
from fashion.serve.server import InternalPorts, ServeOptions, build_triton, fix_libpython
from tests.serve.conftest import free_ports


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    with Classifier.load(tiny_bundle) as classifier:
        yield classifier


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((sample_dir / "images").iterdir())[:5]]


def test_batched_requests_keep_their_rows_and_a_bad_image_fails_alone(clf, photos):
    model = BytesModel(clf, max_batch=4)  # 6 images over two model runs
    requests = [
        {"image": np.array([[photos[0]], [photos[1]]], dtype=object)},
        {"image": np.array([[b"not an image"]], dtype=object)},
        {"image": np.array([[p] for p in photos[2:5]], dtype=object)},
    ]
    responses = model(requests)
    assert [len(r[OUTPUT_ERROR]) for r in responses] == [2, 1, 3]
    assert responses[1][OUTPUT_ERROR][0, 0].decode() == "<12 bytes>: not a recognised image format"
    assert responses[1]["gender"].sum() == 0 and responses[1][label_output("gender")][0, 0] == b""
    expected = clf.infer(np.stack([clf.preprocess(p) for p in photos]).astype(np.float32))
    got = np.concatenate([responses[0]["gender"], responses[2]["gender"]])
    np.testing.assert_allclose(got, expected["gender"], atol=1e-6)
    assert all(e == b"" for r in (responses[0], responses[2]) for e in r[OUTPUT_ERROR].reshape(-1))


def test_oversized_image_is_refused_with_the_limit(clf, photos):
    [response] = BytesModel(clf, max_batch=4, max_image_bytes=100)([{"image": np.array([[photos[0]]], dtype=object)}])
    assert "larger than the server's 100-byte image limit" in response[OUTPUT_ERROR][0, 0].decode()


def test_tensor_model_uint8_float32_and_bad_values(clf, photos):
    pixels = np.stack([clf.preprocess(p) for p in photos[:2]])
    model = TensorModel(clf, max_batch=8)
    bad = pixels.astype(np.float32)
    bad[1, 0, 0, 0] = np.nan
    as_uint8, as_float, with_nan, neither = model(
        [{"image_uint8": pixels}, {"image": pixels.astype(np.float32)}, {"image": bad}, {}]
    )
    np.testing.assert_allclose(as_uint8["season"], as_float["season"], atol=1e-6)
    assert [e.decode() for e in with_nan[OUTPUT_ERROR].reshape(-1)] == ["", "image holds NaN or infinite values"]
    assert neither[OUTPUT_ERROR][0, 0].decode().startswith("send exactly one of")


def test_info_names_heads_labels_and_hierarchy(clf):
    [response] = InfoModel(clf)([{"query": np.array([b"info"], dtype=object)}])
    info = json.loads(response[OUTPUT_INFO][0])
    assert info["heads"] == list(clf.heads) and info["labels"]["gender"] == clf.bundle.labels["gender"]
    assert info["input_size"] == list(clf.input_size) and len(info["hierarchy"]) == len(clf.bundle.hierarchy)


def test_binary_protocol_round_trip():
    items = [b"", b"abc", bytes(range(256))]
    assert decode_bytes(encode_bytes(items)) == items
    body, length = build_request([("image", "BYTES", [3, 1], encode_bytes(items))], ["gender"])
    header = json.loads(body[:length])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(body) - length
    probs = np.array([[0.25, 0.75]], dtype=np.float32)
    response = json.dumps(
        {"outputs": [{"name": "gender", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}]}
    ).encode()
    parsed = parse_response(response + probs.tobytes(), len(response))
    np.testing.assert_array_equal(parsed["gender"], probs)


def test_fix_libpython_puts_this_interpreters_libdir_first():
    libdir = sysconfig.get_config_var("LIBDIR")
    env = {"LD_LIBRARY_PATH": f"/somewhere{os.pathsep}{libdir}"}
    note = fix_libpython(env)
    if note is None or "no shared libpython" in note:
        pytest.skip(f"this interpreter has no shared libpython in {libdir}")
    assert env["LD_LIBRARY_PATH"] == f"{libdir}{os.pathsep}/somewhere" and libdir in note
    assert fix_libpython(env) is None  # already first: nothing to do


def test_no_reachable_server_is_unavailable():
    [port] = free_ports(1)
    with pytest.raises(ServerUnavailableError, match="cannot reach any server") as info:
        RemoteClassifier(f"http://127.0.0.1:{port}", timeout=2)
    assert info.value.exit_code == 4


def test_serve_cli_help_and_option_checks(tiny_bundle):
    runner = CliRunner()
    help_text = runner.invoke(serve_main, ["-h"]).output
    assert "--max-queue-delay-us" in help_text and "127.0.0.1" in help_text
    same = runner.invoke(serve_main, [str(tiny_bundle), "--http-port", "9000", "--grpc-port", "9000"])
    assert same.exit_code == 2 and "must differ" in same.output
    bad = runner.invoke(serve_main, [str(tiny_bundle), "--metrics-port", "70000"])
    assert bad.exit_code == 2 and "TCP port" in bad.output


def test_without_pytriton_the_server_says_which_extra(clf):
    try:
        import pytriton  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PyTriton is installed in this environment")
    with pytest.raises(ServeUnavailable, match=r"fashion-edge\[serve\]") as info:
        build_triton([clf], ServeOptions(), InternalPorts(http=0, grpc=0))
    assert info.value.exit_code == 4
