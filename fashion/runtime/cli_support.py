"""What every command line tool shares: ``-h``/``--help`` and the error-to-exit-code mapping.

Usage with click (either decorator order works)::

    @run_cli
    @click.command(context_settings=CONTEXT_SETTINGS)
    def main(...): ...

    # or, for a plain function:  run_cli(fn)(*args)

An uncaught ``FashionError`` becomes ``Error: <message>`` on stderr and its ``exit_code``; a click usage
error (unknown option, bad value, missing argument) becomes ``Error: <message>`` plus one
``Try '<command> --help' for help.`` line and exit 2, without click's usage block; Ctrl-C
becomes 130 with a one-line message; an ``OSError`` on a user path becomes ``Error: <path>: <reason>``
and exit 2; anything unexpected still gets a single line and exit 1, with a hint to rerun with
``FASHION_DEBUG=1`` to see the traceback (with that variable set, the exception propagates unchanged).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .errors import EXIT_PARTIAL, BackendUnavailableError, BundleError, FashionError, exit_code_for

#: Every click command passes this so ``-h`` works as well as ``--help``.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}

#: Environment variable that turns the one-line message for unexpected errors back into a traceback.
DEBUG_ENV = "FASHION_DEBUG"

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    """True when the user asked for tracebacks (``FASHION_DEBUG`` set to anything but empty/0/false)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def error_message(exc: BaseException) -> str:
    """One line for the user: the error's own message, or for OSError ``<path>: <reason>``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, OSError) and not isinstance(exc, FashionError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where != "" else exc.strerror
    text = str(exc).strip()
    if isinstance(exc, FashionError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def report(exc: BaseException) -> int:
    """Print ``Error: ...`` for ``exc`` on stderr and return the exit status to use."""
    code = exit_code_for(exc)
    click.echo(f"Error: {error_message(exc)}", err=True)
    if code == EXIT_PARTIAL and not isinstance(exc, FashionError):
        click.echo(f"(unexpected error; rerun with {DEBUG_ENV}=1 to see the traceback)", err=True)
    return code


class OneLineUsageError(click.UsageError):
    """A click usage error shown as the README promises: ``Error: ...`` and a one-line help hint, exit 2."""

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", file=file, err=file is None)
        if self.ctx is not None and self.ctx.command.get_help_option(self.ctx) is not None:
            option = max(self.ctx.command.get_help_option_names(self.ctx), key=len)
            click.echo(f"Try '{self.ctx.command_path} {option}' for help.", file=file, err=file is None)


def one_line(exc: click.UsageError) -> click.UsageError:
    """The same usage error (message, context, exit code) shown without click's usage block."""
    if isinstance(exc, OneLineUsageError):
        return exc
    return OneLineUsageError(exc.format_message(), exc.ctx)  # exit 2, as every click usage error


