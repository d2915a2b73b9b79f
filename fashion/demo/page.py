"""The demo page (Gradio): a photo tab with six heads and a heat map, and a batch tab with a CSV download.

Only ``fashion.runtime`` runs the model (no TensorFlow in this process). Importing this module
imports Gradio (seconds), so the ``fashion-demo`` command parses its options before it does.

Memory: an upload is decoded once per request, straight into the model's small input tensor
(``Classifier.preprocess``), and that one array feeds the prediction, the heat map and its overlay.
At most ``DECODE_SLOTS`` full-size decodes are held at a time, and the freed decode buffers are
handed back to the operating system after each one, so a burst of large photos neither multiplies
nor keeps the server's memory.
"""

from __future__ import annotations

import os

# Gradio reads these when it is imported: no telemetry, no version check over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import atexit  # noqa: E402
import ctypes  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from fashion.data.paths import REPO_ROOT  # noqa: E402
from fashion.data.paths import SAMPLE_DIR as SAMPLE_SUBDIR  # noqa: E402
from fashion.runtime import BatchItem, Classifier, InvalidImageError  # noqa: E402

from . import views  # noqa: E402

SAMPLE_DIR = REPO_ROOT / SAMPLE_SUBDIR  # the committed sample photos (examples and allowed paths)
CAM_HEAD = "articleType"
CONCURRENCY = 4  # simultaneous requests; the ONNX Runtime session is thread-safe
DECODE_SLOTS = 2  # full-size decodes in memory at once (a 7000x7000 photo needs ~0.3 GB while it decodes)
MAX_BATCH_IMAGES = 256
KEEP_FILES_S = 3600  # generated heat maps are deleted after an hour
# Catalogue photos are small (60x80); show the upload as large as its box allows.
CSS = "#photo img { width: 100%; height: 100%; object-fit: contain; image-rendering: auto; }"


def theme() -> gr.themes.Base:
    """System fonts only: the page must render with no internet (no web-font downloads)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def _libc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _libc_trim()


def release_memory() -> None:
    """Return freed heap pages to the OS. A decoded photo's buffers are freed but glibc keeps them in
    its arenas; without this, the server stays at its peak after one burst of large uploads."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def pass_unreadable_files_on(image_input: gr.Image) -> gr.Image:
    """Make ``image_input`` (type="filepath") hand files Pillow cannot open to our function,
    where the runtime's typed error explains the problem in the page instead of a bare "Error".

    Pillow's decompression-bomb refusal is neither an OSError nor a ValueError, so everything
    is caught. Wrapping the instance's method, because subclassing a Gradio component makes
    Gradio write a ``.pyi`` stub next to this module at import time.
    """
    original = image_input.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:
            if payload is None or getattr(payload, "path", None) is None:
                raise
            return str(payload.path)

    image_input.preprocess = preprocess  # type: ignore[method-assign]
    return image_input


class Handlers:
    """The page's callbacks for one classifier; ``work_dir`` receives the heat maps and CSVs it serves."""

    def __init__(self, classifier: Classifier, work_dir: Path):
        self.classifier = classifier
        self.heads = list(classifier.heads)
        self.info = classifier.info
        self.entry = classifier.entry
        self.work_dir = work_dir
        self._decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)

    def decode(self, path: str) -> np.ndarray:
        """The model's uint8 input for ``path``: the one decode of this request (raises InvalidImageError)."""
        with self._decode_slots:
            try:
                return self.classifier.preprocess(path)
            finally:
                release_memory()

    def heat_map(self, tensor: np.ndarray, head: str) -> str:
        heat = self.classifier.cam(tensor, head=head)
        views.prune(self.work_dir, KEEP_FILES_S)
        return str(views.save_png(views.enlarge(views.overlay(tensor, heat)), self.work_dir))

    def predict(self, path: str | None, head: str) -> list[Any]:
        if not path:
            return ["", *[None] * len(self.heads), None]
        start = time.perf_counter()
        try:
            tensor = self.decode(path)
        except InvalidImageError as exc:
            message = views.readable_error(str(exc), path)
            gr.Warning(message)
            return [views.error_markdown(message), *[None] * len(self.heads), None]
        prediction = self.classifier.predict(tensor, top_k=3)
        overlay = self.heat_map(tensor, head)
        confidences = views.label_confidences(prediction)
        status = views.status_markdown(prediction, self.info, self.entry, total_ms=(time.perf_counter() - start) * 1000)
        return [status, *[confidences[h] for h in self.heads], overlay]

    def refresh_heat_map(self, path: str | None, head: str) -> str | None:
        if not path:
            return None
        try:
            return self.heat_map(self.decode(path), head)
        except InvalidImageError:
            return None  # predict() already reported this file

    def predict_batch(self, paths: list[str] | None) -> tuple[list[list[Any]], str]:
        paths = list(paths or [])
        if not paths:
            raise gr.Error("Add one or more images first.")
        if len(paths) > MAX_BATCH_IMAGES:
            raise gr.Error(f"{len(paths)} images: the demo takes at most {MAX_BATCH_IMAGES} at once.")
        views.prune(self.work_dir, KEEP_FILES_S)
        items = self._batch_items(paths)
        columns = views.batch_columns(self.heads)
        rows = views.batch_rows(items, [Path(p).name for p in paths], self.heads)
        csv_path = views.write_csv(
            Path(tempfile.mkdtemp(prefix="batch-", dir=self.work_dir)) / "predictions.csv", columns, rows
        )
        return rows, str(csv_path)

    def _batch_items(self, paths: list[str]) -> list[BatchItem]:
        """Each file decoded once through the decode slots, the readable ones predicted together."""
        tensors: dict[int, np.ndarray] = {}
        items: list[BatchItem | None] = [None] * len(paths)
        for position, path in enumerate(paths):
            try:
                tensors[position] = self.decode(path)
            except InvalidImageError as exc:
                items[position] = BatchItem(source=path, error=str(exc))
        predicted = self.classifier.predict_batch(list(tensors.values()), batch_size=32, top_k=1)
        for position, item in zip(tensors, predicted):
            items[position] = BatchItem(source=paths[position], prediction=item.prediction, error=item.error)
        return items  # type: ignore[return-value]


