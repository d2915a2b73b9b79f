"""The inputs of ``fashion-predict``: which paths a folder contributes, and what a path is before it is read.

Every entry of a folder gets a row or a "skipped" line: files as they are (so a bad one is reported),
symbolic links, FIFOs and devices too (their row says what they are), hidden names (starting with
".") skipped and counted. Only regular files are read, at most :data:`MAX_FILE_BYTES` each, and a
FIFO is never opened in a way that could block: a symbolic link to ``/dev/zero`` or a named pipe gets
an error row instead of filling memory or hanging the run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .errors import InvalidImageError

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
#: The largest file read as one photo (a 50-megapixel PNG fits; the runtime's pixel limit applies after).
MAX_FILE_BYTES = 64 * 1024 * 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _link_note(path: str) -> str:
    try:
        return f" (a symbolic link to {os.readlink(path)})" if os.path.islink(path) else ""
    except OSError:
        return ""


def file_problem(path: str, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """Why ``path`` cannot be read as a photo, from its metadata alone (None: a readable regular file)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)"
        return f"{path}: no such file"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        if os.path.islink(path):
            return f"{path}: is a symbolic link to a folder ({os.readlink(path)}), not followed"
        return f"{path}: is a directory, not an image file"
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: is {_kind(info.st_mode)}{_link_note(path)}, not a regular file; only regular files are read"
    if info.st_size > max_bytes:
        return f"{path}: {info.st_size:,} bytes, over the {max_bytes:,}-byte limit for one photo"
    if not os.access(path, os.R_OK):
        return f"{path}: permission denied (not readable by this user)"
    return None


def read_image_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``); InvalidImageError naming what it is
    otherwise. Opened without blocking and checked on the open file, so a path swapped meanwhile for a FIFO
    or a device cannot hang or flood the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise InvalidImageError(file_problem(path, max_bytes) or f"{path}: cannot be opened") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError(
                f"{path}: is {_kind(info.st_mode)}{_link_note(path)}, not a regular file; only regular files are read"
            )
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidImageError(f"{path}: over the {max_bytes:,}-byte limit for one photo")
    return data


def precheck(path: str, from_folder: bool, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """The reason ``path`` cannot be a photo, known without decoding it (None: let the model try)."""
    problem = file_problem(path, max_bytes)
    if problem is not None:
        return problem
    suffix = Path(path).suffix.lower()
    if from_folder and suffix not in IMAGE_SUFFIXES:
        return f"{path}: not an image file (type '{suffix or 'none'}'); images are {', '.join(sorted(IMAGE_SUFFIXES))}"
    return None


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(paths, skipped lines): arguments as given (so a bad one gets its row), folders as every entry inside
    them, depth first in name order. Sub-folders are entered; a symbolic link to a folder inside one is not
    followed (its row says so); every other entry (file, link, FIFO, device) gets a row. Hidden entries
    (names starting with ".") and folders that cannot be listed are the skipped lines."""
    paths: list[str] = []
    skipped: list[str] = []
    hidden = 0
    for item in inputs:
        if os.path.isdir(item):
            hidden += _walk(item, paths, skipped)
        else:
            paths.append(item)
    if hidden:
        skipped.insert(0, f"skipped {hidden} hidden file(s) in the given folders (names starting with '.')")
    return paths, skipped


def _walk(folder: str, paths: list[str], skipped: list[str]) -> int:
    """Append the entries of ``folder`` to ``paths``; the number of hidden entries skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        skipped.append(f"skipped folder {folder}: cannot be listed ({exc.strerror or exc})")
        return 0
    hidden = 0
    for entry in entries:
        path = os.path.join(folder, entry.name)
        is_folder = entry.is_dir(follow_symlinks=False)
        if entry.name.startswith("."):
            hidden += sum(len(files) for _, _, files in os.walk(path)) if is_folder else 1
        elif is_folder:
            hidden += _walk(path, paths, skipped)
        else:
            paths.append(path)
    return hidden
