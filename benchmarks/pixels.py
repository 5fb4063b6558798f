"""Pixels: the default recipe (14x14, 4 grey levels, 1200 steps) on MNIST-5k, optionally on Fashion-MNIST.

    OMP_NUM_THREADS=1 python benchmarks/pixels.py [--datasets mnist5k,fashion] [--max-steps 1200]

Prints a table of held-out bits per pixel token (model vs independent pixels) and conditional accuracy;
writes benchmarks/results/pixels.json and copies the sample and completion grids to docs/tasks/pixels_*.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task

DOCS = Path(__file__).parent.parent / "docs" / "tasks"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist5k")
    ap.add_argument("--max-steps", type=int, default=1200)
    ap.add_argument("--out", default="/tmp/pixels-bench", help="directory for the runs")
    args = ap.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        task = get_task("pixels")
        cfg = apply_overrides(task.Config(), [f"dataset={dataset}", f"max_steps={args.max_steps}"])
        run = Path(args.out) / dataset
        m = train(task, cfg, str(run), progress=False)
        rows.append({"dataset": dataset, **m})
        for name in ("samples", "completions"):
            shutil.copy(run / f"{name}.png", DOCS / f"pixels_{dataset}_{name}.png")
        print(f"{dataset}: {m['test_bits_per_token']:.4f} bits/token in {m['train_seconds']}s", file=sys.stderr)
    cols = [
        "dataset",
        "test_bits_per_token",
        "baseline_bits_per_token",
        "uniform_bits_per_token",
        "conditional_accuracy",
        "classifier_test_accuracy",
        "params",
        "steps",
        "best_step",
        "train_seconds",
    ]
    print(table(rows, cols))
    print(machine())
    save("pixels", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
