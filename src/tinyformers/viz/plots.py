"""Matplotlib set up once for the tasks' figures: files only (the Agg backend), no display needed.

The run's own loss curve (``loss.png``) is drawn by :class:`tinyformers.engine.rundir.RunDir`, which owns the run
directory's files; ``viz`` is used by the tasks only.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt"]
