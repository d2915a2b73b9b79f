"""The data options every command that reads labelled images shares, parsed into one ``DataChoice``.

One spelling everywhere (Polygraphy's ``tools/args`` idea)::

    --data DIR         the Kaggle-layout folder (styles.csv + images/)
    --split-file FILE  the id,split CSV
    --split NAME       the part of it: train, val or test
    --limit N          a seeded sample of N images

    @data_options(split="test", limit=True, bundle_arg="bundle")
    def main(bundle, data_choice: DataChoice, ...):
        split_file = data_choice.resolved_split_file()   # --split-file, else the bundle's, else the default

A split file given where a split name belongs (``--split some/split.csv``, the spelling before issue 22) is a
usage error (exit 2) that says ``use --split-file FILE``; so is ``--split`` on a command without a split name.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .paths import resolve_data_dir, resolve_split_file

F = TypeVar("F", bound=Callable[..., Any])

#: The parts of a split file.
SPLIT_NAMES = ("train", "val", "test")
#: The parameter name under which ``data_options`` hands the command its ``DataChoice``.
DATA_CHOICE = "data_choice"
_PARAMS = ("data_dir", "split_file", "split", "limit")
_MOVED = "for the id,split CSV (--split NAME is the part: train, val or test)"


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """What the data options resolved to.

    ``split_file`` is the file given with ``--split-file`` (None: not given); ``recorded_split_file`` is the one
    the bundle recorded at training (``Bundle.manifest.recorded_split_file``), read when the command names its
    bundle argument; ``split_explicit`` says the user typed ``--split`` (not its default).
    """

    data_dir: Path | None = None
    split_file: Path | None = None
    split: str | None = None
    limit: int | None = None
    split_explicit: bool = False
    recorded_split_file: str | None = None
    bundle_root: Path | None = None

    def with_bundle(self, bundle: Any) -> DataChoice:
        """The same choice with ``bundle``'s recorded split file (a ``Bundle`` from ``load_bundle``)."""
        return dataclasses.replace(
            self, recorded_split_file=bundle.manifest.recorded_split_file, bundle_root=Path(bundle.root)
        )

    def resolved_data_dir(self) -> Path:
        """``--data``, else $FASHION_SHARED_DATA, else the shared dataset (``fashion.data.paths``)."""
        return resolve_data_dir(self.data_dir)

    def resolved_split_file(self) -> Path:
        """``--split-file``, else the split file the bundle recorded, else the committed default (DataError if
        none exists; relative names are tried from here, the repository root and the bundle folder)."""
        bases = [self.bundle_root] if self.bundle_root is not None else []
        return resolve_split_file(self.split_file, self.recorded_split_file, bases=bases, option="--split-file")


def looks_like_file(value: str) -> bool:
    """A value meant as a split *file*: it ends in .csv or names an existing file."""
    return value.lower().endswith(".csv") or os.path.isfile(value)


class SplitName(click.Choice):
    """``--split NAME``: train, val or test; a file there gets the message that it moved to ``--split-file``."""

    name = "split"

    def __init__(self) -> None:
        super().__init__(list(SPLIT_NAMES))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value not in SPLIT_NAMES and looks_like_file(value):
            self.fail(f"{value!r} is a file: use --split-file FILE {_MOVED}", param, ctx)
        return super().convert(value, param, ctx)


def _refuse_old_split(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        raise click.BadParameter(f"this command reads no split name; use --split-file FILE {_MOVED}", ctx, param)


def _refuse_subset(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        raise click.BadParameter(f"--subset is now --split NAME (train, val or test); use --split {value}", ctx, param)


def data_options(
    *,
    data: str | None = "optional",
    data_help: str = "Kaggle-layout folder (styles.csv + images/).",
    split_file: str | None = "optional",
    split_file_default: str | os.PathLike[str] | None = None,
    split_file_help: str = "Split CSV (id,split).",
    split: str | None = None,
    split_help: str = "Part of the split file to use.",
    limit: bool = False,
    limit_help: str = "A seeded sample of N images (the same ones on every run).",
    bundle_arg: str | None = None,
    old_subset: bool = False,
) -> Callable[[F], F]:
    """Add ``--data``, ``--split-file``, ``--split`` and ``--limit`` (as asked) and pass one ``DataChoice``.

    ``data`` / ``split_file``: "required", "optional" or None (no such option). ``split``: the default split
    name, giving the command ``--split NAME``; None gives it a hidden ``--split`` that only says where a split
    file goes now. ``bundle_arg``: the command's bundle argument, whose recorded split file the choice
    carries (read without hashing; an unreadable bundle is left for the command to report).
    ``old_subset``: a hidden ``--subset`` that says it is now ``--split``.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name, None) for name in _PARAMS}
            kwargs.pop("old_subset", None)
            ctx = click.get_current_context(silent=True)
            explicit = (
                split is not None
                and ctx is not None
                and ctx.get_parameter_source("split") == click.core.ParameterSource.COMMANDLINE
            )
            choice = DataChoice(
                data_dir=Path(values["data_dir"]) if values["data_dir"] is not None else None,
                split_file=Path(values["split_file"]) if values["split_file"] is not None else None,
                split=values["split"] if split is not None else None,
                limit=values["limit"],
                split_explicit=explicit,
            )
            if bundle_arg is not None and kwargs.get(bundle_arg) is not None:
                choice = _with_recorded(choice, kwargs[bundle_arg])
            kwargs[DATA_CHOICE] = choice
            return fn(*args, **kwargs)

        options: list[Callable[[Any], Any]] = []
        if data is not None:
            options.append(
                click.option(
                    "--data",
                    "data_dir",
                    required=data == "required",
                    type=click.Path(exists=True, file_okay=False),
                    help=data_help,
                )
            )
        if split_file is not None:
            options.append(
                click.option(
                    "--split-file",
                    "split_file",
                    required=split_file == "required",
                    default=split_file_default,
                    show_default=split_file_default is not None,
                    type=click.Path(exists=True, dir_okay=False),
                    help=split_file_help,
                )
            )
        if split is not None:
            options.append(
                click.option("--split", "split", type=SplitName(), default=split, show_default=True, help=split_help)
            )
        else:
            options.append(
                click.option("--split", "split", hidden=True, expose_value=False, callback=_refuse_old_split)
            )
        if old_subset:
            options.append(
                click.option("--subset", "old_subset", hidden=True, expose_value=False, callback=_refuse_subset)
            )
        if limit:
            options.append(click.option("--limit", "limit", type=click.IntRange(min=1), default=None, help=limit_help))
        wrapped: Any = command
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped

    return decorate


def _with_recorded(choice: DataChoice, bundle: str | os.PathLike[str]) -> DataChoice:
    from fashion.runtime.bundle import load_bundle
    from fashion.runtime.errors import FashionError

    try:
        return choice.with_bundle(load_bundle(bundle, verify_hashes=False))
    except (FashionError, OSError, ValueError):
        return choice


__all__ = ["DATA_CHOICE", "SPLIT_NAMES", "DataChoice", "SplitName", "data_options", "looks_like_file"]
