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

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from tinyformers.core.models import PatchConfig, PatchForecaster, pinball_loss
from tinyformers.data.series import DATASETS, DAY, HOUR, load_series, vega_path
from tinyformers.engine.task import Batch, ModelSizes, Predicts, Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError
from tinyformers.tasks._forecast import baseline_forecasts, fit_rlinear, gather, parse_quantiles, windows
from tinyformers.viz.forecast import plot_forecasts

# sampling interval -> (lookback, horizon, season): a week -> a day, and 8 weeks -> a week
AUTO_WINDOWS = {HOUR: (168, 24, 24), DAY: (56, 7, 365)}


@dataclass
class WeatherConfig(ModelSizes, TrainConfig):
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


class WeatherTask(Task[WeatherConfig], Predicts):
    name = "weather"
    summary = "forecast temperature (next 24 h from a week; next 7 days from 8 weeks) against five baselines"
    Config: ClassVar[type[TrainConfig]] = WeatherConfig
    predict_options: ClassVar[tuple[str, ...]] = ()
    metric: ClassVar[str] = "mae"
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_mae",
        higher_is_better=False,
        baselines=("persistence_mae", "seasonal_naive_mae", "climatology_mae", "linear_mae", "rlinear_mae"),
        quick=("n_layers=1", "d_model=32", "n_heads=2", "batch_size=8"),
        summary="Next 24 hours of San Francisco temperature (°C MAE on the last 20% of 2010) from the past "
        "week, against persistence, seasonal naive, climatology and linear models on the same windows.",
    )

    def data_status(self, cfg: WeatherConfig) -> str | None:
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
        values, interval, last_time = load_series(path, column, time_column, fahrenheit)
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

    def data(self, cfg: WeatherConfig, meta: dict[str, Any] | None = None) -> TaskData:
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

    def model(self, cfg: WeatherConfig, meta: dict[str, Any]) -> nn.Module:
        patch_len = cfg.patch_len or min(meta["horizon"], meta["lookback"])
        return PatchForecaster(
            PatchConfig(
                **cfg.sizes(),
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
    def _tensors(data: TaskData, origins: np.ndarray) -> Batch:
        x = data.splits["normalised"]
        lookback, horizon = data.meta["lookback"], data.meta["horizon"]
        o = torch.as_tensor(origins)[:, None]
        return {
            "window": x[o + torch.arange(-lookback, 0)],  # (B, L)
            "labels": x[o + torch.arange(horizon)],  # (B, H): the target
        }

    def batch(self, data: TaskData, cfg: WeatherConfig, generator: torch.Generator) -> Batch:
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

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: WeatherConfig) -> dict[str, float]:
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

    def predict(
        self, model: nn.Module, cfg: WeatherConfig, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]:
        """For each CSV (the run's value column, and its time column if it had one; the same unit as the run's
        source file): the forecast of the ``horizon`` steps after its last row, median and outer quantiles."""
        import pandas as pd  # heavy: loaded when a forecast is asked for

        levels = parse_quantiles(cfg.quantiles)
        lines = []
        for path in inputs:
            values, _, last_text = load_series(path, meta["column"], meta["time_column"], meta["fahrenheit"])
            last = pd.Timestamp(last_text) if last_text else None
            if len(values) < meta["lookback"]:
                raise UserError(f"{path}: {len(values)} values; the model reads the last {meta['lookback']}")
            window = torch.tensor((values[-meta["lookback"] :] - meta["mean"]) / meta["std"], dtype=torch.float32)
            with torch.no_grad():
                q = model(window[None].to(next(model.parameters()).device)).logits[0].cpu().numpy()
            q = q * meta["std"] + meta["mean"]  # (H, Q)
            rows = [f"forecast of {meta['column']} in {meta['unit']}: step, median, {levels[0]:g}-{levels[-1]:g} range"]
            for h in range(meta["horizon"]):
                when = f"+{h + 1}" if last is None else str(last + pd.Timedelta(seconds=meta["interval"] * (h + 1)))
                rows.append(f"  {when}  {q[h, levels.index(0.5)]:.2f}  [{q[h, 0]:.2f}, {q[h, -1]:.2f}]")
            lines.append("\n".join(rows))
        return lines

    def plots(self, model: nn.Module, data: TaskData, cfg: WeatherConfig, run_dir: str) -> list[str]:
        """``forecast.png``: three test windows, truth vs model (with its quantile band) and the baselines;
        ``mae_by_step.png``: test MAE at each horizon step for the model and every baseline."""
        model.eval()
        meta, series = data.meta, data.splits["series"]
        origins = data.splits["test_origins"]
        truth = gather(series, origins, np.arange(meta["horizon"]))
        quantiles = self.forecast(model, data, origins)
        mid = parse_quantiles(cfg.quantiles).index(0.5)
        forecasts = {"transformer": quantiles[..., mid], **data.splits["test_baselines"]}
        return plot_forecasts(series, origins, truth, quantiles, forecasts, meta, run_dir)


TASKS = (WeatherTask,)
