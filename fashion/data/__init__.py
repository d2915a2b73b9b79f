"""The data layer: dataset reading, split files, vocabularies, labelled image sets and path resolution.

Imports only the runtime below it. Constants (default split, seed, missing label) live in
``fashion.data.paths``; ``fashion.data.images`` is the one way to get "the labelled images of a split".
Modules that need pandas are imported lazily by their users, so ``import fashion.data`` stays light.
"""

from .errors import DataError, DataFormatError, DataLayoutError
from .paths import (
    DEFAULT_SPLIT,
    MISSING,
    SPLIT_SEED,
    resolve_data_dir,
    resolve_split_file,
    resolve_weights,
)

__all__ = [
    "DEFAULT_SPLIT",
    "MISSING",
    "SPLIT_SEED",
    "DataError",
    "DataFormatError",
    "DataLayoutError",
    "resolve_data_dir",
    "resolve_split_file",
    "resolve_weights",
]
