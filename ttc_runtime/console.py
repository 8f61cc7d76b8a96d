"""What the console shows: the pipeline's own lines and progress bars, not the libraries' bars for
steps of a second or two, and under a launcher only the first process's lines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import datasets
from transformers.utils import logging as transformers_logging


@contextmanager
def library_bars_hidden() -> Iterator[None]:
    """Hide the progress bars of ``datasets`` (map, filter, save) and of transformers' loading and
    writing of weights while the block runs, and restore them after. They time steps of a second
    or two; an environment variable that sets them explicitly is respected."""
    unset = datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is None
    hide_datasets = unset and not datasets.are_progress_bars_disabled()
    hide_transformers = transformers_logging.is_progress_bar_enabled()
    if hide_datasets:
        datasets.disable_progress_bars()
    if hide_transformers:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide_transformers:
            transformers_logging.enable_progress_bar()
        if hide_datasets:
            datasets.enable_progress_bars()


def first_process() -> bool:
    """Whether this process speaks for the run and writes its shared outputs: always, unless a
    launcher started it as another than the first (``RANK``)."""
    return int(os.environ.get("RANK", "0")) == 0


def say(line: str) -> None:
    """A line of the pipeline's on the console, from the first process only: processes training
    one model together do not repeat it."""
    if first_process():
        print(line, flush=True)
