"""The weather task: loaders and their one-line errors, leakage-free windows, the baselines on series with a
known answer, learning on a tiny series, and predict through the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.core.models import pinball_loss
from tinyformers.engine.task import apply_overrides
from tinyformers.tasks import get_task
from tinyformers.tasks._forecast import baseline_forecasts, fit_rlinear, windows

TINY = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "batch_size=32", "lookback=48", "horizon=12"]


def write_series(path, values, start="2020-01-01 00:00", step="h", column="temp"):
    import pandas as pd

    times = pd.date_range(start, periods=len(values), freq=step)
    lines = [f"date,{column}"] + [f"{t:%Y-%m-%d %H:%M},{v:.4f}" for t, v in zip(times, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def daily_cycle(n: int, seed: int = 0) -> np.ndarray:
    """A daily sine whose level drifts slowly, plus a little noise: persistence is poor, a model is not."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 10 + 5 * np.sin(2 * np.pi * t / 24) + 2 * np.sin(2 * np.pi * t / 700) + 0.1 * rng.standard_normal(n)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_builtin_hourly_in_celsius_on_a_regular_grid():
    task = get_task("weather")
    cfg = task.Config()
    data = task.data(cfg)
    series = data.splits["series"]
    assert len(series) == 8760  # 8,759 rows + the one missing hour (the DST change), interpolated
    assert series[0] == pytest.approx((47.8 - 32) * 5 / 9)
    t0, t1 = data.splits["bounds"]["train"]
    assert data.meta["mean"] == pytest.approx(series[t0:t1].mean())  # normalisation fitted on train only
    assert (data.meta["lookback"], data.meta["horizon"], data.meta["season"]) == (168, 24, 24)


def test_windows_stay_inside_their_split():
    task = get_task("weather")
    data = task.data(task.Config(dataset="seattle-daily"))
    lookback, horizon = data.meta["lookback"], data.meta["horizon"]
    for split, (start, stop) in data.splits["bounds"].items():
        origins = data.splits[f"{split}_origins"]
        assert origins.min() - lookback == start and origins.max() + horizon == stop
    assert data.splits["bounds"]["val"][0] == data.splits["bounds"]["train"][1]


def test_baselines_on_series_with_known_answers():
    t = np.arange(600, dtype=np.float64)
    bounds = {"train": (0, 400), "test": (400, 600)}
    origins = windows(400, 600, 48, 12)
    sine = np.sin(2 * np.pi * t / 24)
    truth = sine[origins[:, None] + np.arange(12)]
    f = baseline_forecasts(sine, bounds, origins, 48, 12, 24, fit_rlinear(sine, windows(0, 400, 48, 12), 48, 12))
    assert np.abs(f["seasonal_naive"] - truth).max() < 1e-9  # a periodic series repeats exactly
    assert np.abs(f["climatology"] - truth).max() < 1e-9  # and is its own first harmonic
    assert np.abs(f["linear"] - truth).max() < 1e-4
    assert np.abs(f["rlinear"] - truth).max() < 1e-4
    assert np.abs(f["persistence"] - truth).mean() > 0.5
    rlinear = fit_rlinear(t, windows(0, 400, 48, 12), 48, 12)
    ramp = baseline_forecasts(t, bounds, origins, 48, 12, 24, rlinear)  # a straight line: linear maps extrapolate it
    for name in ("linear", "rlinear"):
        assert np.abs(ramp[name] - t[origins[:, None] + np.arange(12)]).max() < 1e-2, name  # of ~500
    assert np.array_equal(ramp["persistence"][:, 0], origins - 1.0)


def test_pinball_loss_is_half_the_absolute_error_at_the_median():
    pred, target = torch.randn(4, 5, 1), torch.randn(4, 5)
    loss = pinball_loss(pred, target, torch.tensor([0.5]))
    assert loss.item() == pytest.approx(0.5 * (pred[..., 0] - target).abs().mean().item(), rel=1e-6)
    # a low quantile costs more when the truth falls below it than above
    assert pinball_loss(torch.ones(1, 1, 1), torch.zeros(1, 1), torch.tensor([0.1])).item() == pytest.approx(0.9)


def test_model_shapes_and_config_checks():
    task = get_task("weather")
    cfg = task.Config(lookback=48, horizon=12, d_model=16, n_heads=2, n_layers=1, d_ff=32, skip="none")
    model = task.model(cfg, {"lookback": 48, "horizon": 12})
    out = model(torch.randn(3, 48), torch.randn(3, 12))
    assert out.logits.shape == (3, 12, 3) and out.loss.ndim == 0
    with pytest.raises(ValueError, match="0.5"):
        task.Config(quantiles="0.1,0.9")
    with pytest.raises(ValueError, match="revin"):
        task.Config(revin=False)  # skip=rlinear reads the RevIN'd window


