"""``fashion-predict``: predict the six attributes of product photos from the command line.

    fashion-predict models/fashion-effnetb0 shirt.jpg photos/ --format csv --top-k 3 --output predictions.csv
    fashion-predict --check models/fashion-effnetb0

Every input gets a row: a folder contributes every file in it (recursively; hidden names starting
with "." are skipped and counted), and a file that is not a readable image gets a row with the
reason instead of a prediction. Rows are written as they are produced, into ``OUTPUT.partial``
renamed to ``OUTPUT`` at the end, so Ctrl-C or a late error keeps the rows done and says where.

Exit status: 0 all predicted; 1 some inputs failed (the others are written); 2 unusable options,
output path or bundle (checked before any prediction); 4 backend or hardware missing; 130 Ctrl-C.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import click
from tqdm import tqdm

from .cli_support import CONTEXT_SETTINGS, load_classifier, model_options, run_cli
from .errors import BundleError, Interrupted, PartialFailure
from .results import BatchItem

#: Suffixes a folder scan expects to be photos; any other file in a folder gets an error row.
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".gif",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".avif",
    ".heic",
    ".heif",
}
#: Formats Pillow reads only with a plugin installed (``pip install pillow-heif``).
PLUGIN_SUFFIXES = {".heic": "pillow-heif", ".heif": "pillow-heif"}
#: Text a spreadsheet runs as a formula when a cell starts with it (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Batches predicted between two writes of the output (rows are flushed after each group).
BATCHES_PER_WRITE = 4


def spreadsheet_safe(value: Any) -> Any:
    """Prefix ``'`` to a text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
    tab, CR first), so a file named ``=HYPERLINK(...).jpg`` stays text. Numbers pass unchanged."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


# -- inputs ---------------------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], int]:
    """(paths, hidden files skipped): files as given (so a bad one is reported), folders as every
    non-hidden file inside them, sorted."""
    paths: list[str] = []
    hidden = 0
    for item in inputs:
        folder = Path(item)
        if not folder.is_dir():
            paths.append(item)
            continue
        for path in sorted(folder.rglob("*")):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                hidden += path.is_file()
            elif path.is_file():
                paths.append(str(path))
    return paths, hidden


def precheck(path: str, from_folder: bool) -> str | None:
    """The reason ``path`` cannot be a photo, known without decoding it (None: let the runtime try)."""
    suffix = Path(path).suffix.lower()
    if from_folder and suffix not in IMAGE_SUFFIXES:
        return f"{path}: not an image file (type '{suffix or 'none'}'); images are {', '.join(sorted(IMAGE_SUFFIXES))}"
    if Path(path).is_dir():
        return f"{path}: is a directory, not an image file"
    if Path(path).is_file() and not os.access(path, os.R_OK):
        return f"{path}: permission denied (not readable by this user)"
    return None


