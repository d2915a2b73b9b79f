"""``fashion-predict``: predict the six attributes of product photos, in-process or on fashion-serve servers.

    fashion-predict models/fashion-effnetb0 shirt.jpg photos/ --format csv --top-k 3 --output predictions.csv
    fashion-predict --server http://10.0.0.5:8000,http://10.0.0.6:8000 photos/ --format jsonl -o tags.jsonl
    fashion-predict --check models/fashion-effnetb0

Every input gets a row: a folder contributes every entry in it (recursively; hidden names starting with
"." are skipped and counted), and an entry that is not a readable image (a FIFO, a device, a broken link,
a text file...) gets a row with the reason instead of a prediction. Local and ``--server`` prediction
run through one streaming path: rows are written as they are produced, into ``OUTPUT.partial``
renamed to ``OUTPUT`` at the end, so Ctrl-C, SIGTERM, SIGKILL or a late error keep the rows done;
``--resume`` (CSV and JSON Lines) continues a run from its ``.partial`` file.

Exit status: 0 all predicted; 1 some inputs failed (the others are written); 2 unusable options,
output path or bundle (checked before any prediction); 4 backend, hardware or servers missing;
130 Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from tqdm import tqdm

from .cli_support import CONTEXT_SETTINGS, LoadOptions, load_classifier, model_options, run_cli
from .errors import BundleError, Interrupted, PartialFailure
from .inputs import IMAGE_SUFFIXES, MAX_FILE_BYTES, PLUGIN_SUFFIXES, expand_inputs, precheck
from .manifest import MANIFEST
from .results import BatchItem, Predictor

__all__ = ["IMAGE_SUFFIXES", "main", "precheck"]

#: Text a spreadsheet runs as a formula when a cell starts with it (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Batches predicted between two writes of the output (rows are flushed after each group).
BATCHES_PER_WRITE = 4
#: Output formats; ``--resume`` works for those whose file stays valid when cut after any row.
FORMATS = ("json", "jsonl", "csv")
RESUMABLE = ("jsonl", "csv")


def spreadsheet_safe(value: Any) -> Any:
    """Prefix ``'`` to a text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
    tab, CR first), so a file named ``=HYPERLINK(...).jpg`` stays text. Numbers pass unchanged."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (a file name's undecodable bytes, kept by Python as lone
    surrogates) written as ``\\udcXX``, the escape JSON output uses, so every row can be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _explain(item: BatchItem) -> BatchItem:
    suffix = Path(item.source).suffix.lower()
    if item.error and suffix in PLUGIN_SUFFIXES and "not a recognised image format" in item.error:
        return BatchItem(
            source=item.source,
            error=f"{item.error} ({suffix} photos need the optional {PLUGIN_SUFFIXES[suffix]} package)",
        )
    return item


