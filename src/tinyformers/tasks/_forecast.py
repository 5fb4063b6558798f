"""The weather task's quantile levels, forecast windows and baselines (persistence, seasonal naive, climatology, linear,
RLinear), computed with numpy on exactly the windows the model is scored on."""

from __future__ import annotations

import numpy as np

from tinyformers.core.models.forecast import REVIN_EPS


def parse_quantiles(text: str) -> list[float]:
    try:
        levels = sorted({float(q) for q in text.split(",")})
    except ValueError:
        raise ValueError(f"quantiles={text!r}: expected numbers such as 0.1,0.5,0.9") from None
    if not all(0 < q < 1 for q in levels):
        raise ValueError(f"quantiles={text!r}: every level must be between 0 and 1")
    return levels


def windows(start: int, stop: int, lookback: int, horizon: int) -> np.ndarray:
    """Forecast origins ``o`` (index of the first target step) of every window with input ``[o-lookback, o)``
    and target ``[o, o+horizon)`` inside ``[start, stop)``."""
    return np.arange(start + lookback, stop - horizon + 1)


def gather(series: np.ndarray, origins: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``series[origins[:, None] + offsets[None, :]]``: (N, len(offsets))."""
    return series[origins[:, None] + offsets[None, :]]


def harmonic_features(index: np.ndarray, season: int, k: int = 3) -> np.ndarray:
    """[1, cos(2πjt/s), sin(2πjt/s) for j = 1..k]: (N, 2k + 1)."""
    angle = 2 * np.pi * index[:, None] / season * np.arange(1, k + 1)[None, :]
    return np.concatenate([np.ones((len(index), 1)), np.cos(angle), np.sin(angle)], axis=1)


def least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``W`` minimising ``|[x, 1] W - y|^2`` (plus a whisper of ridge: the window's columns are near-collinear)."""
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    gram = x.T @ x
    return np.linalg.solve(gram + 1e-6 * np.trace(gram) / len(gram) * np.eye(len(gram)), x.T @ y)  # (L + 1, H)


def revin(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window normalisation (Kim et al. 2022), as :class:`PatchForecaster` does it: (x - m) / s, m, s."""
    mean = x.mean(1, keepdims=True)
    std = np.sqrt(x.var(1, keepdims=True) + REVIN_EPS)
    return (x - mean) / std, mean, std


def fit_rlinear(series: np.ndarray, origins: np.ndarray, lookback: int, horizon: int) -> np.ndarray:
    """RLinear's map, fitted on the windows at ``origins``: RevIN'd window -> RevIN'd target. (L + 1, H)."""
    x, mean, std = revin(gather(series, origins, np.arange(-lookback, 0)))
    return least_squares(x, (gather(series, origins, np.arange(horizon)) - mean) / std)


def apply_linear(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``[x, 1] w``: (N, L) -> (N, H)."""
    return x @ w[:-1] + w[-1]


def baseline_forecasts(
    series: np.ndarray,
    bounds: dict[str, tuple[int, int]],
    origins: np.ndarray,
    lookback: int,
    horizon: int,
    season: int,
    rlinear: np.ndarray,
) -> dict[str, np.ndarray]:
    """The baselines' forecasts (N, horizon) for the windows at ``origins``; fitted parts use train only
    (``rlinear``: the map :func:`fit_rlinear` fitted on the training windows; RevIN makes it scale-free).

    Seasonal naive is left out when a window's value one season back lies before the series' start.
    """
    steps = np.arange(horizon)
    targets = origins[:, None] + steps[None, :]  # (N, H) absolute indices
    out = {"persistence": np.repeat(series[origins - 1][:, None], horizon, axis=1)}
    # the latest value at the same phase before the origin: t - season * ceil((t - o + 1) / season)
    lagged = targets - season * ((steps[None, :] + season) // season)
    if lagged.min() >= 0:
        out["seasonal_naive"] = series[lagged]
    t0, t1 = bounds["train"]
    train_index = np.arange(t0, t1)
    coef, *_ = np.linalg.lstsq(harmonic_features(train_index, season), series[t0:t1], rcond=None)
    out["climatology"] = harmonic_features(targets.ravel(), season) @ coef
    out["climatology"] = out["climatology"].reshape(targets.shape)
    train_origins = windows(t0, t1, lookback, horizon)
    w = least_squares(gather(series, train_origins, np.arange(-lookback, 0)), gather(series, train_origins, steps))
    past = gather(series, origins, np.arange(-lookback, 0))  # (N, L)
    out["linear"] = apply_linear(w, past)
    x, mean, std = revin(past)
    out["rlinear"] = apply_linear(rlinear, x) * std + mean
    return out
