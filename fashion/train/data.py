"""The training data, read once: the labelled rows, the split, the vocabularies -> ``TrainData`` for every recipe.

Used by the ``fashion-train`` commands and by ``gpu_check`` (kept out of ``cli.py`` so that neither imports
the other).
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import TrainError


def load_frame(data: str, split_file: str | None):
    """The labelled rows (split attached when a split file is given), the vocabularies and the loader report."""
    from fashion.data.dataset import load_dataset
    from fashion.data.labels import build_vocabularies
    from fashion.data.split import attach_split, read_split

    try:
        frame, report = load_dataset(data)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainError(str(exc)) from exc
    click.echo(report.summary(), err=True)
    vocab = build_vocabularies(frame)
    if split_file:
        frame = attach_split(frame, read_split(split_file))
    return frame, vocab, report


def build_train_data(
    data: str,
    split_file: str,
    workers: int | None = None,
    sharp: str | None = None,
    limit: int | None = None,
):
    """Read the dataset, split and vocabularies once; every recipe trains from the result.

    ``sharp``: a folder of sharper copies by id, added to the training part (never to val);
    ``limit``: train on a seeded subset of that many training images (a first run in minutes).
    """
    from fashion.data.labels import hierarchy

    from .recipe import limited, train_data_from_frame, with_sharp_copies

    frame, vocab, report = load_frame(data, split_file)
    counts = {k: v for k, v in report.to_dict().items() if not isinstance(v, (list, str))}
    description = {
        "data": Path(data).resolve().name,
        "split": Path(split_file).name,
        "train_images": int((frame["split"] == "train").sum()),
        "val_images": int((frame["split"] == "val").sum()),
        "loader_report": counts,
    }
    train_data = train_data_from_frame(frame, vocab, hierarchy(frame[frame["split"] == "train"]), description, workers)
    recorded = train_data.description  # train_data_from_frame keeps its own copy
    if limit is not None:
        train_data.train = limited(train_data.train, limit)
        recorded.update(train_images=len(train_data.train), limit=limit)
    if sharp:
        train_data.train, added = with_sharp_copies(train_data.train, sharp)
        recorded.update(sharp_train_images=added, sharp=Path(sharp).resolve().name)
        click.echo(f"training on {len(train_data.train)} images ({added} of them sharp copies)", err=True)
    return train_data
