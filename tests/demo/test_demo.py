"""The demo: view helpers, the CLI, no TensorFlow in its process, and the served app through gradio_client."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion import HEADS

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from fashion.demo import views  # noqa: E402
from fashion.runtime import Classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAX_UPLOAD_MB = 1


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    with Classifier.load(tiny_bundle) as clf:
        yield clf


@pytest.fixture(scope="module")
def labels(tiny_bundle) -> dict[str, list[str]]:
    return json.loads((tiny_bundle / "labels.json").read_text())


@pytest.fixture(scope="module")
def demo_url(classifier):
    from fashion.demo.server import running_demo

    with running_demo(classifier, max_upload_mb=MAX_UPLOAD_MB) as url:
        yield url


@pytest.fixture()
def client(demo_url):
    client = gradio_client.Client(demo_url, verbose=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def sample_images(sample_dir) -> list[Path]:
    return views.example_images(sample_dir, count=4)


# -- view helpers ------------------------------------------------------------------------------


def test_jet_runs_from_blue_through_green_to_red():
    cold, mid, hot = views.jet(np.array([[0.0, 0.5, 1.0]]))[0]
    assert cold[2] > 100 and cold[0] == 0  # blue
    assert mid[1] == 255 and mid[0] < 200 and mid[2] < 200  # green dominates
    assert hot[0] > 100 and hot[2] == 0  # red
    assert views.jet(np.zeros((4, 3))).shape == (4, 3, 3)


def test_overlay_tints_hot_regions_red_and_keeps_cold_regions_close_to_the_photo():
    image = np.full((8, 6, 3), 200, np.uint8)
    heat = np.zeros((8, 6), np.float32)
    heat[:4] = 1.0
    out = views.overlay(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    hot, cold = out[:4].reshape(-1, 3).mean(0), out[4:].reshape(-1, 3).mean(0)
    assert hot[0] > hot[2] + 60  # red over the hot half
    assert np.abs(cold - 200).max() < np.abs(hot - 200).max()
    with pytest.raises(ValueError, match="sizes differ"):
        views.overlay(image, np.zeros((4, 4)))


def test_enlarge_keeps_aspect_and_never_shrinks():
    big = views.enlarge(np.zeros((32, 24, 3), np.uint8), height=320)
    assert big.shape == (320, 240, 3)
    assert views.enlarge(np.zeros((400, 300, 3), np.uint8), height=320).shape == (400, 300, 3)


def test_example_images_cover_different_article_types(sample_dir):
    examples = views.example_images(sample_dir, count=6)
    assert len(examples) == 6 and all(p.is_file() for p in examples)
    with (sample_dir / "styles.csv").open(newline="", encoding="utf-8") as handle:
        article = {row[0]: row[4] for row in csv.reader(handle)}
    assert len({article[p.stem] for p in examples}) == 6
    assert views.example_images(sample_dir / "missing") == []


def test_batch_rows_and_csv_name_each_image_and_report_unreadable_ones(classifier, sample_images, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"plain text, not a photo")
    paths = [str(sample_images[0]), str(bad)]
    rows = views.batch_rows(classifier.predict_batch(paths, top_k=1), ["a.jpg", "notes.jpg"], HEADS)
    columns = views.batch_columns(HEADS)
    assert len(columns) == 2 + 2 * len(HEADS) and all(len(row) == len(columns) for row in rows)
    expected = classifier.predict(paths[0]).labels()
    assert rows[0][0] == "a.jpg" and rows[0][1:-1:2] == [expected[h] for h in HEADS] and rows[0][-1] == ""
    assert rows[1][1] == "" and "notes.jpg" in rows[1][-1] and str(tmp_path) not in rows[1][-1]
    with views.write_csv(tmp_path / "out.csv", columns, rows).open(newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == columns and table[1][0] == "a.jpg" and table[2][2] == ""


# -- CLI and process ---------------------------------------------------------------------------


def test_cli_without_a_bundle_fails_with_a_clear_message(tmp_path):
    from click.testing import CliRunner

    from fashion.demo.app import main

    result = CliRunner().invoke(main, ["--bundle", str(tmp_path / "nowhere")])
    assert result.exit_code == 2  # an unusable bundle (fashion/runtime/errors.py, the README's table)
    assert result.output.startswith("Error: no model bundle") and "--bundle" in result.output
    assert result.output.count("Error:") == 1


def test_option_errors_are_one_error_line_and_a_help_hint():
    from click.testing import CliRunner

    from fashion.demo.app import main

    for args, says in ((["--port", "x"], "Invalid value for '--port'"), (["--prot", "1"], "No such option")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2
        lines = result.output.splitlines()
        assert lines[0].startswith(f"Error: {says}") and lines[1:] == ["Try 'main --help' for help."], lines


def test_cli_help_lists_the_options_without_importing_gradio():
    script = """
