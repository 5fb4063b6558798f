"""Weather forecasting: the PatchTST-style model (three linear paths) against the baselines on each dataset.

    OMP_NUM_THREADS=1 python benchmarks/weather.py [--max-steps 1500]

Prints a table of test MAE / RMSE (°C) for the model and every baseline on the same test windows, writes
benchmarks/results/weather.json and copies the forecast and MAE-by-step plots to docs/tasks/weather_*.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"
# (dataset, settings, plot name or None)
RUNS = [
    ("sf-hourly", [], "sf_hourly"),
    ("sf-hourly", ["skip=learned"], None),
    ("sf-hourly", ["skip=none"], None),
    ("seattle-hourly", [], "seattle_hourly"),
    ("seattle-daily", [], "seattle_daily"),
    ("seattle-daily", ["column=temp_min"], None),
]
BASELINES = ["persistence", "seasonal_naive", "climatology", "linear", "rlinear"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=1500)
    args = ap.parse_args()
    task = get_task("weather")
    rows = []
    for dataset, settings, plot in RUNS:
        cfg = apply_overrides(task.Config(), [f"dataset={dataset}", f"max_steps={args.max_steps}", *settings])
        with tempfile.TemporaryDirectory() as d:
            m = train(task, cfg, d, progress=False)
            if plot:
                for name in ("forecast", "mae_by_step"):
                    shutil.copy(Path(d) / f"{name}.png", DOCS / f"weather_{plot}_{name}.png")
        best = min(m[f"{b}_mae"] for b in BASELINES[:4] if f"{b}_mae" in m)
        row = {
            "dataset": dataset + (f" {cfg.column}" if cfg.column else ""),
            "skip": cfg.skip,
            "test_mae": m["test_mae"],
            "test_rmse": m["test_rmse"],
            "vs_best_of_4": m["test_mae"] / best,
            "vs_rlinear": m["test_mae"] / m["rlinear_mae"],
            "coverage_80": m["test_coverage"],
            **{f"{b}_mae": m.get(f"{b}_mae", float("nan")) for b in BASELINES},
            **{k: m[k] for k in ("linear_rmse", "rlinear_rmse", "windows", "params", "steps")},
            "best_step": m["best_step"],
            "train_seconds": m["train_seconds"],
        }
        rows.append(row)
        print(f"{row['dataset']} skip={cfg.skip}: MAE {m['test_mae']:.4f} (best of 4: {best:.4f})", file=sys.stderr)
    cols = [
        "dataset",
        "skip",
        "test_mae",
        *[f"{b}_mae" for b in BASELINES],
        "vs_best_of_4",
        "vs_rlinear",
        "coverage_80",
        "test_rmse",
        "windows",
        "params",
        "best_step",
        "train_seconds",
    ]
    print(table(rows, cols))
    print(machine())
    save("weather", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
