"""Languages: model vs. the exact Bayes ceiling vs. the bag-of-counts baseline, for symbols and floats, across p.

    OMP_NUM_THREADS=1 python benchmarks/languages.py [--ps 0.1,0.03,0.3] [--ablations inputs=values] [--jobs 2]

Every run uses the task's recipe with its step budget (so the result does not depend on the machine's load).
On a loaded machine the wall-clock ``train_seconds`` overstate what the run takes, so each run also measures
the CPU time of one training step of its model (``cpu_ms_per_step``, one thread, process time) and reports
``cpu_train_seconds`` = steps x that: what the same steps take on one idle core, near enough.
``--ablations`` adds runs at the default p with other settings (e.g. ``inputs=values``, ``pooling=mean``).
Prints a Markdown table; writes benchmarks/results/languages.json and docs/tasks/languages_accuracy_vs_p.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import optimizer_for, train
from tinyformers.tasks import get_task

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"


def cpu_ms_per_step(cfg, steps: int = 20) -> float:
    """Process (CPU) time of one optimizer step of the recipe's model on a random batch, in ms."""
    task = get_task("languages")
    model = task.model(cfg, {})
    optimizer = optimizer_for(model, cfg)
    shape = (cfg.batch_size, cfg.length)
    x = torch.randint(0, 10, shape) if cfg.variant == "symbols" else torch.randn(shape)
    labels = torch.randint(0, 3, (cfg.batch_size,))

    def step() -> None:
        model(x=x, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm up the allocator
        step()
    start = time.process_time()
    for _ in range(steps):
        step()
    return 1000 * (time.process_time() - start) / steps


def run(variant: str, p: float, setting: str, budget: list[str]) -> dict:
    """One training run of the recipe (plus ``setting``, e.g. 'inputs=values'); returns its table row."""
    torch.set_num_threads(1)
    task = get_task("languages")
    extra = [setting] if setting != "recipe" else []
    cfg = apply_overrides(task.Config(), [f"variant={variant}", f"p={p}", *extra, *budget])
    with tempfile.TemporaryDirectory() as d:
        m = train(task, cfg, d, progress=False)
        if p == task.Config.p and setting == "recipe":  # the default: keep the posterior plot for the docs
            shutil.copy(Path(d) / "posterior.png", DOCS / f"languages_posterior_{variant}.png")
    ms = cpu_ms_per_step(cfg)
    row = {"variant": variant, "p": p, "setting": setting, **m}
    row.update(
        gap_points=100 * (m["bayes_accuracy"] - m["test_accuracy"]),
        cpu_ms_per_step=round(ms, 1),
        cpu_train_seconds=round(ms * m["steps"] / 1000, 1),
    )
    print(f"{variant} p={p} {setting}: {m['test_accuracy']:.4f} (Bayes {m['bayes_accuracy']:.4f})", file=sys.stderr)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, variant in zip(axes, ("symbols", "floats"), strict=True):
        sel = sorted((r for r in rows if r["variant"] == variant and r["setting"] == "recipe"), key=lambda r: r["p"])
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
    ap.add_argument("--ablations", default="", help="settings also run at the default p: inputs=values,...")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (one thread each)")
    args = ap.parse_args()
    budget = [f"max_steps={args.max_steps}"] if args.max_steps else []
    variants = args.variants.split(",")
    jobs = [(v, p, "recipe") for p in map(float, args.ps.split(",")) for v in variants]
    default_p = get_task("languages").Config.p
    jobs += [(v, default_p, s) for s in args.ablations.split(",") if s for v in variants]
    rows = []
    machine()  # calibrate now, before any worker trains: a matmul measured next to a training is not the machine's
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, v, p, s, budget) for v, p, s in jobs]
        for future in futures:  # in submission order; a partial sweep is still saved
            rows.append(future.result())
            plot(rows, DOCS / "languages_accuracy_vs_p.png")
            save("languages", " ".join(["python", *sys.argv]), rows)
    cols = [
        "variant",
        "p",
        "setting",
        "test_accuracy",
        "bayes_accuracy",
        "gap_points",
        "baseline_accuracy",
        "test_loss",
        "bayes_loss",
        "params",
        "steps",
        "train_seconds",
        "cpu_train_seconds",
    ]
    print(table(rows, cols))
    print(machine())


if __name__ == "__main__":
    main()
