"""Matplotlib set up once for the tasks' figures: files only (the Agg backend), no display needed.

The run's own loss curve (``loss.png``) is drawn by :class:`tinyformers.engine.rundir.RunDir`, which owns the run
directory's files; ``viz`` is used by the tasks only.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tinyformers.errors import UserError  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig: Figure, out: str | Path) -> None:
    """Write ``fig`` as a PNG (100 dpi) and close it; a file that cannot be written is a one-line UserError."""
    try:
        fig.savefig(out, dpi=100)
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror})") from None
    finally:
        plt.close(fig)
