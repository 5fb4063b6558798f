"""The weather task's figures: test MAE by horizon step, and a few test windows with every forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_forecasts(
    series: np.ndarray,
    origins: np.ndarray,
    truth: np.ndarray,
    quantiles: np.ndarray,
    forecasts: dict[str, np.ndarray],
    meta: dict[str, Any],
    run_dir: str,
) -> list[str]:
    """``forecast.png``: three test windows, truth vs the model (``forecasts["transformer"]``, with its quantile
    band from ``quantiles`` (N, H, Q)) and the baselines; ``mae_by_step.png``: MAE at each horizon step of every
    forecast (N, H). ``truth`` (N, H) is the series after each origin."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    horizon, lookback = meta["horizon"], meta["lookback"]
    unit = meta["unit"]

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, forecast in forecasts.items():
        mae = np.abs(forecast - truth).mean(0)
        ax.plot(np.arange(1, horizon + 1), mae, marker="o", ms=3, lw=2.5 if name == "transformer" else 1.2, label=name)
    ax.set_xlabel("horizon step")
    ax.set_ylabel(f"test MAE {unit}")
    ax.set_yscale("log")
    ax.set_title(f"weather ({Path(meta['source']).name}): MAE by horizon step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    by_step = str(Path(run_dir) / "mae_by_step.png")
    fig.savefig(by_step, dpi=100)
    plt.close(fig)

    # top row: the last part of the input, the truth and the forecasts; bottom row: each forecast's error,
    # which is what tells apart forecasts that overlap at the top's scale
    picks = np.linspace(0, len(origins) - 1, 3).astype(int)
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4), sharex=True, height_ratios=(3, 2))
    steps = np.arange(horizon)
    shown = {
        "transformer": "tab:blue",
        "rlinear": "tab:brown",
        "linear": "tab:orange",
        "seasonal_naive": "tab:green",
    }
    for col, i in enumerate(picks):
        top, bottom = axes[0, col], axes[1, col]
        past = np.arange(-min(lookback, 3 * horizon), 0)
        top.plot(past, series[origins[i] + past], color="black", lw=1, label="input (last part)")
        top.plot(steps, truth[i], color="black", lw=2, label="truth")
        band = quantiles[i, :, 0], quantiles[i, :, -1]
        top.fill_between(steps, *band, color="tab:blue", alpha=0.2, label="model quantile band")
        bottom.fill_between(steps, band[0] - truth[i], band[1] - truth[i], color="tab:blue", alpha=0.2)
        for name, color in shown.items():
            if name in forecasts:
                style = {"lw": 2} if name == "transformer" else {"lw": 1, "ls": "--"}
                top.plot(steps, forecasts[name][i], color=color, label=name, **style)
                bottom.plot(steps, forecasts[name][i] - truth[i], color=color, **style)
        bottom.axhline(0, color="black", lw=0.8)
        top.axvline(-0.5, color="grey", lw=0.5)
        top.set_title(f"test window {i + 1} of {len(origins)}", fontsize=9)
        bottom.set_xlabel("step from the forecast origin")
    axes[0, 0].set_ylabel(unit)
    axes[1, 0].set_ylabel(f"forecast - truth {unit}")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    windows_png = str(Path(run_dir) / "forecast.png")
    fig.savefig(windows_png, dpi=100)
    plt.close(fig)
    return [windows_png, by_step]