def new_work_dir() -> Path:
    """A private folder for the files the page serves, removed when the process exits."""
    work_dir = Path(tempfile.mkdtemp(prefix="fashion-demo-"))
    atexit.register(shutil.rmtree, work_dir, True)
    return work_dir


def build_app(classifier: Classifier, examples: list[Path] | None = None, work_dir: Path | None = None) -> gr.Blocks:
    """The demo page for a loaded classifier; ``examples`` default to a few committed sample photos.

    ``work_dir`` holds generated heat maps and CSVs; by default a new temporary folder removed at exit.
    """
    heads = list(classifier.heads)
    info = classifier.info
    examples = views.example_images(SAMPLE_DIR) if examples is None else examples
    cam_head = CAM_HEAD if CAM_HEAD in heads else heads[0]
    handlers = Handlers(classifier, work_dir if work_dir is not None else new_work_dir())

    height, width = classifier.input_size
    with gr.Blocks(
        title="fashion-edge demo", analytics_enabled=False, delete_cache=(KEEP_FILES_S, KEEP_FILES_S)
    ) as app:
        gr.Markdown(
            f"## fashion-edge · six attributes of a product photo\n"
            f"Model `{classifier.bundle.manifest.name or classifier.bundle.root.name}` "
            f"({height}x{width} input) on `{info['backend']}` / `{classifier.entry.precision}`."
        )
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column(scale=2):
                    photo = pass_unreadable_files_on(
                        gr.Image(
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "clipboard"],
                            label="Product photo: upload, paste or drop",
                            elem_id="photo",
                            height=340,
                        )
                    )
                    head = gr.Dropdown(heads, value=cam_head, label="Heat map for head", elem_id="cam-head")
                    if examples:
                        gr.Examples(
                            [[str(p)] for p in examples],
                            inputs=[photo],
                            examples_per_page=8,
                            label="Examples from the committed sample",
                        )
                with gr.Column(scale=3):
                    status = gr.Markdown(label="Prediction status", elem_id="status")
                    labels = []
                    for row_heads in (heads[:3], heads[3:]):
                        with gr.Row():
                            labels += [
                                gr.Label(num_top_classes=3, label=h, elem_id=f"head-{h}", min_width=140)
                                for h in row_heads
                            ]
                    heat = gr.Image(
                        label="Class-activation heat map (red = most evidence)",
                        elem_id="heatmap",
                        type="filepath",
                        interactive=False,
                        height=300,
                    )
            photo.change(handlers.predict, [photo, head], [status, *labels, heat], api_name="predict")
            head.change(handlers.refresh_heat_map, [photo, head], [heat], api_name="heat_map")
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", type="filepath", label="Images", elem_id="batch-files")
            run = gr.Button("Predict all", variant="primary", elem_id="batch-run")
            table = gr.Dataframe(
                headers=views.batch_columns(heads), interactive=False, wrap=True, elem_id="batch-table"
            )
            download = gr.File(label="Download CSV", elem_id="batch-csv", interactive=False)
            run.click(handlers.predict_batch, [files], [table, download], api_name="predict_batch")
    return app


def launch(
    app: gr.Blocks,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = 10,
    block: bool = True,
    quiet: bool = False,
) -> str:
    """Serve ``app``; returns its local URL (after the server stops when ``block``)."""
    app.queue(default_concurrency_limit=CONCURRENCY)
    allowed = [str(SAMPLE_DIR / "images")] if (SAMPLE_DIR / "images").is_dir() else []
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        max_file_size=int(max_upload_mb * 1024 * 1024),
        show_error=True,
        ssr_mode=False,
        share=False,
        theme=theme(),
        css=CSS,
        allowed_paths=allowed,
        prevent_thread_lock=not block,
        quiet=quiet,
    )
    return url