def _enable_plugins() -> None:
    """HEIC/HEIF decode when the optional pillow-heif package is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def _explain(item: BatchItem) -> BatchItem:
    suffix = Path(item.source).suffix.lower()
    if item.error and suffix in PLUGIN_SUFFIXES and "not a recognised image format" in item.error:
        return BatchItem(
            source=item.source,
            error=f"{item.error} ({suffix} photos need the optional {PLUGIN_SUFFIXES[suffix]} package)",
        )
    return item


# -- outputs ----------------------------------------------------------------------------------------------


def csv_columns(heads: Sequence[str], top_k: int) -> list[str]:
    """source, error, then per head: the label and its confidence, and the top-k labels with probabilities."""
    columns = ["source", "error"]
    for head in heads:
        columns += [head, f"{head}_confidence"]
        for rank in range(1, top_k + 1):
            columns += [f"{head}_top{rank}", f"{head}_top{rank}_probability"]
    return columns


def csv_row(item: BatchItem, heads: Sequence[str], top_k: int) -> list[Any]:
    row: list[Any] = [item.source, item.error or ""]
    for head in heads:
        if item.prediction is None:
            row += [""] * (2 + 2 * top_k)
            continue
        p = item.prediction.heads[head]
        row += [p.label, f"{p.confidence:.6f}"]
        ranked = list(p.top_k)[:top_k]
        for label, prob in ranked:
            row += [label, f"{prob:.6f}"]
        row += [""] * (2 * (top_k - len(ranked)))  # a head with fewer classes than k
    return [spreadsheet_safe(value) for value in row]


class RowWriter:
    """Writes rows as they come: CSV lines, or the items of one JSON array (valid JSON once closed)."""

    def __init__(self, handle: IO[str], fmt: str, top_k: int):
        self.handle, self.fmt, self.top_k = handle, fmt, top_k
        self.rows = 0
        self._heads: list[str] | None = None

    def write(self, items: Sequence[BatchItem], heads: Sequence[str]) -> None:
        if self.fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if self._heads is None:
                writer.writerow(csv_columns(heads, self.top_k))
            writer.writerows(csv_row(item, heads, self.top_k) for item in items)
            text = buffer.getvalue()
        else:
            parts = ["[" if self._heads is None else ""]
            for number, item in enumerate(items):
                body = json.dumps(item.to_dict(), indent=2).replace("\n", "\n  ")
                parts.append(("\n  " if self.rows + number == 0 else ",\n  ") + body)
            text = "".join(parts)
        self._heads = list(heads)
        self.handle.write(text)
        self.handle.flush()
        self.rows += len(items)

    def close(self, heads: Sequence[str]) -> None:
        if self.fmt == "csv":
            if self._heads is None:
                self.handle.write(",".join(csv_columns(heads, self.top_k)) + "\r\n")
        else:
            self.handle.write(("[" if self._heads is None else "") + ("\n]\n" if self.rows else "]\n"))
        self.handle.flush()


def check_output(output: str) -> Path:
    """``output`` must be a file path in an existing, writable folder; checked before any work starts."""
    path = Path(output)
    if path.is_dir():
        raise click.BadParameter(f"{output} is a directory; give a file name", param_hint="'--output'")
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(f"folder {folder} does not exist (create it first)", param_hint="'--output'")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.BadParameter(f"{output} is not writable by this user", param_hint="'--output'")
    return path


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


# -- prediction -----------------------------------------------------------------------------------------


def local_items(
    clf,
    paths: list[str],
    from_folder: set[str],
    batch_size: int,
    top_k: int,
    consistent: bool,
    tta: bool = False,
) -> Iterator[list[BatchItem]]:
    """Groups of BATCHES_PER_WRITE batches of items, in input order; prechecked failures never reach the model."""
    group = batch_size * BATCHES_PER_WRITE
    for first in range(0, len(paths), group):
        chunk = paths[first : first + group]
        reasons = [precheck(path, path in from_folder) for path in chunk]
        runnable = [path for path, reason in zip(chunk, reasons) if reason is None]
        predicted = iter(
            clf.predict_batch(runnable, batch_size=batch_size, top_k=top_k, consistent=consistent, tta=tta)
        )
        yield [
            _explain(next(predicted)) if reason is None else BatchItem(source=path, error=reason)
            for path, reason in zip(chunk, reasons)
        ]


def run(
    groups: Iterator[list[BatchItem]],
    heads_of,
    total: int,
    fmt: str,
    top_k: int,
    output: Path | None,
    progress_bar: bool = True,
) -> list[BatchItem]:
    """Write each group as it comes; on Ctrl-C or an error keep what was written and say where."""
    target = partial_path(output) if output else None
    handle = target.open("w", encoding="utf-8", newline="") if target else sys.stdout
    writer = RowWriter(handle, fmt, top_k)
    failed: list[BatchItem] = []
    where = str(target) if target else "standard output"
    try:
        with tqdm(
            total=total, unit="img", desc="predicting", file=sys.stderr, disable=total < 2 or not progress_bar
        ) as progress:
            for items in groups:
                writer.write(items, heads_of())
                failed += [item for item in items if not item.ok]
                progress.update(len(items))
    except KeyboardInterrupt:
        _finish(writer, heads_of, handle, target)
        raise Interrupted(
            f"interrupted after {writer.rows} of {total} inputs; the {writer.rows} rows done are in {where}"
        ) from None
    except BaseException:
        _finish(writer, heads_of, handle, target)
        if writer.rows:
            click.echo(f"{writer.rows} of {total} rows were written to {where} before this error:", err=True)
        raise
    _finish(writer, heads_of, handle, target)
    if output and target:
        os.replace(target, output)
    return failed


def _finish(writer: RowWriter, heads_of, handle: IO[str], target: Path | None) -> None:
    try:
        writer.close(heads_of())
    finally:
        if target is not None:
            handle.close()


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", required=False)
@click.argument("inputs", nargs=-1)
@click.option(
    "--check",
    "check",
    is_flag=True,
    help="Only check BUNDLE (files, sha256, schema, vocabularies, each artifact's outputs) and list "
    "its problems; exit 2 when there are any.",
)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Classes listed per head (CSV: that many label/probability columns per head).",
)
@model_options
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--consistent",
    is_flag=True,
    help="Decode masterCategory/subCategory/articleType as a combination seen in training.",
)
@click.option(
    "--tta",
    is_flag=True,
    help="average with the mirrored photo: about 2x model time; see README for its measured gain",
)
@click.option(
    "--output",
    "-o",
    default=None,
    help="Write here instead of standard output (rows go to OUTPUT.partial until the run ends).",
)
@click.option("--verbose", "-v", is_flag=True, help="Say which artifact and backend run, and why, on stderr.")
@click.option(
    "--server",
    default=None,
    metavar="URL[,URL...]",
    help="Predict on fashion-serve (Triton) servers instead of in-process; then every argument is an "
    "input (no BUNDLE) and backend options are the server's. Several URLs share the load.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests in flight at once with --server.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="With --server: times one image is retried on another server after a connection error.",
)
def main(
    bundle,
    inputs,
    check,
    fmt,
    top_k,
    backend,
    precision,
    providers,
    allow_fallback,
    threads,
    batch_size,
    consistent,
    tta,
    output,
    verbose,
    server,
    concurrency,
    retries,
):
    """Predict gender, categories, article type, colour and season for images in INPUTS (files or folders).

    BUNDLE is the model bundle; with --server URL it is left out and the server's model is used.
    Exit status: 0 all predicted, 1 some inputs failed (the rest written), 2 unusable options, output or
    bundle, 4 backend missing, 130 interrupted (rows done are kept; the message says where).
    """
    if check:
        return check_command(bundle, inputs)
    arguments = [bundle, *inputs] if server else list(inputs)
    if bundle is None or (not server and not inputs):
        raise click.UsageError("give a BUNDLE and one or more INPUTS (or --check BUNDLE)")
    if tta and server:
        raise click.UsageError("--tta runs in-process only; it cannot be combined with --server")
    out_path = check_output(output) if output else None
    paths, hidden = expand_inputs(arguments)
    from_folder = {p for p in paths if p not in arguments}
    if not paths:
        raise click.UsageError("no files found in the given inputs")
    if hidden:
        click.echo(f"skipped {hidden} hidden file(s) in the given folders (names starting with '.')", err=True)
    _enable_plugins()

    if server:
        from .remote import predict_remote

        items, heads = predict_remote(
            server,
            paths,
            top_k=top_k,
            consistent=consistent,
            concurrency=concurrency,
            retries=retries,
            reason_not_to_send=lambda path: precheck(path, path in from_folder),
        )
        items = [_explain(item) for item in items]
        failed = run(iter([items]), lambda: heads, len(paths), fmt, top_k, out_path, progress_bar=False)
    else:
        if not Path(bundle).is_dir():
            raise click.BadParameter(f"{bundle!r} is not a bundle directory", param_hint="'BUNDLE'")
        clf = load_classifier(
            bundle,
            backend=backend,
            precision=precision,
            providers=list(providers) or None,
            threads=threads,
            allow_fallback=allow_fallback,
        )
        with clf:
            if verbose:
                click.echo(f"running: {json.dumps(clf.info, default=str)}", err=True)
            groups = local_items(clf, paths, from_folder, batch_size, top_k, consistent, tta)
            failed = run(groups, lambda: clf.heads, len(paths), fmt, top_k, out_path)
    for item in failed:
        click.echo(f"failed: {item.error}", err=True)
    if failed:
        raise PartialFailure(f"{len(failed)} of {len(paths)} inputs failed")


def check_command(bundle: str | None, inputs: Sequence[str]) -> None:
    """``--check BUNDLE``: every problem of the bundle, one per line; exit 2 when there is any."""
    from .bundle import check_bundle

    if bundle is None or inputs:
        raise click.UsageError("--check takes exactly one BUNDLE and no inputs")
    problems = check_bundle(bundle)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        raise BundleError(f"{bundle}: {len(problems)} problem(s) found")
    click.echo(f"{bundle}: OK (files, sha256, schema, vocabularies and artifact outputs checked)")


if __name__ == "__main__":  # pragma: no cover
    main()