import sys
from click.testing import CliRunner
from fashion.demo.app import main
for flag in ("-h", "--help"):
    result = CliRunner().invoke(main, [flag])
    assert result.exit_code == 0, result.output
print(result.output)
print("GRADIO", "gradio" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for option in ("--bundle", "--backend", "--precision", "--host", "--port", "--max-upload-mb"):
        assert option in done.stdout
    assert "127.0.0.1" in done.stdout
    assert "GRADIO False" in done.stdout  # --help answers before the seconds-long Gradio import


def test_port_in_use_is_refused_before_loading_with_a_message_naming_the_option(tiny_bundle):
    import socket

    from click.testing import CliRunner

    from fashion.demo.app import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--bundle", str(tiny_bundle), "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.output and "--port" in result.output
    assert "GRADIO_SERVER_PORT" not in result.output


def test_missing_provider_is_refused_naming_the_command_line_flag(tiny_bundle):
    import onnxruntime
    from click.testing import CliRunner

    from fashion.demo.app import main

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here: the provider starts")
    result = CliRunner().invoke(main, ["--bundle", str(tiny_bundle), "--provider", "cuda"])
    assert result.exit_code == 4
    assert "--allow-fallback" in result.output and "allow_fallback=True" not in result.output


def test_one_decode_per_request_feeds_prediction_and_heat_map(tiny_bundle, sample_images, tmp_path):
    from fashion.demo.page import Handlers

    with Classifier.load(tiny_bundle) as clf:
        decoded: list[object] = []
        real = clf.preprocess

        def counting(source):
            if not isinstance(source, np.ndarray):
                decoded.append(source)
            return real(source)

        clf.preprocess = counting
        handlers = Handlers(clf, tmp_path)
        result = handlers.predict(str(sample_images[0]), "articleType")
        assert decoded == [str(sample_images[0])]  # prediction, heat map and overlay share one decoded array
        assert "Prediction took" in result[0] and Path(result[-1]).is_file()
        tensor = real(sample_images[0])
        shown = _labels_of(result)["articleType"]
        assert max(shown, key=shown.get) == clf.predict(tensor).heads["articleType"].label
        rows, _ = handlers.predict_batch([str(p) for p in sample_images[:2]])
        assert len(decoded) == 3 and [row[0] for row in rows] == [p.name for p in sample_images[:2]]


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(tmp_path):
    rows = [["=2+5+cmd|' -C calc'!A0.jpg", "Men", 0.5, "-x", "@SUM(A1)", "+1", "\tTab", "plain", -0.25]]
    with views.write_csv(tmp_path / "out.csv", ["image"] + ["c"] * 8, rows).open(newline="") as handle:
        written = list(csv.reader(handle))[1]
    assert written == [
        "'=2+5+cmd|' -C calc'!A0.jpg",
        "Men",
        "0.5",
        "'-x",
        "'@SUM(A1)",
        "'+1",
        "'\tTab",
        "plain",
        "-0.25",
    ]


def test_demo_process_never_imports_tensorflow(tiny_bundle, sample_images):
    script = f"""
import sys
import time
from fashion.runtime import Classifier
from fashion.demo.page import build_app
from fashion.demo import views
clf = Classifier.load({str(tiny_bundle)!r})
app = build_app(clf)
clf.predict({str(sample_images[0])!r}); clf.cam({str(sample_images[0])!r}, "articleType")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx") or m.startswith("fashion.train"))
print("HEAVY", heavy)
assert not heavy, heavy
"""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HEAVY []" in done.stdout
    assert not list((ROOT / "demo").glob("*.pyi"))  # building the app writes nothing into the source tree


# -- the served app through gradio_client --------------------------------------------------------


def _labels_of(result) -> dict[str, dict]:
    return dict(zip(HEADS, result[1 : 1 + len(HEADS)]))


def test_prediction_returns_all_six_heads_with_labels_from_the_vocabularies(client, classifier, labels, sample_images):
    image = sample_images[0]
    result = client.predict(gradio_client.handle_file(str(image)), "articleType", api_name="/predict")
    status, heads, heat_map = result[0], _labels_of(result), result[-1]
    expected = classifier.predict(image, top_k=3)
    for head in HEADS:
        shown = heads[head]
        assert shown["label"] in labels[head]
        assert shown["label"] == expected.heads[head].label
        top = [c["label"] for c in shown["confidences"]]
        assert len(top) == min(3, len(labels[head])) and set(top) <= set(labels[head])
        assert sum(c["confidence"] for c in shown["confidences"]) <= 1.0 + 1e-5
    assert "Prediction took" in status and "onnxruntime" in status and "fp32" in status
    assert "CPUExecutionProvider" in status
    with Image.open(heat_map) as shown_map:
        height, width = classifier.input_size
        assert shown_map.height == views.DISPLAY_HEIGHT
        assert abs(shown_map.width / shown_map.height - width / height) < 0.05


def test_heat_map_endpoint_follows_the_chosen_head(client, sample_images):
    image = gradio_client.handle_file(str(sample_images[1]))
    maps = [
        np.asarray(Image.open(client.predict(image, head, api_name="/heat_map")).convert("RGB"), np.int16)
        for head in ("articleType", "baseColour")
    ]
    assert maps[0].shape == maps[1].shape
    assert np.abs(maps[0] - maps[1]).mean() > 1  # different heads, different evidence


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("text", "not a recognised image format"),
        ("truncated", "corrupt or truncated"),
        ("pixel bomb", "-pixel limit"),  # 64 megapixels in a few kilobytes
        ("pillow bomb", "-pixel limit"),  # 900 megapixels: over Pillow's own limit, refused when opened
    ],
)
def test_bad_upload_shows_an_error_and_the_server_keeps_serving(
    client, labels, sample_images, tmp_path, payload, reason
):
    bad = tmp_path / "upload.jpg"
    if payload == "text":
        bad.write_bytes(b"plain text, not a photo")
    elif payload == "truncated":
        bad.write_bytes(sample_images[0].read_bytes()[:400])
    elif payload == "pixel bomb":
        Image.new("1", (8000, 8000)).save(bad, format="PNG")
    else:
        from tests.runtime.test_bad_input import write_huge_png

        write_huge_png(bad, 30000)
    assert bad.stat().st_size < MAX_UPLOAD_MB * 1024 * 1024
    result = client.predict(gradio_client.handle_file(str(bad)), "articleType", api_name="/predict")
    assert result[0].startswith("**Could not use this file:** upload.jpg: ") and reason in result[0]
    assert str(tmp_path) not in result[0]
    assert all(not value for value in result[1:])  # no stale predictions left on the page
    good = client.predict(gradio_client.handle_file(str(sample_images[1])), "articleType", api_name="/predict")
    assert _labels_of(good)["gender"]["label"] in labels["gender"]


