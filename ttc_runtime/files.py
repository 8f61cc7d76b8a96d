"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    A run killed at any moment leaves either the old file or the new one (and at worst a stray
    ``.tmp``), never a truncated ``path``. A write that fails (``path`` is a directory, the disk is
    full) removes its ``.tmp`` before the error goes on.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_figure(figure, path: str | Path, dpi: int = 120) -> None:
    """Save a matplotlib figure as a PNG beside ``path``, rename it into place and close it, so a
    reader never sees half an image."""
    import matplotlib.pyplot as plt

    path = Path(path)
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, dpi=dpi)
    plt.close(figure)
    partial.replace(path)