def test_untrained_model_is_exactly_the_rlinear_baseline(tmp_path):
    task = get_task("weather")
    csv = write_series(tmp_path / "s.csv", daily_cycle(800))
    cfg = apply_overrides(task.Config(), [*TINY, f"csv={csv}", "column=temp", "time_column=date"])
    data = task.data(cfg)
    model = task.model(cfg, data.meta).eval()
    metrics = task.evaluate(model, data, "test", cfg)
    assert metrics["test_mae"] == pytest.approx(metrics["rlinear_mae"], rel=1e-4)
    assert metrics["rlinear_mae"] < 0.5 * metrics["persistence_mae"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny plain PatchTST (no linear path) trained through the CLI on a drifting daily cycle (1,500 hours)."""
    folder = tmp_path_factory.mktemp("weather")
    csv = write_series(folder / "series.csv", daily_cycle(1500))
    out = folder / "run"
    args = ["train", "weather", "--out", str(out), "--max-steps", "300", "--no-progress", "--set", *TINY]
    args += [f"csv={csv}", "column=temp", "time_column=date", "eval_every=100", "dropout=0", "skip=none"]
    assert main(args) == 0
    return folder, out


def test_learns_a_tiny_series_and_beats_persistence(trained):
    _, out = trained
    metrics = json.loads((out / "metrics.json").read_text())
    # the plain encoder (skip=none: no linear path to lean on) learns the drifting cycle
    assert metrics["test_mae"] < 0.5 * metrics["seasonal_naive_mae"] < 0.1 * metrics["persistence_mae"]
    assert 0.3 < metrics["test_coverage"] <= 1.0
    assert (out / "forecast.png").exists() and (out / "mae_by_step.png").exists()


def test_predict_prints_the_next_horizon(trained, tmp_path, capsys):
    folder, out = trained
    recent = write_series(tmp_path / "recent.csv", daily_cycle(60, seed=1), start="2021-03-01 00:00")
    code, stdout, _ = run_cli(["predict", str(out), str(recent)], capsys)
    assert code == 0
    rows = stdout.strip().splitlines()
    assert len(rows) == 1 + 12 and "2021-03-03 12:00:00" in rows[1]  # 60 hours after 2021-03-01 00:00
    medians = [float(r.split()[-3]) for r in rows[1:]]
    assert all(math.isfinite(m) and 0 < m < 20 for m in medians)
    short = write_series(tmp_path / "short.csv", daily_cycle(10))
    code, _, err = run_cli(["predict", str(out), str(short)], capsys)
    assert code == 2 and "10 values; the model reads the last 48" in err and len(err.strip().splitlines()) == 1


def bad_files(tmp_path) -> list[tuple[str, str, list[str]]]:
    """(file content, expected message part, extra settings)."""
    return [
        ("date,temp\n2020-01-01 00:00,1\n2020-01-01 01:00,\n", "line 3: column 'temp' is empty", []),
        (
            "date,temp\n2020-01-01 00:00,1\n2020-01-01 01:00,warm\n",
            "line 3: column 'temp' = 'warm' is not a number",
            [],
        ),
        ("date,tmp\n2020-01-01 00:00,1\n", "no column 'temp'; columns: date, tmp", []),
        ("date,temp\n2020-01-01 00:00,1\nyesterday,2\n", "line 3: 'yesterday' is not a date/time", []),
        ("date,temp\n2020-01-01 01:00,1\n2020-01-01 00:00,2\n", "line 3: time '2020-01-01 00:00' does not come", []),
        ("date,temp\n", "no data rows", []),
        (
            "date,temp\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n2020-01-01 02:00,2\n2020-01-01 08:00,3\n",
            "line 5: 5 time steps missing before '2020-01-01 08:00'",
            [],
        ),
        (
            "date,temp\n2020-01-01 00:00,1\n2020-01-01 00:30,2\n2020-01-01 01:00,2\n2020-01-01 01:45,3\n",
            "line 5: time '2020-01-01 01:45' is not on the series' 1800 s grid",
            [],
        ),
        ("date,temp\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n", "shorter than one window", []),
        ("x,temp\n1,1\n2,2\n", "set lookback, horizon and season", ["lookback=0", "horizon=0"]),
    ]


def test_bad_csv_files_are_one_line_errors(tmp_path, capsys):
    for i, (content, message, extra) in enumerate(bad_files(tmp_path)):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(content)
        time_column = [] if extra else ["time_column=date"]
        args = ["train", "weather", "--out", str(tmp_path / f"run{i}"), "--max-steps", "1", "--no-progress"]
        args += ["--set", *TINY, *extra, f"csv={path}", "column=temp", *time_column]
        code, _, err = run_cli(args, capsys)
        assert code == 2, message
        assert message in err and str(path) in err and len(err.strip().splitlines()) == 1, err
    png = tmp_path / "image.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    args = ["train", "weather", "--out", str(tmp_path / "r"), "--no-progress", "--set", f"csv={png}", "column=temp"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "not a UTF-8 text CSV file" in err
    code, _, err = run_cli([*args[:-1], f"csv={tmp_path / 'none.csv'}", "column=temp"], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run_cli([*args[:-2], f"csv={path}"], capsys)
    assert code == 2 and "--set column=NAME" in err
    code, _, err = run_cli([*args[:-2], "dataset=paris"], capsys)
    assert code == 2 and "dataset='paris'" in err


def test_user_series_without_time_column(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("level\n" + "\n".join(f"{v:.3f}" for v in daily_cycle(600)) + "\n")
    task = get_task("weather")
    cfg = apply_overrides(task.Config(), [f"csv={path}", "column=level", "lookback=48", "horizon=12", "season=24"])
    data = task.data(cfg)
    assert data.meta["interval"] == 0.0 and len(data.splits["test_origins"]) == 120 - 60 + 1
