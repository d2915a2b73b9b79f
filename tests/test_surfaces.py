"""One corpus of bad and odd inputs, run against every surface a user reaches.

Surfaces: the runtime API, ``fashion-predict``, the demo (served, through gradio_client), and the
``--data`` of ``fashion-eda`` / ``fashion-train evaluate`` / ``fashion-export`` / ``fashion-bench``.
Each case asserts the message the user sees, the documented exit status (0 ok, 1 some inputs failed,
2 unusable input), no traceback, and that the surface still serves a good request afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashion import HEADS
from fashion.runtime import vips_decode


@dataclass(frozen=True)
class Case:
    name: str  # the file's name as the user gave it
    make: Callable[[Path, Path], None]  # (path, a good sample photo) -> writes the input
    error: str | None  # a fragment of the message; None: the input is a photo that must be predicted
    upload: bool = True  # can be sent through a browser upload (a folder or a missing file cannot)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(side: int) -> Callable[[Path, Path], None]:
    """A valid 1-bit side x side PNG of a few tens of kB: a decompression bomb."""

    def make(path: Path, good: Path) -> None:
        row = b"\x00" * (1 + (side + 7) // 8)
        compressor = zlib.compressobj(9)
        idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
        ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
        path.write_bytes(
            b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
        )

    return make


def saved_as(fmt: str) -> Callable[[Path, Path], None]:
    def make(path: Path, good: Path) -> None:
        with Image.open(good) as image:
            image.convert("RGB").save(path, format=fmt)

    return make


def copy_of(path: Path, good: Path) -> None:
    shutil.copy(good, path)


def unreadable(path: Path, good: Path) -> None:
    shutil.copy(good, path)
    path.chmod(0)


PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)

CORPUS = [
    Case("empty.jpg", lambda p, g: p.write_bytes(b""), "empty file"),
    Case("half.jpg", lambda p, g: p.write_bytes(g.read_bytes()[:300]), "corrupt or truncated"),
    Case("noise.jpg", lambda p, g: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a recognised image"),
    Case("catalogue.pdf", lambda p, g: p.write_bytes(PDF), "not a recognised image"),
    Case("bomb.png", huge_png(8000), "-pixel limit"),  # over the runtime's 50 MP limit
    Case("pillow-bomb.png", huge_png(30000), "-pixel limit"),  # over Pillow's own limit: refused at open
    Case(
        "phone.heic",
        lambda p, g: p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00heicmif1" + bytes(64)),
        # libvips reads the HEIF container and says why it cannot decode it; Pillow alone does not know the format
        "undecodable HEIF image" if vips_decode.available() else "not a recognised image",
    ),
    Case("folder.jpg", lambda p, g: p.mkdir(), "is a directory", upload=False),
    Case("nowhere.jpg", lambda p, g: None, "no such file", upload=False),
    Case("locked.jpg", unreadable, "permission denied", upload=False),
    Case("photo.avif", saved_as("AVIF"), None),
    Case("photo.jfif", copy_of, None),
    Case("=2+5+cmd|' -C calc'!A0.jpg", copy_of, None),
    Case("-rf façade 日本.jpg", copy_of, None),
]
IDS = [case.name for case in CORPUS]


@pytest.fixture(scope="module")
def good(sample_dir) -> Path:
    return sorted((sample_dir / "images").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, good) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for case in CORPUS:
        case.make(folder / case.name, good)
    yield folder
    for case in CORPUS:
        if case.make is unreadable:
            (folder / case.name).chmod(0o644)


def skip_if_readable(case: Case, path: Path) -> None:
    if case.make is unreadable and os.access(path, os.R_OK):
        pytest.skip("running as root: a mode-000 file is still readable")


# -- runtime API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    from fashion.runtime import Classifier

    with Classifier.load(tiny_bundle) as clf:
        yield clf


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_runtime_api(classifier, corpus, good, case):
    from fashion.runtime import InvalidImageError

    path = corpus / case.name
    skip_if_readable(case, path)
    if case.error is None:
        assert set(classifier.predict(path).labels()) == set(HEADS)
    else:
        with pytest.raises(InvalidImageError) as caught:
            classifier.predict(path)
        assert case.name in str(caught.value) and case.error in str(caught.value)
        [item] = classifier.predict_batch([path])
        assert not item.ok and case.error in item.error
    assert classifier.predict(good).labels()  # still serving


# -- fashion-predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_fashion_predict(tiny_bundle, corpus, good, case, monkeypatch):
    from fashion.runtime.cli import main

    path = corpus / case.name
    skip_if_readable(case, path)
    monkeypatch.chdir(corpus)  # relative names, as a user types them (a leading "-" or "=" stays in the cell)
    result = CliRunner().invoke(main, [str(tiny_bundle), "--format", "csv", "--", case.name, str(good)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if case.name == "folder.jpg":
        # a folder is scanned, not read: an empty one adds no row, the good photo still runs
        assert result.exit_code == 0, result.stderr
        assert result.stdout.count("\n") == 2
        return
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2 and rows[1]["articleType"] and not rows[1]["error"]  # the good photo after it
    shown = rows[0]["source"]
    assert shown.lstrip("'") == case.name
    assert shown.startswith("'") == case.name.startswith(("=", "-"))  # spreadsheet-safe cells
    if case.error is None:
        assert result.exit_code == 0, result.stderr
        assert rows[0]["articleType"] and not rows[0]["error"]
    else:
        assert result.exit_code == 1
        assert case.error in rows[0]["error"] and not rows[0]["articleType"]
        assert f"failed: {case.name}: " in result.stderr and "1 of 2 inputs failed" in result.stderr


# -- the demo, served --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_client(classifier):
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from fashion.demo.server import running_demo

    with running_demo(classifier) as url:
        client = gradio_client.Client(url, verbose=False)
        yield client
        client.close()


@pytest.mark.parametrize("case", [c for c in CORPUS if c.upload], ids=[c.name for c in CORPUS if c.upload])
def test_demo(demo_client, corpus, good, case):
    from gradio_client import handle_file

    status = demo_client.predict(handle_file(str(corpus / case.name)), "articleType", api_name="/predict")[0]
    if case.error is None:
        assert status.startswith("Prediction took"), status
    else:
        assert status.startswith(f"**Could not use this file:** {case.name}: ") and case.error in status, status
        assert str(corpus) not in status  # no server paths in the page
    after = demo_client.predict(handle_file(str(good)), "articleType", api_name="/predict")[0]
    assert after.startswith("Prediction took")


# -- --data of the data-reading commands -------------------------------------------------------------


DATA_CASES = {
    "missing": lambda root: root / "nowhere",
    "a file": lambda root: root / "styles.csv",
    "empty folder": lambda root: root / "empty",
    "noise styles.csv": lambda root: root / "noise",
    "odd name": lambda root: root / "=cmd 日本",
}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "styles.csv").write_text("id,gender\n1,Men\n")
    (root / "empty").mkdir()
    (root / "noise").mkdir()
    (root / "noise" / "styles.csv").write_bytes(np.random.default_rng(1).bytes(2048))
    (root / "noise" / "images").mkdir()
    (root / "=cmd 日本").mkdir()
    return root


@pytest.fixture(scope="module")
def export_bundle(tmp_path_factory, shipped_bundle) -> Path:
    """A copy: a failed export must not touch the shipped bundle (and this one must fail)."""
    return Path(shutil.copytree(shipped_bundle, tmp_path_factory.mktemp("export") / "bundle"))


def _command(name: str, bundle: Path | None, data: Path, out: Path) -> tuple[Callable, list[str]]:
    if name == "fashion-eda":
        from fashion.data.eda_cli import main

        return main, ["--data", str(data), "--out", str(out)]
    if name == "fashion-train evaluate":
        from fashion.train.cli import main

        return main, ["evaluate", str(bundle), "--data", str(data)]
    if name == "fashion-export":
        from fashion.export.cli import main

        return main, [str(bundle), "--data", str(data)]
    from fashion.benchmarks.cli import main

    return main, [str(bundle), "--data", str(data), "--quiet"]


@pytest.mark.parametrize("kind", list(DATA_CASES))
@pytest.mark.parametrize("command", ["fashion-eda", "fashion-train evaluate", "fashion-export", "fashion-bench"])
def test_data_commands(request, command, kind, data_dirs, tiny_bundle, tmp_path):
    if command == "fashion-train evaluate":
        pytest.importorskip("keras", reason="fashion-train needs the train extra")
    bundle = request.getfixturevalue("export_bundle") if command == "fashion-export" else tiny_bundle
    data = DATA_CASES[kind](data_dirs)
    main, args = _command(command, bundle, data, tmp_path / "out")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Error" in result.output and "Traceback" not in result.output
    assert str(data.name) in result.output or "--data" in result.output
    if command == "fashion-export":
        before = json.loads((request.getfixturevalue("shipped_bundle") / "bundle.json").read_text())
        assert json.loads((bundle / "bundle.json").read_text())["artifacts"] == before["artifacts"]


# -- every command: -h ------------------------------------------------------------------------------


def _console_scripts() -> dict[str, str]:
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(_console_scripts()))
def test_every_command_answers_short_help(script):
    import importlib

    module, _, attribute = _console_scripts()[script].partition(":")
    try:
        main = getattr(importlib.import_module(module), attribute)
    except ImportError as exc:  # an extra that is not installed here
        pytest.skip(f"{script}: {exc}")
    result = CliRunner().invoke(main, ["-h"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "-h, --help" in result.output


# -- one spelling: --split-file FILE, --split NAME ----------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "before"),
    [
        ("fashion.train.cli", ["fit", "--data", "{data}", "--out", "{out}"]),
        ("fashion.train.cli", ["evaluate", "{bundle}", "--data", "{data}"]),
        ("fashion.train.cli", ["refine", "{bundle}", "--data", "{data}", "--out", "{out}"]),
        ("fashion.train.cli", ["average", "{bundle}", "--data", "{data}", "--out", "{out}"]),
        ("fashion.export.cli", ["{bundle}"]),
        ("fashion.data.eda_cli", ["--data", "{data}", "--out", "{out}"]),
        ("fashion.benchmarks.cli", ["{bundle}"]),
        ("fashion.benchmarks.cli", ["robustness", "{bundle}"]),
        ("fashion.train.gpu_check", ["prepare", "--source", "{data}", "--dest", "{out}"]),
    ],
)
def test_a_split_file_given_to_split_says_use_split_file(module, before, tiny_bundle, sample_dir, tmp_path):
    """The spelling before issue 22 (--split FILE): exit 2, one Error line saying "use --split-file FILE"."""
    import importlib

    try:
        main = importlib.import_module(module).main
    except ImportError as exc:  # an extra that is not installed here
        pytest.skip(f"{module}: {exc}")
    values = {"data": str(sample_dir), "out": str(tmp_path / "out"), "bundle": str(tiny_bundle)}
    args = [arg.format(**values) for arg in before]
    result = CliRunner().invoke(main, [*args, "--split", "data/splits/fashion-product-images.csv"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "use --split-file FILE" in errors[0], result.output
    assert not (tmp_path / "out").exists()


def test_train_evaluate_names_the_part_split():
    pytest.importorskip("keras", reason="fashion-train needs the train extra")
    from fashion.train.cli import main

    help_text = CliRunner().invoke(main, ["evaluate", "-h"]).output
    assert "--split [train|val|test]" in help_text and "--split-file FILE" in help_text and "--subset" not in help_text
    result = CliRunner().invoke(main, ["evaluate", ".", "--data", ".", "--subset", "val"])
    assert result.exit_code == 2 and "use --split val" in result.output