def _enable_plugins() -> None:
    """HEIC/HEIF decode when the optional pillow-heif package is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


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
    row: list[Any] = [printable(item.source), printable(item.error or "")]
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


def csv_source(path: str) -> str:
    """The source cell ``csv_row`` writes for ``path`` (how ``--resume`` recognises the rows done)."""
    return str(spreadsheet_safe(printable(path)))


class RowWriter:
    """Writes rows as they come: CSV lines, JSON Lines (one object per line), or the items of one JSON array
    (valid JSON once closed). ``resumed`` rows are already in the file (``--resume``): no header again."""

    def __init__(self, handle: IO[str], fmt: str, top_k: int, resumed: int | None = None):
        self.handle, self.fmt, self.top_k = handle, fmt, top_k
        self.rows = resumed or 0
        self._heads: list[str] | None = None if resumed is None else []

    def write(self, items: Sequence[BatchItem], heads: Sequence[str]) -> None:
        if self.fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if self._heads is None:
                writer.writerow(csv_columns(heads, self.top_k))
            writer.writerows(csv_row(item, heads, self.top_k) for item in items)
            text = buffer.getvalue()
        elif self.fmt == "jsonl":
            text = "".join(json.dumps(item.to_dict()) + "\n" for item in items)
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
        elif self.fmt == "jsonl":
            pass
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


@dataclass
class Resumed:
    """What an earlier run left in ``OUTPUT.partial``: its rows, how many failed, their source cells."""

    rows: int = 0
    failed: int = 0
    sources: set[str] = field(default_factory=set)


def read_partial(partial: Path, fmt: str, heads: Sequence[str], top_k: int) -> Resumed:
    """The rows of an interrupted run, for ``--resume``. A last row cut short (SIGKILL mid-write) is dropped
    from the file; a file written with other columns or format is refused (BundleError-free: a usage error)."""
    data = partial.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with partial.open("r+b") as handle:
            handle.truncate(len(complete))
    text = complete.decode("utf-8")
    if not text:
        return Resumed()
    resumed = Resumed()
    try:
        if fmt == "csv":
            rows = list(csv.reader(io.StringIO(text)))
            if rows[0] != csv_columns(heads, top_k):
                raise ValueError("its columns differ from this run's (other --top-k, or another model)")
            for row in rows[1:]:
                resumed.sources.add(row[0])
                resumed.failed += bool(row[1])
            resumed.rows = len(rows) - 1
        else:
            for line in text.splitlines():
                record = json.loads(line)
                resumed.sources.add(record["source"])
                resumed.failed += "error" in record
                resumed.rows += 1
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise click.UsageError(
            f"{partial} cannot be resumed as --format {fmt} ({exc}); remove it or rerun without --resume"
        ) from None
    return resumed


def stream_items(
    predictor: Predictor,
    paths: list[str],
    from_folder: set[str],
    batch_size: int,
    top_k: int,
    consistent: bool,
    tta: bool = False,
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[list[BatchItem]]:
    """Groups of BATCHES_PER_WRITE batches of items, in input order, from a local ``Classifier`` or a
    ``RemoteClassifier`` alike; prechecked failures never reach the model."""
    group = batch_size * BATCHES_PER_WRITE
    for first in range(0, len(paths), group):
        chunk = paths[first : first + group]
        reasons = [precheck(path, path in from_folder, max_bytes) for path in chunk]
        runnable = [path for path, reason in zip(chunk, reasons) if reason is None]
        predicted = iter(
            predictor.predict_batch(runnable, batch_size=batch_size, top_k=top_k, consistent=consistent, tta=tta)
            if runnable
            else []
        )
        yield [
            _explain(next(predicted)) if reason is None else BatchItem(source=path, error=reason)
            for path, reason in zip(chunk, reasons)
        ]


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the rows done are kept and the run says where."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (no-op elsewhere)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    groups: Iterator[list[BatchItem]],
    heads: Sequence[str],
    total: int,
    fmt: str,
    top_k: int,
    output: Path | None,
    progress_bar: bool = True,
    resumed: Resumed | None = None,
) -> list[BatchItem]:
    """Write each group as it comes; on Ctrl-C, SIGTERM or an error keep what was written and say where."""
    target = partial_path(output) if output else None
    mode = "a" if resumed is not None else "w"
    handle = target.open(mode, encoding="utf-8", newline="") if target else sys.stdout
    writer = RowWriter(handle, fmt, top_k, resumed=resumed.rows if resumed is not None else None)
    before = writer.rows
    failed: list[BatchItem] = []
    where = str(target) if target else "standard output"
    again = " (rerun the same command with --resume to finish)" if target and fmt in RESUMABLE else ""
    try:
        with tqdm(
            total=total, unit="img", desc="predicting", file=sys.stderr, disable=total < 2 or not progress_bar
        ) as progress:
            for items in groups:
                writer.write(items, heads)
                failed += [item for item in items if not item.ok]
                progress.update(len(items))
    except KeyboardInterrupt as exc:
        _finish(writer, heads, handle, target)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        raise Interrupted(
            f"{what} after {writer.rows - before} of {total} inputs; the {writer.rows} rows done are in {where}{again}"
        ) from None
    except BaseException:
        _finish(writer, heads, handle, target)
        if writer.rows:
            click.echo(f"{writer.rows} rows were written to {where}{again} before this error:", err=True)
        raise
    _finish(writer, heads, handle, target)
    if output and target:
        os.replace(target, output)
    return failed


def _finish(writer: RowWriter, heads: Sequence[str], handle: IO[str], target: Path | None) -> None:
    try:
        writer.close(heads)
    finally:
        if target is not None:
            handle.close()


def _is_bundle(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))


def check_arguments(bundle: str | None, inputs: Sequence[str], server: str | None) -> list[str]:
    """The inputs to predict; a usage error when the arguments cannot be meant as given (swapped BUNDLE and
    input, a bundle given with --server)."""
    if server:
        arguments = [a for a in (bundle, *inputs) if a is not None]
        bundles = [a for a in arguments if _is_bundle(a)]
        if bundles:
            raise click.UsageError(
                f"{bundles[0]} is a model bundle; with --server the served model predicts, so give only the "
                "photos (leave the bundle out, or drop --server to predict in-process)"
            )
        if not arguments:
            raise click.UsageError("give one or more INPUTS to send to --server")
        return arguments
    if bundle is None or not inputs:
        raise click.UsageError("give a BUNDLE and one or more INPUTS (or --check BUNDLE)")
    if not _is_bundle(bundle):
        swapped = next((a for a in inputs if _is_bundle(a)), None)
        if swapped is not None:
            raise click.UsageError(
                f"the arguments look swapped: {swapped} is the model bundle and {bundle} is not; "
                f"BUNDLE comes first: fashion-predict {swapped} {bundle} ..."
            )
        if not os.path.isdir(bundle):
            what = "no such file or folder" if not os.path.lexists(bundle) else "a file, not a folder"
            raise click.BadParameter(f"{bundle!r} is not a bundle directory ({what})", param_hint="'BUNDLE'")
    return list(inputs)


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``--header "Name: value"`` options as a dict (a usage error names a malformed one)."""
    headers: dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip() or any(c in name for c in " \t\r\n") or any(c in text for c in "\r\n"):
            raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="'--header'")
        headers[name.strip()] = text.strip()
    return headers


