"""Languages: model vs. the exact Bayes ceiling vs. the bag-of-counts baseline, for symbols and floats, across p.

    OMP_NUM_THREADS=1 python benchmarks/languages.py [--ps 0.1,0.03,0.3]

Every run uses the task's recipe with a step budget (so the result does not depend on the machine's load).
Prints a Markdown table; writes benchmarks/results/languages.json and docs/tasks/languages_accuracy_vs_p.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import machine, save, table

from tinyformers.tasks import get_task
from tinyformers.tasks.base import apply_overrides
from tinyformers.training import train

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, variant in zip(axes, ("symbols", "floats"), strict=True):
        sel = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["p"])
        if not sel:  # a partial sweep
            continue
        ps = [r["p"] for r in sel]
        for key, label, style in [
            ("bayes_accuracy", "Bayes (exact ceiling)", "k--"),
            ("test_accuracy", "transformer", "o-"),
            ("baseline_accuracy", "bag of counts + logistic regression", "s-"),
        ]:
            ax.plot(ps, [r[key] for r in sel], style, label=label)
        ax.axhline(1 / 3, color="grey", lw=0.8)
        ax.set(xscale="log", xlabel="p (probability that a step moves)", title=variant)
        ax.set_xticks(ps, [f"{p:g}" for p in ps], minor=False)
        ax.set_xticks([], minor=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (3 languages)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ps", default="0.1,0.03,0.3", help="comma-separated values of p (the default first)")
    ap.add_argument("--variants", default="symbols,floats")
    ap.add_argument("--max-steps", type=int, help="optimizer steps per run (default: the task's recipe)")
    args = ap.parse_args()
    task = get_task("languages")
    rows = []
    for p in map(float, args.ps.split(",")):
        for variant in args.variants.split(","):
            budget = [f"max_steps={args.max_steps}"] if args.max_steps else []
            cfg = apply_overrides(task.Config(), [f"variant={variant}", f"p={p}", *budget])
            with tempfile.TemporaryDirectory() as d:
                m = train(task, cfg, d, progress=False)
                if p == task.Config.p:  # the default p: keep the posterior plot for the docs
                    shutil.copy(Path(d) / "posterior.png", DOCS / f"languages_posterior_{variant}.png")
            rows.append(
                {"variant": variant, "p": p, **m, "gap_points": 100 * (m["bayes_accuracy"] - m["test_accuracy"])}
            )
            print(f"{variant} p={p}: {m['test_accuracy']:.4f} (Bayes {m['bayes_accuracy']:.4f})", file=sys.stderr)
            plot(rows, DOCS / "languages_accuracy_vs_p.png")  # after every run: a partial sweep is still saved
            save("languages", " ".join(["python", *sys.argv]), rows)
    cols = [
        "variant",
        "p",
        "test_accuracy",
        "bayes_accuracy",
        "gap_points",
        "baseline_accuracy",
        "test_loss",
        "bayes_loss",
        "params",
        "steps",
        "train_seconds",
    ]
    print(table(rows, cols))
    print(machine())


if __name__ == "__main__":
    main()
