"""fashion-demo: a local Gradio page that predicts the six attributes of a product photo.

Only ``fashion.runtime`` runs the model (no TensorFlow in this process). The server binds
127.0.0.1 by default, caps upload size, sends no analytics and needs no internet.
"""

from __future__ import annotations

import os

# Gradio reads these when it is imported: no telemetry, no version check over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402
import gradio as gr  # noqa: E402

from fashion.runtime import Classifier, FashionError, InvalidImageError  # noqa: E402

from . import views  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_NAME = Path("models") / "fashion-effnetb0"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
CAM_HEAD = "articleType"
CONCURRENCY = 4  # simultaneous predictions; the ONNX Runtime session is thread-safe
MAX_BATCH_IMAGES = 256
KEEP_FILES_S = 3600  # generated heat maps are deleted after an hour
# System fonts only: the page must render with no internet (no web-font downloads).
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])
# Catalogue photos are small (60x80); show the upload as large as its box allows.
CSS = "#photo img { width: 100%; height: 100%; object-fit: contain; image-rendering: auto; }"


def pass_unreadable_files_on(image_input: gr.Image) -> gr.Image:
    """Make ``image_input`` (type="filepath") hand files Pillow cannot open to our function,
    where the runtime's typed error explains the problem in the page instead of a bare "Error".

    Wrapping the instance's method, because subclassing a Gradio component makes Gradio write
    a ``.pyi`` stub next to this module at import time.
    """
    original = image_input.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except (OSError, ValueError, SyntaxError):
            if payload is None or getattr(payload, "path", None) is None:
                raise
            return str(payload.path)

    image_input.preprocess = preprocess
    return image_input


