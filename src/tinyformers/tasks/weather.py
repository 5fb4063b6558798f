"""Temperature forecasting: from the past week, the next 24 hours (hourly data); from the past 8 weeks, the
next 7 days (daily data). The model is a PatchTST-style encoder (Nie et al. 2023, "A Time Series is Worth 64
Words"): the input window is cut into overlapping patches, each patch is one token, an encoder reads the
tokens and a linear head maps them to the whole horizon at once (no autoregressive decoding).

Data: the ``vega_datasets`` series (hourly ``sf-temps``/``seattle-temps`` of 2010 in °F, converted to °C;
daily ``seattle-weather`` 2012-2015 in °C) or a user's CSV. The series is split chronologically (70% train,
10% validation, 20% test); every window — input and target — lies inside one split, and the normalisation is
fitted on the training part only.

Baselines, on exactly the test windows the model is scored on:

* persistence — every future step equals the last observed value;
* seasonal naive — each step equals the value one season earlier (the same hour yesterday; the same day last
  year), taken from the past before the forecast origin;
* climatology — the training mean plus the first three harmonics of the season, fitted on train only;
* linear — the least-squares linear map from the window to the horizon, fitted on the training windows. DLinear
  and NLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series Forecasting?") are linear maps of
  the window too (a moving-average split and a last-value shift are themselves linear), so the least-squares fit
  is the best of that family on the training windows.

And one more, stronger than those four here: RLinear (Li et al. 2023, "Revisiting Long-term Time Series
Forecasting"), the same least-squares map applied to the window after RevIN (its own mean and standard deviation
removed, then put back on the forecast). The model uses this map as its linear path (``skip='rlinear'``), so
RLinear is exactly what the transformer adds to.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.models.base import ModelOutput, init_gpt2
from tinyformers.core.positions import make_positions
from tinyformers.engine.task import Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

# name -> (file in vega_datasets/_data, time column, default value column, values in °F)
DATASETS = {
    "sf-hourly": ("sf-temps.csv", "date", "temp", True),
    "seattle-hourly": ("seattle-temps.csv", "date", "temp", True),
    "seattle-daily": ("seattle-weather.csv", "date", "temp_max", False),
}
HOUR, DAY = 3600.0, 86400.0
# sampling interval -> (lookback, horizon, season): a week -> a day, and 8 weeks -> a week
AUTO_WINDOWS = {HOUR: (168, 24, 24), DAY: (56, 7, 365)}
MAX_FILLED_GAP = 3  # missing time steps filled by linear interpolation; longer gaps are an error
REVIN_EPS = 1e-5  # inside the square root of the window variance, in globally normalised units


@dataclass
class WeatherConfig(TrainConfig):
    """Attributes:
    dataset: 'sf-hourly', 'seattle-hourly' or 'seattle-daily' (vega_datasets), used when ``csv`` is empty.
    csv, column, time_column: a user's series instead: the CSV file, its value column and (optional) its time
        column. Without a time column the rows are taken as equally spaced and lookback, horizon and season
        must be set. column='' = the dataset's temperature column (seattle-daily: temp_max; also temp_min).
    lookback, horizon: input and forecast lengths in time steps; season: the seasonal period in steps
        (seasonal naive lag, climatology period). 0 = from the sampling interval: hourly 168/24/24,
        daily 56/7/365.
    val_fraction, test_fraction: chronological split of the series.
    patch_len, patch_stride: the patches (0 = one horizon long, stride half a patch).
    d_model, n_heads, n_layers, d_ff, dropout: the encoder. revin: per-window normalisation (Kim et al. 2022).
    skip: a linear path from the window to the output, beside the encoder: 'rlinear' = the RLinear baseline's
        map, fitted in closed form on train and frozen (the encoder, whose head starts at zero, learns only what
        it misses); 'learned' = a linear layer trained with the rest; 'none'.
    quantiles: comma-separated levels predicted with the pinball loss; the 0.5 quantile (the median) is the
        point forecast, scored by MAE.
    """

    dataset: str = "sf-hourly"
    csv: str = ""
    column: str = ""
    time_column: str = ""
    lookback: int = 0
    horizon: int = 0
    season: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    patch_len: int = 0
    patch_stride: int = 0
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    revin: bool = True
    skip: str = "rlinear"
    quantiles: str = "0.1,0.5,0.9"
    max_steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 250
    weight_decay: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.csv and self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: choose {', '.join(DATASETS)} or give csv=PATH")
        if min(self.lookback, self.horizon, self.season, self.patch_len, self.patch_stride) < 0:
            raise ValueError("lookback, horizon, season, patch_len and patch_stride must be >= 0")
        if not (
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("need 0 < val_fraction, test_fraction and val_fraction + test_fraction < 1")
        if self.skip not in ("rlinear", "learned", "none"):
            raise ValueError(f"skip={self.skip!r}: choose rlinear, learned or none")
        if self.skip == "rlinear" and not self.revin:
            raise ValueError("skip=rlinear needs revin=true (the map reads the RevIN'd window)")
        levels = parse_quantiles(self.quantiles)
        if 0.5 not in levels:
            raise ValueError(f"quantiles={self.quantiles!r} must include 0.5 (the point forecast)")


def parse_quantiles(text: str) -> list[float]:
    try:
        levels = sorted({float(q) for q in text.split(",")})
    except ValueError:
        raise ValueError(f"quantiles={text!r}: expected numbers such as 0.1,0.5,0.9") from None
    if not all(0 < q < 1 for q in levels):
        raise ValueError(f"quantiles={text!r}: every level must be between 0 and 1")
    return levels


# --- reading series --------------------------------------------------------------------------------------
def read_series(path: str, column: str, time_column: str = "") -> tuple[np.ndarray, list[str] | None]:
    """Values of ``column`` (and the raw strings of ``time_column``) from a CSV; errors name file, line, column."""
    try:
        with open(path, "rb") as raw:
            if b"\0" in raw.read():
                raise UserError(f"{path}: not a UTF-8 text CSV file (it contains NUL bytes)")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if not header:
                raise UserError(f"{path}: empty file; expected a header line naming the columns, then one row per time")
            for name in (column, time_column):
                if name and name not in header:
                    raise UserError(f"{path}: no column {name!r}; columns: {', '.join(header) or '(none)'}")
            values: list[float] = []
            times: list[str] = []
            for row in reader:
                line = reader.line_num
                text = (row.get(column) or "").strip()
                if not text:
                    raise UserError(
                        f"{path}: line {line}: column {column!r} is empty (a missing value); fill or drop it"
                    )
                try:
                    value = float(text)
                except ValueError:
                    raise UserError(f"{path}: line {line}: column {column!r} = {text!r} is not a number") from None
                if not math.isfinite(value):
                    raise UserError(f"{path}: line {line}: column {column!r} = {text!r} is not a finite number")
                values.append(value)
                if time_column:
                    stamp = (row.get(time_column) or "").strip()
                    if not stamp:
                        raise UserError(f"{path}: line {line}: column {time_column!r} is empty (a missing time)")
                    times.append(stamp)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None
    if not values:
        raise UserError(f"{path}: no data rows")
    return np.asarray(values, dtype=np.float64), (times if time_column else None)


def regular_grid(path: str, values: np.ndarray, stamps: list[str]) -> tuple[np.ndarray, float, str]:
    """Put the series on its regular time grid: the interval is the most common step; missing steps of up to
    ``MAX_FILLED_GAP`` are filled by linear interpolation. Returns (values, interval in seconds, last time)."""
    import pandas as pd

    times = pd.to_datetime(pd.Series(stamps), errors="coerce", format="mixed")
    if times.isna().any():
        i = int(times.isna().to_numpy().argmax())
        raise UserError(f"{path}: line {i + 2}: {stamps[i]!r} is not a date/time")
    seconds = (times - times.iloc[0]).dt.total_seconds().to_numpy()
    steps = np.diff(seconds)
    if len(steps) and (steps <= 0).any():
        i = int((steps <= 0).argmax()) + 1
        raise UserError(f"{path}: line {i + 2}: time {stamps[i]!r} does not come after the previous row's")
    interval = float(pd.Series(steps).mode().iloc[0]) if len(steps) else DAY
    position = seconds / interval
    off_grid = np.abs(position - np.round(position)) > 1e-6
    if off_grid.any():
        i = int(off_grid.argmax())
        raise UserError(f"{path}: line {i + 2}: time {stamps[i]!r} is not on the series' {interval:g} s grid")
    index = np.round(position).astype(int)
    gaps = np.diff(index) - 1
    if len(gaps) and gaps.max() > MAX_FILLED_GAP:
        i = int(gaps.argmax()) + 1
        raise UserError(
            f"{path}: line {i + 2}: {gaps.max()} time steps missing before {stamps[i]!r} "
            f"(at most {MAX_FILLED_GAP} are interpolated)"
        )
    grid = np.interp(np.arange(index[-1] + 1), index, values)
    return grid, interval, str(times.iloc[-1])


def vega_path(name: str) -> Path:
    import vega_datasets

    return Path(vega_datasets.__file__).parent / "_data" / name


# --- windows and baselines --------------------------------------------------------------------------------
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


# --- the model --------------------------------------------------------------------------------------------
@dataclass
class PatchConfig(CoreConfig):
    """Attributes: lookback, horizon: window lengths. patch_len, patch_stride: the patches.
    quantiles: predicted levels. revin: per-window normalisation. skip: 'rlinear' (a frozen map ``rlinear``
    (L + 1, H) from the RevIN'd window, added to every quantile; the head starts at zero), 'learned' or 'none'."""

    lookback: int = 168
    horizon: int = 24
    patch_len: int = 24
    patch_stride: int = 12
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    revin: bool = True
    skip: str = "none"
    rlinear: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.patch_len <= self.lookback or self.patch_stride < 1:
            raise ValueError(f"need 1 <= patch_len <= lookback={self.lookback} and patch_stride >= 1")
        self.max_len = self.n_patches

    @property
    def n_patches(self) -> int:
        return (self.lookback - self.patch_len) // self.patch_stride + 1


class PatchForecaster(nn.Module):
    """PatchTST for one channel (Nie et al. 2023, §3.1):

    1. RevIN (Kim et al. 2022): subtract the window's mean and divide by its standard deviation, so the
       encoder sees the shape of the week rather than its level; the forecast is mapped back at the end.
    2. Patching: ``N = (L - P) / S + 1`` patches of ``P`` steps, each projected linearly to ``d_model``, plus a
       learned position per patch.
    3. A pre-norm transformer encoder over the ``N`` patch tokens.
    4. A flatten head: all ``N * d_model`` features -> ``horizon x quantiles`` in one linear map.
    """

    def __init__(self, cfg: PatchConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embed = nn.Linear(cfg.patch_len, cfg.d_model)
        self.positions = make_positions("learned", cfg.n_patches, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.stack = EncoderStack(cfg)
        self.head = nn.Linear(cfg.n_patches * cfg.d_model, cfg.horizon * len(cfg.quantiles))
        self.skip = nn.Linear(cfg.lookback, cfg.horizon) if cfg.skip == "learned" else None
        self.register_buffer("levels", torch.tensor(cfg.quantiles), persistent=False)
        init_gpt2(self, cfg.n_layers)
        if cfg.skip == "rlinear":  # saved with the weights; starts the model at exactly the RLinear forecast
            self.register_buffer("rlinear", torch.tensor(cfg.rlinear, dtype=torch.float32))  # (L + 1, H)
            nn.init.zeros_(self.head.weight)

    def forward(self, window: Tensor, target: Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        """``window`` (B, L) and ``target`` (B, H), normalised -> ``logits`` (B, H, Q): the quantile forecasts."""
        cfg = self.config
        mean = window.mean(1, keepdim=True) if cfg.revin else torch.zeros_like(window[:, :1])  # (B, 1)
        std = (window.var(1, keepdim=True, unbiased=False) + REVIN_EPS).sqrt() if cfg.revin else torch.ones_like(mean)
        x = (window - mean) / std  # (B, L)
        patches = x.unfold(1, cfg.patch_len, cfg.patch_stride)  # (B, N, P)
        h = self.patch_embed(patches) + self.positions(torch.arange(patches.size(1), device=x.device))  # (B, N, d)
        h, attentions = self.stack(self.dropout(h), output_attentions=output_attentions)  # (B, N, d)
        y = self.head(h.flatten(1)).view(-1, cfg.horizon, len(cfg.quantiles))  # (B, H, Q)
        if self.skip is not None:
            y = y + self.skip(x).unsqueeze(-1)
        if cfg.skip == "rlinear":
            y = y + (x @ self.rlinear[:-1] + self.rlinear[-1]).unsqueeze(-1)  # (B, H, 1): the same for every level
        y = y * std.unsqueeze(-1) + mean.unsqueeze(-1)  # back to the series' (globally normalised) scale
        loss = None if target is None else pinball_loss(y, target, self.levels)
        return ModelOutput(logits=y, loss=loss, last_hidden_state=h, attentions=attentions)


def pinball_loss(pred: Tensor, target: Tensor, levels: Tensor) -> Tensor:
    """Quantile (pinball) loss, mean over batch, horizon and levels: ``max(q e, (q - 1) e)`` with ``e = y - ŷ_q``.
    Minimised by the q-quantile of the predictive distribution; at q = 0.5 it is half the absolute error."""
    error = target.unsqueeze(-1) - pred  # (B, H, Q)
    return torch.maximum(levels * error, (levels - 1) * error).mean()


# --- the task ---------------------------------------------------------------------------------------------
class WeatherTask(Task):
    name = "weather"
    summary = "forecast temperature (next 24 h from a week; next 7 days from 8 weeks) against five baselines"
    Config: ClassVar[type[TrainConfig]] = WeatherConfig
    metric: ClassVar[str] = "mae"
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_mae",
        higher_is_better=False,
        baselines=("persistence_mae", "seasonal_naive_mae", "climatology_mae", "linear_mae", "rlinear_mae"),
        quick=("n_layers=1", "d_model=32", "n_heads=2", "batch_size=8"),
        summary="Next 24 hours of San Francisco temperature (°C MAE on the last 20% of 2010) from the past "
        "week, against persistence, seasonal naive, climatology and linear models on the same windows.",
    )

    def data_status(self, cfg: WeatherConfig) -> str | None:  # type: ignore[override]
        if cfg.csv:
            return None  # read errors name the file and line
        try:
            found = vega_path(DATASETS[cfg.dataset][0]).exists()
        except ImportError:
            found = False
        return None if found else "the weather data needs vega_datasets: pip install vega_datasets"

    def load(self, cfg: WeatherConfig) -> tuple[np.ndarray, dict[str, Any]]:
        """The whole series on its regular grid (°C for the built-in sets) and what describes it."""
        if cfg.csv:
            path, time_column, column, fahrenheit = cfg.csv, cfg.time_column, cfg.column, False
            if not column:
                raise UserError(f"{path}: say which column holds the series: --set column=NAME")
            unit = "(the file's unit)"
        else:
            file, time_column, default, fahrenheit = DATASETS[cfg.dataset]
            path, column, unit = str(vega_path(file)), cfg.column or default, "°C"
        values, stamps = read_series(path, column, time_column)
        interval, last_time = 0.0, ""
        if stamps is not None:
            values, interval, last_time = regular_grid(path, values, stamps)
        if fahrenheit:
            values = (values - 32) * 5 / 9
        lookback, horizon, season = AUTO_WINDOWS.get(interval, (0, 0, 0))
        lookback, horizon, season = cfg.lookback or lookback, cfg.horizon or horizon, cfg.season or season
        if not (lookback and horizon and season):
            raise UserError(
                f"{path}: cannot choose windows for a series sampled every {interval or '?'} s; "
                "set lookback, horizon and season (in time steps)"
            )
        info = {
            "source": path,
            "column": column,
            "time_column": time_column,
            "fahrenheit": fahrenheit,
            "unit": unit,
            "interval": interval,
            "last_time": last_time,
            "lookback": lookback,
            "horizon": horizon,
            "season": season,
        }
        return values, info

    def data(self, cfg: WeatherConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        series, info = self.load(cfg)
        n = len(series)
        n_test, n_val = int(n * cfg.test_fraction), int(n * cfg.val_fraction)
        bounds = {"train": (0, n - n_val - n_test), "val": (n - n_val - n_test, n - n_test), "test": (n - n_test, n)}
        lookback, horizon = info["lookback"], info["horizon"]
        short = [s for s, (a, b) in bounds.items() if b - a < lookback + horizon]
        if short:
            need = math.ceil((lookback + horizon) / min(cfg.val_fraction, cfg.test_fraction))
            raise UserError(
                f"{info['source']}: {n} values leave the {'/'.join(short)} split shorter than one window "
                f"(lookback {lookback} + horizon {horizon}); need about {need} values or smaller windows"
            )
        t0, t1 = bounds["train"]
        mean, std = float(series[t0:t1].mean()), float(series[t0:t1].std() or 1.0)
        if meta is not None:  # the run's own normalisation (part of the model)
            mean, std = meta["mean"], meta["std"]
        normalised = (series - mean) / std
        splits: dict[str, Any] = {"series": series, "bounds": bounds}
        for split in ("train", "val", "test"):
            splits[f"{split}_origins"] = windows(*bounds[split], lookback, horizon)
        rlinear = fit_rlinear(normalised, splits["train_origins"], lookback, horizon)  # (L + 1, H)
        for split in ("val", "test"):
            splits[f"{split}_baselines"] = baseline_forecasts(
                series, bounds, splits[f"{split}_origins"], lookback, horizon, info["season"], rlinear
            )
        splits["normalised"] = torch.tensor(normalised, dtype=torch.float32)
        info.update(mean=mean, std=std)
        if cfg.skip == "rlinear":  # the model's frozen linear path is built from meta (JSON), then saved as weights
            info["rlinear"] = meta["rlinear"] if meta is not None else np.round(rlinear, 7).tolist()
        return TaskData(splits, info)

    def model(self, cfg: WeatherConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        patch_len = cfg.patch_len or min(meta["horizon"], meta["lookback"])
        return PatchForecaster(
            PatchConfig(
                d_model=cfg.d_model,
                n_heads=cfg.n_heads,
                n_layers=cfg.n_layers,
                d_ff=cfg.d_ff,
                dropout=cfg.dropout,
                lookback=meta["lookback"],
                horizon=meta["horizon"],
                patch_len=patch_len,
                patch_stride=cfg.patch_stride or max(1, patch_len // 2),
                quantiles=tuple(parse_quantiles(cfg.quantiles)),
                revin=cfg.revin,
                skip=cfg.skip,
                rlinear=tuple(map(tuple, meta["rlinear"])) if cfg.skip == "rlinear" else (),
            )
        )

    @staticmethod
    def _tensors(data: TaskData, origins: np.ndarray) -> dict[str, Tensor]:
        x = data.splits["normalised"]
        lookback, horizon = data.meta["lookback"], data.meta["horizon"]
        o = torch.as_tensor(origins)[:, None]
        return {
            "window": x[o + torch.arange(-lookback, 0)],  # (B, L)
            "target": x[o + torch.arange(horizon)],  # (B, H)
        }

    def batch(self, data: TaskData, cfg: WeatherConfig, generator: torch.Generator) -> dict[str, Tensor]:  # type: ignore[override]
        origins = data.splits["train_origins"]
        pick = torch.randint(0, len(origins), (cfg.batch_size,), generator=generator)
        return self._tensors(data, origins[pick.numpy()])

    def forecast(self, model: nn.Module, data: TaskData, origins: np.ndarray) -> np.ndarray:
        """Quantile forecasts in the series' unit: (N, H, Q)."""
        device = next(model.parameters()).device
        chunks = []
        with torch.no_grad():
            for i in range(0, len(origins), 512):
                window = self._tensors(data, origins[i : i + 512])["window"].to(device)
                chunks.append(model(window).logits.float().cpu().numpy())
        return np.concatenate(chunks) * data.meta["std"] + data.meta["mean"]

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: WeatherConfig) -> dict[str, float]:  # type: ignore[override]
        origins = data.splits[f"{split}_origins"]
        truth = gather(data.splits["series"], origins, np.arange(data.meta["horizon"]))  # (N, H)
        quantiles = self.forecast(model, data, origins)  # (N, H, Q)
        levels = parse_quantiles(cfg.quantiles)
        point = quantiles[..., levels.index(0.5)]
        error = point - truth
        normalised = torch.tensor(quantiles / data.meta["std"]), torch.tensor(truth / data.meta["std"])
        metrics = {
            f"{split}_loss": float(pinball_loss(*normalised, torch.tensor(levels, dtype=torch.float64))),
            f"{split}_mae": float(np.abs(error).mean()),
            f"{split}_rmse": float(np.sqrt((error**2).mean())),
        }
        if len(levels) > 1:
            inside = (quantiles[..., 0] <= truth) & (truth <= quantiles[..., -1])
            metrics[f"{split}_coverage"] = float(inside.mean())  # expected: levels[-1] - levels[0]
        for name, forecast in data.splits[f"{split}_baselines"].items():
            metrics[f"{name}_mae"] = float(np.abs(forecast - truth).mean())
            metrics[f"{name}_rmse"] = float(np.sqrt(((forecast - truth) ** 2).mean()))
        metrics["windows"] = len(origins)
        return metrics

    def predict(self, model: nn.Module, cfg: WeatherConfig, meta: dict[str, Any], inputs: list[str]) -> list[str]:  # type: ignore[override]
        """For each CSV (the run's value column, and its time column if it had one; the same unit as the run's
        source file): the forecast of the ``horizon`` steps after its last row, median and outer quantiles."""
        import pandas as pd

        levels = parse_quantiles(cfg.quantiles)
        lines = []
        for path in inputs:
            values, stamps = read_series(path, meta["column"], meta["time_column"])
            last = None
            if stamps is not None:
                values, _, last_text = regular_grid(path, values, stamps)
                last = pd.Timestamp(last_text)
            if meta["fahrenheit"]:
                values = (values - 32) * 5 / 9
            if len(values) < meta["lookback"]:
                raise UserError(f"{path}: {len(values)} values; the model reads the last {meta['lookback']}")
            window = torch.tensor((values[-meta["lookback"] :] - meta["mean"]) / meta["std"], dtype=torch.float32)
            with torch.no_grad():
                q = model(window[None].to(next(model.parameters()).device)).logits[0].cpu().numpy()
            q = q * meta["std"] + meta["mean"]  # (H, Q)
            rows = [f"forecast of {meta['column']} in {meta['unit']}: step, median, {levels[0]:g}-{levels[-1]:g} range"]
            for h in range(meta["horizon"]):
                when = f"+{h + 1}"
                if last is not None:
                    when = str(last + pd.Timedelta(seconds=meta["interval"] * (h + 1)))
                rows.append(f"  {when}  {q[h, levels.index(0.5)]:.2f}  [{q[h, 0]:.2f}, {q[h, -1]:.2f}]")
            lines.append("\n".join(rows))
        return lines

    def plots(self, model: nn.Module, data: TaskData, cfg: WeatherConfig, run_dir: str) -> list[str]:  # type: ignore[override]
        """``forecast.png``: three test windows, truth vs model (with its quantile band) and the baselines;
        ``mae_by_step.png``: test MAE at each horizon step for the model and every baseline."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        model.eval()
        meta, series = data.meta, data.splits["series"]
        origins = data.splits["test_origins"]
        horizon, lookback = meta["horizon"], meta["lookback"]
        truth = gather(series, origins, np.arange(horizon))
        quantiles = self.forecast(model, data, origins)
        mid = parse_quantiles(cfg.quantiles).index(0.5)
        forecasts = {"transformer": quantiles[..., mid], **data.splits["test_baselines"]}
        unit = meta["unit"]

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, forecast in forecasts.items():
            mae = np.abs(forecast - truth).mean(0)
            ax.plot(
                np.arange(1, horizon + 1), mae, marker="o", ms=3, lw=2.5 if name == "transformer" else 1.2, label=name
            )
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
        forecast = str(Path(run_dir) / "forecast.png")
        fig.savefig(forecast, dpi=100)
        plt.close(fig)
        return [forecast, by_step]


TASKS = (WeatherTask,)