def _usage_errors_in_one_line(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.UsageError as exc:
            raise one_line(exc) from None

    return wrapper  # type: ignore[return-value]


def _passes_through(exc: BaseException) -> bool:
    """click's own control-flow exceptions (usage errors, --help exit, Abort) are click's to handle."""
    return isinstance(exc, (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort))


def _guard(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            if debug_enabled():
                raise
            sys.stderr.flush()
            raise SystemExit(report(exc)) from None
        except click.UsageError as exc:  # also a subcommand's option errors, parsed inside a group's invoke
            raise one_line(exc) from None
        except Exception as exc:  # noqa: BLE001 - the point is one message instead of a traceback
            if _passes_through(exc) or debug_enabled():
                raise
            raise SystemExit(report(exc)) from None

    return wrapper  # type: ignore[return-value]


def run_cli(fn: F) -> F:
    """Wrap a click command (or any callable) so errors become ``Error: ...`` plus their exit code.

    For a click ``Command``/``Group`` the wrapper goes around ``invoke`` (so it also covers
    subcommands) and ``parse_args`` (option errors: one ``Error:`` line and a help hint); the command
    object itself is returned, so ``@run_cli`` may sit above ``@click.command``.
    """
    if isinstance(fn, click.Command):
        command = fn
        command.invoke = _guard(command.invoke)  # type: ignore[method-assign]
        command.parse_args = _usage_errors_in_one_line(command.parse_args)  # type: ignore[method-assign]
        return fn
    return _guard(fn)


#: Alias for readers who prefer a decorator name that says what it does.
cli_errors = run_cli


@dataclass(frozen=True)
class LoadOptions:
    """How a command opens a bundle through ``Classifier.load``: what ``model_options`` parses into.

    ``fast_decode``: None keeps the bundle's preprocessing as it is; False is the exact (full-size) decode.
    """

    backend: str = "auto"
    precision: str = "auto"
    providers: tuple[str, ...] = ()
    threads: int | None = None
    allow_fallback: bool = False
    fast_decode: bool | None = None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Classifier.load`` (no providers given: the backend's default order)."""
        kwargs: dict[str, Any] = {
            "backend": self.backend,
            "precision": self.precision,
            "providers": list(self.providers) or None,
            "threads": self.threads,
            "allow_fallback": self.allow_fallback,
        }
        if self.fast_decode is not None:
            kwargs["fast_decode"] = self.fast_decode
        return kwargs


#: The parameter name under which ``model_options`` hands the command its ``LoadOptions``.
LOAD_OPTIONS = "load_options"
_MODEL_PARAMS = ("backend", "precision", "providers", "allow_fallback", "threads", "exact_decode")


def model_options(fn: F | None = None, *, exact_decode: bool = False) -> Any:
    """The options every command that opens a bundle through ``Classifier.load`` shares, parsed into one
    ``LoadOptions`` passed to the command as ``load_options``.

    Adds ``--backend``, ``--precision``, ``--provider`` (repeatable), ``--allow-fallback`` and ``--threads``
    with one spelling, one set of choices and one help text across fashion-predict, fashion-serve and
    fashion-demo; ``model_options(exact_decode=True)`` also adds ``--exact-decode`` (``fast_decode=False``).
    Use as ``@model_options`` or ``@model_options(exact_decode=True)``.
    """
    if fn is None:
        return functools.partial(model_options, exact_decode=exact_decode)
    decorators = [
        click.option(
            "--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fastest", "fp32", "fp16", "int8"]),
            default="auto",
            show_default=True,
            help="auto: INT8 where this CPU has the instructions that make it pay, else FP32; "
            "fastest: time the candidates here once (cached).",
        ),
        click.option(
            "--provider",
            "providers",
            multiple=True,
            help="ONNX Runtime provider (cpu, cuda, tensorrt, or another by its short name, e.g. openvino); repeat "
            "to give a preference order. One missing here is refused with the list onnxruntime offers.",
        ),
        click.option("--allow-fallback", is_flag=True, help="Run on the CPU if the requested provider is unavailable."),
        click.option(
            "--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: the usable cores)."
        ),
    ]
    if exact_decode:
        decorators.append(
            click.option(
                "--exact-decode", is_flag=True, help="Decode large photos at full size (no reduced JPEG decode)."
            )
        )

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _MODEL_PARAMS if name in kwargs}
        kwargs[LOAD_OPTIONS] = LoadOptions(
            backend=values.get("backend", "auto"),
            precision=values.get("precision", "auto"),
            providers=tuple(values.get("providers") or ()),
            threads=values.get("threads"),
            allow_fallback=bool(values.get("allow_fallback", False)),
            fast_decode=False if values.get("exact_decode") else None,
        )
        return fn(*args, **kwargs)

    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def flag_spelling(exc: BackendUnavailableError) -> BackendUnavailableError:
    """The runtime's message names its Python argument; on the command line it is ``--allow-fallback``."""
    return BackendUnavailableError(str(exc).replace("allow_fallback=True", "--allow-fallback"))


def load_classifier(bundle: str | os.PathLike[str], load: LoadOptions | None = None, **options: Any):
    """``Classifier.load`` for commands using ``model_options`` (``load``, plus any other ``Classifier.load``
    keyword): every way a bundle or an option is unusable becomes BundleError (exit 2), and a missing backend
    names the command-line flag."""
    from .classifier import Classifier

    kwargs = {**(load.load_kwargs() if load is not None else {}), **options}
    try:
        return Classifier.load(bundle, **kwargs)
    except BackendUnavailableError as exc:
        raise flag_spelling(exc) from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{bundle}: unusable bundle or options ({type(exc).__name__}: {exc})") from None
