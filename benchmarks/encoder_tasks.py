"""Encoder tasks (sentiment, ner): baseline vs from-scratch encoder vs fine-tuned all-MiniLM-L6-v2, on the
same fixed test sets, with step budgets.

    python benchmarks/encoder_tasks.py --task sentiment [--runs DIR]
    python benchmarks/encoder_tasks.py --task ner [--runs DIR]

Prints a Markdown table; writes benchmarks/results/<task>.json, docs/tasks/<task>_validation.png (the
validation metric against steps, baseline as a line) and docs/tasks/<task>_attention.png (the fine-tuned
MiniLM's attention on one example). Runs are kept in --runs (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from common import machine, save, table

from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task, load_run

DOCS = Path(__file__).parent.parent / "docs" / "tasks"

# the settings of each run on top of the task's defaults (the defaults are the from-scratch recipe)
RECIPES = {
    "sentiment": {
        "scratch": [],
        "minilm": ["init=minilm", "lr=1e-4", "batch_size=16", "max_steps=60", "warmup_steps=6", "eval_every=60"],
    },
    "ner": {
        "scratch": [],
        "minilm": ["init=minilm", "lr=1e-4", "batch_size=16", "max_steps=150", "warmup_steps=15", "eval_every=50"],
    },
}
METRICS = {"sentiment": ("macro_f1", "test_accuracy"), "ner": ("entity_f1", "test_entity_precision")}
EXAMPLES = {
    "sentiment": "the new bus line is late again, what a great start to the day",
    "ner": "new york is cold today",
}


def plot_validation(task: str, logs: dict[str, list[dict]], metric: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, log in logs.items():
        ax.plot([e["step"] for e in log], [e[f"val_{metric}"] for e in log], marker="o", label=name)
    baseline = next(iter(logs.values()))[0][f"baseline_{metric}"]
    ax.axhline(baseline, color="grey", linestyle="--", label="baseline")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"validation {metric.replace('_', ' ')}")
    ax.set_title(f"{task}: validation {metric.replace('_', ' ')} during training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(RECIPES), required=True)
    ap.add_argument("--runs", type=Path, help="keep the run directories here")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 because on the shared, oversubscribed 2-core machine a training step of the "
        "from-scratch sentiment encoder took 10.3 s with 2 threads and 0.96 s with 1 (2026-11-22)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs_dir = args.runs or Path(tempfile.mkdtemp(prefix=f"{args.task}-"))
    metric, second = METRICS[args.task]
    rows, logs = [], {}
    for init, settings in RECIPES[args.task].items():
        task = get_task(args.task)
        cfg = apply_overrides(task.Config(), settings)
        out = runs_dir / init
        m = train(task, cfg, out, overwrite=True, progress=False)
        rows.append({"model": init, "settings": " ".join(settings) or "(defaults)", **m})
        logs[init] = RunDir(out).read_log()
        print(f"{args.task} {init}: test {metric} {m[f'test_{metric}']:.4f} in {m['train_seconds']}s", file=sys.stderr)
    baseline = {"model": "baseline", f"test_{metric}": rows[0][f"baseline_{metric}"]}
    if args.task == "sentiment":
        baseline["test_accuracy"] = rows[0]["baseline_accuracy"]
    cols = ["model", f"test_{metric}", second, "params", "steps", "best_step", "train_seconds", "settings"]
    print(table([baseline, *rows], cols))
    print(json.dumps(machine()))
    plot_validation(args.task, logs, metric, DOCS / f"{args.task}_validation.png")
    task, cfg, meta, model = load_run(runs_dir / "minilm")
    task.attention(model, cfg, meta, EXAMPLES[args.task], out=DOCS / f"{args.task}_attention.png")
    save(args.task, " ".join(["python", *sys.argv]), [baseline, *rows], {"runs": str(runs_dir)})


if __name__ == "__main__":
    main()
