"""The standalone model outside Python: the static page in Chromium (onnxruntime-web, WASM) and the Node tagger.

Both must show the labels the Python runtime gives for the same photo files. The npm packages come from
``make web`` (npm ci); without them, or without Debian's Chromium, the tests skip and say why.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from fashion import HEADS
from fashion.demo.web import server
from fashion.export import standalone
from fashion.runtime import Classifier
from fashion.runtime.bundle import load_manifest

WEB_DIR = server.WEB_DIR
NODE = shutil.which("node")
NPM_READY = (WEB_DIR / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.js").is_file()
NODE_READY = NODE is not None and (WEB_DIR / "node_modules" / "onnxruntime-node").is_dir()

needs_npm = pytest.mark.skipif(not NPM_READY, reason=f"npm packages missing in {WEB_DIR}: run `make web` (needs npm)")
needs_node = pytest.mark.skipif(not NODE_READY, reason="node or onnxruntime-node missing: run `make web` (needs npm)")


@pytest.fixture(scope="module")
def model(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle's standalone model (built here: no gate, just the graph)."""
    bundle = load_manifest(tiny_bundle)
    path = tmp_path_factory.mktemp("web") / standalone.FILE
    standalone.build_file(bundle, bundle.artifacts["onnx_fp32"], path)
    return path


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    with Classifier.load(tiny_bundle, precision="fp32") as clf:
        yield clf


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:4]


def _runtime_labels(classifier, photo: Path) -> dict[str, str]:
    prediction = classifier.predict(photo)
    return {head: prediction.heads[head].label for head in HEADS}


# -- the static server ----------------------------------------------------------------------------


@needs_npm
def test_server_hands_out_only_the_page_the_runtime_files_and_the_model(model):
    with server.serving(model) as url:
        assert b"onnxruntime-web" in urllib.request.urlopen(url).read()
        assert urllib.request.urlopen(url + "model.onnx").read() == model.read_bytes()
        wasm = urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.wasm")
        assert wasm.headers["Content-Type"] == "application/wasm"
        for path in ("../server.py", "server.py", "package.json", "ort/../../package.json", "node_modules/"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(url + path)
            assert error.value.code == 404, path


def test_a_bundle_without_a_standalone_model_says_how_to_build_one(tiny_bundle):
    with pytest.raises(server.WebSetupError, match="--standalone"):
        server.resolve_model(tiny_bundle)


def _serve(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(server.main, list(args))


def test_the_server_command_exits_as_documented(tiny_bundle, model, tmp_path, monkeypatch):
    """No standalone model: 2 (an unusable bundle); onnxruntime-web not installed: 4 (a missing package);
    a port in use: 2. Each is one ``Error:`` line, as the README's exit-code table says."""
    import socket

    no_model = _serve("--bundle", str(tiny_bundle))
    assert no_model.exit_code == 2, no_model.output
    assert no_model.output.count("Error:") == 1 and "--standalone" in no_model.output

    monkeypatch.setattr(server, "ORT_DIST", tmp_path / "no-node-modules")
    no_npm = _serve("--bundle", str(model))
    assert no_npm.exit_code == 4, no_npm.output
    assert no_npm.output.startswith("Error: ") and "make web" in no_npm.output
    monkeypatch.undo()

    with socket.socket() as taken:  # checked before the npm packages, so this runs without them too
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _serve("--bundle", str(model), "--port", str(port))
    assert busy.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in busy.output


def test_the_page_does_not_default_to_fashion_serves_ports():
    port = next(p for p in server.main.params if p.name == "port")
    assert port.default == server.DEFAULT_PORT
    assert port.default not in (8000, 8001, 8002, 7860)  # Triton HTTP/gRPC/metrics, the Gradio demo
    assert f"[default: {server.DEFAULT_PORT};" in _serve("-h").output


# -- Node -----------------------------------------------------------------------------------------


def _tag(model: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, str(WEB_DIR / "tag-folder.mjs"), str(model), str(folder), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_node
def test_node_tags_png_photos_exactly_as_the_runtime(model, classifier, photos, tmp_path):
    # PNG decodes to the same pixels everywhere, so every label must match.
    for photo in photos:
        Image.open(photo).convert("RGB").save(tmp_path / f"{photo.stem}.png")
    done = _tag(model, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [row["source"] for row in rows] == sorted(str(tmp_path / f"{p.stem}.png") for p in photos)
    for row in rows:
        expected = _runtime_labels(classifier, Path(row["source"]))
        assert {head: row[head] for head in HEADS} == expected, row["source"]
        assert all(0 < float(row[f"{head}_confidence"]) <= 1 for head in HEADS)


@needs_node
def test_node_tags_jpegs_like_the_runtime(model, classifier, sample_dir, tmp_path):
    # jpeg-js (pure JavaScript) and libjpeg-turbo (Pillow) may differ by a level here and there after the
    # inverse DCT, which can flip a near-tie; nearly every label must still agree.
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((sample_dir / "images").glob("*.jpg"))[:20]:
        shutil.copy(photo, folder / photo.name)
    done = _tag(model, folder, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 20
    agree = sum(
        result["heads"][head]["label"] == _runtime_labels(classifier, Path(result["source"]))[head]
        for result in results
        for head in HEADS
    )
    assert agree / (6 * len(results)) >= 0.95


@needs_node
def test_node_reports_unreadable_photos_and_bad_arguments(model, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    done = _tag(model, tmp_path)
    assert done.returncode == 1 and "broken.jpg" in done.stderr
    # the CSV columns are fashion-predict's, and the unreadable photo gets its row with the error, as in Python
    from fashion.runtime.cli import csv_columns

    header, *rows = list(csv.reader(io.StringIO(done.stdout)))
    assert header == csv_columns(HEADS, 3)
    assert [row[0] for row in rows] == [str(tmp_path / "broken.jpg")] and rows[0][1] and not rows[0][2]
    done = _tag(tmp_path / "missing.onnx", tmp_path)
    assert done.returncode == 2 and "no such model file" in done.stderr


# -- the browser ----------------------------------------------------------------------------------


@pytest.mark.browser
@needs_npm
def test_the_page_shows_the_runtime_labels_for_photos_decoded_by_the_browser(model, classifier, photos, tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")
    from fashion.demo import browser

    if not browser.CHROMIUM.is_file():
        pytest.skip(f"{browser.CHROMIUM} missing: install Debian's chromium (`make browser`, needs root)")
    with server.serving(model) as url, browser.chromium_page(1100, 800) as (page, blocked):
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        for count, photo in enumerate(photos, start=1):
            page.set_input_files("#photo", str(photo))
            page.wait_for_function(f"document.body.dataset.done === '{count}'", timeout=60_000)
            shown = {head: page.get_attribute(f"#head-{head}", "data-label") for head in HEADS}
            assert shown == _runtime_labels(classifier, photo), photo.name
            assert "inference took" in page.inner_text("#status")
        screenshot = tmp_path / "page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert blocked == [], f"the page tried to reach the internet: {blocked}"
    assert screenshot.stat().st_size > 10_000