def open_predictor(
    bundle: str | None,
    server: str | None,
    *,
    concurrency: int,
    retries: int,
    timeout: float,
    headers: dict[str, str],
    load_options: LoadOptions | None = None,
) -> Predictor:
    """A ``RemoteClassifier`` on ``server``, else the bundle's ``Classifier``: one shape for the streaming path."""
    if server:
        from .remote import RemoteClassifier

        remote = RemoteClassifier(server, concurrency=concurrency, retries=retries, timeout=timeout, headers=headers)
        for failover in remote.failovers:  # servers already unusable before the first image
            click.echo(f"server down at start: {failover.reason}", err=True)
        return remote
    assert bundle is not None
    return load_classifier(bundle, load_options)


@run_cli
@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundle", required=False)
@click.argument("inputs", nargs=-1)
@click.option(
    "--check",
    "check",
    is_flag=True,
    help="Only check BUNDLE (files, sha256, schema, vocabularies, labels inside each ONNX file, each "
    "artifact's outputs) and list its problems; exit 2 when there are any.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="json: one array; jsonl: one object per line, streamed; csv: one row per input.",
)
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
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run: keep the rows of OUTPUT.partial and predict only the inputs without "
    "one (needs --output and --format csv or jsonl).",
)
@click.option("--verbose", "-v", is_flag=True, help="Say which artifact and backend run, and why, on stderr.")
@click.option(
    "--server",
    default=None,
    metavar="URL[,URL...]",
    help="Predict on fashion-serve (Triton) servers (http:// or https://) instead of in-process; then every "
    "argument is an input (no BUNDLE) and backend options are the server's. Several URLs share the load.",
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
    help="With --server: times one image is retried on another server after a failed request (no connection, "
    "HTTP 500/502/503/504, past --timeout).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --server: seconds one request may take in all (connect, send, the whole answer) before it is "
    "retried on another server  [default: 30]",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="With --server: an HTTP header sent with every request, e.g. 'Authorization: Bearer TOKEN'; repeatable.",
)
def main(
    bundle,
    inputs,
    check,
    fmt,
    top_k,
    load_options: LoadOptions,
    batch_size,
    consistent,
    tta,
    output,
    resume,
    verbose,
    server,
    concurrency,
    retries,
    timeout,
    headers,
):
    """Predict gender, categories, article type, colour and season for images in INPUTS (files or folders).

    BUNDLE is the model bundle; with --server URL it is left out and the server's model is used.
    Exit status: 0 all predicted, 1 some inputs failed (the rest written), 2 unusable options, output or
    bundle, 4 backend or servers missing, 130 interrupted by Ctrl-C or SIGTERM (rows done are kept; the
    message says where; --resume finishes the run).
    """
    from .remote import DEFAULT_TIMEOUT_S

    if check:
        return check_command(bundle, inputs)
    arguments = check_arguments(bundle, inputs, server)
    if tta and server:
        raise click.UsageError("--tta runs in-process only; it cannot be combined with --server")
    if not server and (timeout is not None or headers):
        raise click.UsageError("--timeout and --header apply to --server only")
    if resume and (output is None or fmt not in RESUMABLE):
        raise click.UsageError("--resume needs --output and --format csv or jsonl (files that stay valid when cut)")
    out_path = check_output(output) if output else None
    paths, skipped = expand_inputs(arguments)
    if not paths:
        raise click.UsageError("no files found in the given inputs")
    from_folder = set(paths) - set(arguments)
    for line in skipped:
        click.echo(line, err=True)
    _enable_plugins()

    predictor = open_predictor(
        None if server else bundle,
        server,
        concurrency=concurrency,
        retries=retries,
        timeout=timeout or DEFAULT_TIMEOUT_S,
        headers=parse_headers(headers),
        load_options=load_options,
    )
    try:
        if verbose:
            click.echo(f"running: {json.dumps(predictor.info, default=str)}", err=True)
        resumed = None
        todo = paths
        if resume and out_path is not None and partial_path(out_path).is_file():
            resumed = read_partial(partial_path(out_path), fmt, predictor.heads, top_k)
            key = csv_source if fmt == "csv" else str
            todo = [path for path in paths if key(path) not in resumed.sources]
            click.echo(f"resuming: {resumed.rows} rows kept from {partial_path(out_path)}, {len(todo)} to go", err=True)
        elif out_path is not None and partial_path(out_path).exists():
            click.echo(f"starting over: {partial_path(out_path)} is replaced (--resume keeps its rows)", err=True)
        with sigterm_as_interrupt():
            groups = stream_items(predictor, todo, from_folder, batch_size, top_k, consistent, tta)
            failed = run(groups, predictor.heads, len(todo), fmt, top_k, out_path, resumed=resumed)
    finally:
        predictor.close()
        for line in getattr(predictor, "report", lambda: [])():
            click.echo(line, err=True)
    for item in failed:
        click.echo(f"failed: {printable(item.error or '')}", err=True)
    earlier = resumed.failed if resumed is not None else 0
    if failed or earlier:
        raise PartialFailure(f"{len(failed) + earlier} of {len(paths)} inputs failed")


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
