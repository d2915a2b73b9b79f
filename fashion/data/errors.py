"""The data layer's one error type: unusable data, split or weights paths, or unreadable label files.

A ``DataError`` is a usage problem (exit status 2 through ``fashion.runtime.cli_support``): it is
raised before any work starts and its message says what was looked for and how to pass it.
"""

from __future__ import annotations

from fashion.runtime.errors import EXIT_USAGE, FashionError


class DataError(FashionError):
    """A data folder, split file or weights file is missing or unusable."""

    exit_code = EXIT_USAGE


class DataLayoutError(DataError, FileNotFoundError):
    """A folder is not in Kaggle layout (styles.csv + images/); also a FileNotFoundError for older callers."""


class DataFormatError(DataError, ValueError):
    """A labels or split file has the wrong columns or values; also a ValueError for older callers."""