def test_oversized_upload_is_refused_by_the_server_and_it_keeps_serving(demo_url, client, sample_images):
    import httpx

    huge = b"\xff\xd8\xff" + os.urandom(MAX_UPLOAD_MB * 1024 * 1024 + 1024)
    response = httpx.post(
        f"{demo_url}/gradio_api/upload", files={"files": ("huge.jpg", huge, "image/jpeg")}, timeout=60
    )
    assert response.status_code == 413
    good = client.predict(gradio_client.handle_file(str(sample_images[0])), "gender", api_name="/predict")
    assert "Prediction took" in good[0]


def test_batch_csv_escapes_a_formula_like_upload_name(client, sample_images, tmp_path):
    name = "=2+5+cmd|' -C calc'!A0.jpg"
    (tmp_path / name).write_bytes(sample_images[0].read_bytes())
    table, csv_path = client.predict([gradio_client.handle_file(str(tmp_path / name))], api_name="/predict_batch")
    shown = table["data"][0][0]
    assert shown.lstrip("'").startswith("=")  # the page shows the name (whatever the upload kept of it)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        cell = list(csv.reader(handle))[1][0]
    assert cell == "'" + shown and table["data"][0][1]


def test_batch_tab_returns_one_row_per_image_and_a_matching_csv(client, classifier, sample_images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = [gradio_client.handle_file(str(p)) for p in sample_images[:3]] + [gradio_client.handle_file(str(bad))]
    table, csv_path = client.predict(files, api_name="/predict_batch")
    assert table["headers"] == views.batch_columns(HEADS)
    rows = table["data"]
    assert [row[0] for row in rows] == [p.name for p in sample_images[:3]] + ["broken.jpg"]
    for image, row in zip(sample_images[:3], rows):
        assert row[1:-1:2] == [classifier.predict(image).heads[h].label for h in HEADS] and row[-1] == ""
    assert rows[-1][-1].startswith("broken.jpg: ")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written[0] == table["headers"] and [r[0] for r in written[1:]] == [r[0] for r in rows]


def test_server_binds_loopback_and_sends_no_analytics(demo_url):
    import httpx

    assert demo_url.startswith("http://127.0.0.1:")
    config = httpx.get(f"{demo_url}/config", timeout=30).json()
    assert config["analytics_enabled"] is False
    assert config["max_file_size"] == MAX_UPLOAD_MB * 1024 * 1024
    assert config["stylesheets"] == []  # no web fonts to download: the page renders offline


def test_save_png_is_named_by_content_and_prune_removes_only_old_entries(tmp_path):
    image = np.zeros((4, 3, 3), np.uint8)
    first, again = views.save_png(image, tmp_path), views.save_png(image, tmp_path)
    other = views.save_png(np.full((4, 3, 3), 9, np.uint8), tmp_path)
    assert first == again != other and Image.open(first).size == (3, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({first.name, other.name})  # no temp leftovers
    (tmp_path / "old-batch").mkdir()
    old = time.time() - 7200
    for path in (first, tmp_path / "old-batch"):
        os.utime(path, (old, old))
    assert views.prune(tmp_path, 3600) == 2
    assert [p.name for p in tmp_path.iterdir()] == [other.name]


def test_fashion_demo_command_serves_on_loopback_without_tensorflow(tiny_bundle, sample_images, tmp_path):
    import httpx

    from fashion.demo.server import free_port

    command = Path(sys.executable).with_name("fashion-demo")
    if not command.is_file():
        pytest.skip(f"{command} not installed (pip install -e .)")
    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(temp))
    process = subprocess.Popen(
        [str(command), "--bundle", str(tiny_bundle), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read()
            assert time.time() < deadline, "fashion-demo did not start within 120 s"
            time.sleep(0.5)
        client = gradio_client.Client(url, verbose=False)
        result = client.predict(gradio_client.handle_file(str(sample_images[0])), "articleType", api_name="/predict")
        assert "Prediction took" in result[0]
        client.close()
        maps = Path(f"/proc/{process.pid}/maps")
        if maps.is_file():
            assert "tensorflow" not in maps.read_text().lower()
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:] if Path("/proc/net/tcp").is_file() else []
        local = [line.split()[1] for line in listening if line.split()[3] == "0A"]  # 0A = LISTEN
        assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local  # 127.0.0.1 only
        assert list(temp.glob("fashion-demo-*/*.png"))  # the heat map it served
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0 and not list(temp.glob("fashion-demo-*"))  # its folder went with it


def test_shipped_model_in_the_demo_gets_the_sample_examples_right(shipped_bundle, sample_dir):
    """Through the served page's API, the shipped model names the examples' categories (held-out photos)."""
    from fashion.demo.server import running_demo

    with (sample_dir / "styles.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        truth = {row[0]: dict(zip(header, row)) for row in reader}
    examples = views.example_images(sample_dir)
    with Classifier.load(shipped_bundle) as classifier, running_demo(classifier) as url:
        client = gradio_client.Client(url, verbose=False)
        right = {"masterCategory": 0, "articleType": 0}
        for image in examples:
            shown = _labels_of(
                client.predict(gradio_client.handle_file(str(image)), "articleType", api_name="/predict")
            )
            for head in right:
                right[head] += shown[head]["label"] == truth[image.stem][head]
        client.close()
    assert right["masterCategory"] >= len(examples) - 1, right
    assert right["articleType"] >= len(examples) // 2, right
