"""Learning curves of the text tasks from scratch: held-out metric against training-set size, next to the linear
baseline fitted on the same subset — what more labelled data would do to the gap.

    OMP_NUM_THREADS=1 python benchmarks/text_learning_curve.py [--tasks sentiment,ner] \
        [--fractions 0.125,0.25,0.5,1] [--budget 120] [--set KEY=VALUE ...]

Every run trains the task's from-scratch recipe (plus ``--set``) on the first ``fraction`` of a seeded
permutation of its training split (``train_fraction``: nested subsets, validation and test unchanged) for
``--budget`` CPU-seconds of the training process (``clock=cpu``; ``max_steps`` out of the way), tests the
checkpoint with the best validation metric, and fits the baseline (sentiment: TF-IDF + logistic regression;
ner: per-token logistic regression) on the same subset. The gap (transformer - baseline) is then fitted as a
straight line in log2(training examples); where that line crosses zero, if it rises, is printed as an
extrapolation (``crossing_examples``), not a measurement.

Prints a Markdown table; writes benchmarks/results/text_learning_curve.json and
docs/tasks/{task}_learning_curve.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task
from tinyformers.tasks._text import training_subset

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"
METRIC = {"sentiment": ("test_macro_f1", "baseline_macro_f1"), "ner": ("test_entity_f1", "baseline_entity_f1")}


def gap_line(rows: list[dict]) -> tuple[float, float] | None:
    """Least-squares ``gap = a + b log2(examples)`` over ``rows``; None with fewer than two sizes."""
    xs = [math.log2(r["train_examples"]) for r in rows]
    ys = [r["gap"] for r in rows]
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def plot(task: str, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, baseline = METRIC[task]
    n = [r["train_examples"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(n, [r[metric] for r in rows], "o-", label="transformer from scratch")
    ax.plot(n, [r[baseline] for r in rows], "s--", label="linear baseline, same subset")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled training examples")
    label = metric.removeprefix("test_").replace("_", " ")
    ax.set_ylabel(label)
    ax.set_title(f"{task}: held-out {label} vs training-set size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="sentiment,ner")
    ap.add_argument("--fractions", default="0.125,0.25,0.5,1")
    ap.add_argument("--budget", type=float, default=120.0, help="CPU-seconds of training per run")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other settings of every run")
    ap.add_argument("--out", default="text_learning_curve", help="results name (benchmarks/results/NAME.json)")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    rows, fits = [], {}
    for name in args.tasks.split(","):
        task = get_task(name)
        metric, baseline = METRIC[name]
        task_rows = []
        full = len(task.data(apply_overrides(task.Config(), args.set)).splits["train"]["labels"])
        for fraction in fractions:
            settings = [
                f"train_fraction={fraction}",
                "clock=cpu",
                f"max_time={args.budget}",
                "max_steps=1000000",
                *args.set,
            ]
            cfg = apply_overrides(task.Config(), settings)
            with tempfile.TemporaryDirectory() as d:
                m = train(task, cfg, d, progress=False)
            n = len(training_subset(range(full), fraction, cfg.split_seed))  # the subset's size, as the task cuts it
            r = {
                "task": name,
                "fraction": fraction,
                "train_examples": n,
                "budget_cpu_s": args.budget,
                metric: m[metric],
                baseline: m[baseline],
                "gap": m[metric] - m[baseline],
                "steps": m.get("steps"),
                "best_step": m.get("best_step"),
                "train_seconds": m.get("train_seconds"),
                "settings": " ".join(settings),
            }
            task_rows.append(r)
            print(f"{name} fraction={fraction} ({n} examples): {m[metric]:.4f} vs {m[baseline]:.4f}", file=sys.stderr)
        line = gap_line(task_rows)
        fit: dict[str, float | None] = {"intercept": None, "slope_per_doubling": None, "crossing_examples": None}
        if line is not None:
            a, b = line
            fit = {"intercept": a, "slope_per_doubling": b, "crossing_examples": 2 ** (-a / b) if b > 0 else None}
        fits[name] = fit
        plot(name, task_rows, DOCS / f"{name}_learning_curve.png")
        rows += task_rows
    cols = ["task", "fraction", "train_examples", "test_macro_f1", "test_entity_f1", "baseline_macro_f1"]
    cols += ["baseline_entity_f1", "gap", "steps", "best_step", "train_seconds"]
    print(table(rows, cols))
    for name, fit in fits.items():
        print(
            f"{name}: gap per doubling of the data {fit['slope_per_doubling']}, crosses zero at (extrapolated) "
            f"{fit['crossing_examples']} examples"
        )
    print(machine())
    save(args.out, " ".join(["python", *sys.argv]), rows, {"fits": fits})


if __name__ == "__main__":
    main()
