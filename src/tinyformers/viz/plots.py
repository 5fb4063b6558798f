"""Pictures worth looking at, saved as PNG: loss curves (more per task)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss(log: list[dict], path: str | Path, metric: str = "loss") -> None:
    """Training loss and validation loss (and the selection metric, if not the loss) against steps."""
    if not log:
        return
    steps = [e["step"] for e in log]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [e["train_loss"] for e in log], label="train loss (mean since previous evaluation)")
    if "val_loss" in log[0]:
        ax.plot(steps, [e["val_loss"] for e in log], label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if metric != "loss" and f"val_{metric}" in log[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [e[f"val_{metric}"] for e in log], color="tab:green", label=f"validation {metric}")
        ax2.set_ylabel(metric)
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