def build_app(classifier: Classifier, examples: list[Path] | None = None) -> gr.Blocks:
    """The demo page for a loaded classifier; ``examples`` default to a few committed sample photos."""
    heads = list(classifier.heads)
    info = classifier.info
    examples = views.example_images(SAMPLE_DIR) if examples is None else examples
    cam_head = CAM_HEAD if CAM_HEAD in heads else heads[0]

    work_dir = Path(tempfile.mkdtemp(prefix="fashion-demo-"))  # heat maps and CSVs handed to Gradio

    def heat_map(path: str | None, head: str) -> str | None:
        if not path:
            return None
        heat = classifier.cam(path, head=head)
        views.prune(work_dir, KEEP_FILES_S)
        return str(views.save_png(views.enlarge(views.overlay(classifier.preprocess(path), heat)), work_dir))

    def predict(path: str | None, head: str):
        if not path:
            return ["", *[None] * len(heads), None]
        try:
            prediction = classifier.predict(path, top_k=3)
            overlay = heat_map(path, head)
        except InvalidImageError as exc:
            message = views.readable_error(str(exc), path)
            gr.Warning(message)
            return [views.error_markdown(message), *[None] * len(heads), None]
        confidences = views.label_confidences(prediction)
        return [views.status_markdown(prediction, info), *[confidences[h] for h in heads], overlay]

    def refresh_heat_map(path: str | None, head: str):
        try:
            return heat_map(path, head)
        except InvalidImageError:
            return None  # predict() already reported this file

    def predict_batch(paths: list[str] | None):
        paths = list(paths or [])
        if not paths:
            raise gr.Error("Add one or more images first.")
        if len(paths) > MAX_BATCH_IMAGES:
            raise gr.Error(f"{len(paths)} images: the demo takes at most {MAX_BATCH_IMAGES} at once.")
        views.prune(work_dir, KEEP_FILES_S)
        items = classifier.predict_batch(paths, batch_size=32, top_k=1)
        columns = views.batch_columns(heads)
        rows = views.batch_rows(items, [Path(p).name for p in paths], heads)
        csv_path = views.write_csv(Path(tempfile.mkdtemp(prefix="batch-", dir=work_dir)) / "predictions.csv",
                                   columns, rows)
        return rows, str(csv_path)

    height, width = classifier.input_size
    with gr.Blocks(title="fashion-edge demo", analytics_enabled=False,
                   delete_cache=(KEEP_FILES_S, KEEP_FILES_S)) as app:
        gr.Markdown(f"## fashion-edge · six attributes of a product photo\n"
                    f"Model `{classifier.bundle.manifest.get('name', classifier.bundle.root.name)}` "
                    f"({height}x{width} input) on `{info['backend']}` / `{info['precision']}`.")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column(scale=2):
                    photo = pass_unreadable_files_on(gr.Image(
                        type="filepath", image_mode=None, sources=["upload", "clipboard"],
                        label="Product photo: upload, paste or drop", elem_id="photo", height=340))
                    head = gr.Dropdown(heads, value=cam_head, label="Heat map for head", elem_id="cam-head")
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[photo], examples_per_page=8,
                                    label="Examples from the committed sample")
                with gr.Column(scale=3):
                    status = gr.Markdown(label="Prediction status", elem_id="status")
                    labels = []
                    for row_heads in (heads[:3], heads[3:]):
                        with gr.Row():
                            labels += [gr.Label(num_top_classes=3, label=h, elem_id=f"head-{h}", min_width=140)
                                       for h in row_heads]
                    heat = gr.Image(label="Class-activation heat map (red = most evidence)", elem_id="heatmap",
                                    type="filepath", interactive=False, height=300)
            photo.change(predict, [photo, head], [status, *labels, heat], api_name="predict")
            head.change(refresh_heat_map, [photo, head], [heat], api_name="heat_map")
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", type="filepath", label="Images", elem_id="batch-files")
            run = gr.Button("Predict all", variant="primary", elem_id="batch-run")
            table = gr.Dataframe(headers=views.batch_columns(heads), interactive=False, wrap=True,
                                 elem_id="batch-table")
            download = gr.File(label="Download CSV", elem_id="batch-csv", interactive=False)
            run.click(predict_batch, [files], [table, download], api_name="predict_batch")
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = 10,
           block: bool = True, quiet: bool = False) -> str:
    """Serve ``app``; returns its local URL (after the server stops when ``block``)."""
    app.queue(default_concurrency_limit=CONCURRENCY)
    allowed = [str(SAMPLE_DIR / "images")] if (SAMPLE_DIR / "images").is_dir() else []
    _, url, _ = app.launch(
        server_name=host, server_port=port, max_file_size=int(max_upload_mb * 1024 * 1024),
        show_error=True, ssr_mode=False, share=False, theme=THEME, css=CSS, allowed_paths=allowed,
        prevent_thread_lock=not block, quiet=quiet,
    )
    return url


def resolve_bundle(bundle: Path | None) -> Path:
    """``bundle``, or the shipped model next to the code or under the working directory."""
    candidates = [bundle] if bundle is not None else [REPO_ROOT / BUNDLE_NAME, Path.cwd() / BUNDLE_NAME]
    for candidate in candidates:
        if (candidate / "bundle.json").is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise click.ClickException(
        f"no model bundle (bundle.json) at {searched}. Pass --bundle PATH to a directory written by "
        f"fashion-export, or train and export the shipped model into {BUNDLE_NAME}."
    )


@click.command()
@click.option("--bundle", type=click.Path(path_type=Path, file_okay=False), default=None,
              help=f"Model bundle directory [default: the shipped {BUNDLE_NAME}].")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto",
              show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the demo to your network.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Largest file the page accepts.")
def main(bundle: Path | None, backend: str, precision: str, host: str, port: int, max_upload_mb: float) -> None:
    """Serve the fashion-edge demo page (Gradio) on HOST:PORT."""
    bundle_dir = resolve_bundle(bundle)
    try:
        classifier = Classifier.load(bundle_dir, backend=backend, precision=precision)
    except (FashionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fashion-demo: {bundle_dir} on {classifier.info['backend']} "
               f"({classifier.info['precision']}, {', '.join(classifier.info['providers'])})")
    try:
        launch(build_app(classifier), host=host, port=port, max_upload_mb=max_upload_mb)
    finally:
        classifier.close()


if __name__ == "__main__":
    main()
