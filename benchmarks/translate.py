"""German -> English translation: what a time budget of CPU training reaches (BLEU vs time), against baselines.

    python benchmarks/translate.py [--budgets 600,1800] [--threads 1]

One training run of the default recipe per budget (seconds of training, the schedule following the clock),
evaluated on the 1,003 held-out test sentences with greedy and beam search. Prints a Markdown table, writes
benchmarks/results/translate.json, docs/tasks/translate_bleu_vs_time.png (validation BLEU during training)
and docs/tasks/translate_cross_attention.png (the last run's cross-attention on one sentence).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine, save, table

from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task, load_run

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"
EXAMPLES = [
    "Ich habe heute keine Zeit.",
    "Das Wetter ist heute sehr schön.",
    "Wir müssen morgen früh aufstehen.",
    "Er hat das Buch nicht gelesen.",
]


def plot_curves(curves: dict[int, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for budget, log in curves.items():
        ax.plot(
            [e["train_seconds"] / 60 for e in log],
            [e["val_bleu_greedy"] for e in log],
            marker="o",
            label=f"{budget // 60}-minute run (validation, greedy)",
        )
    lookup = next(iter(curves.values()))[-1].get("lookup_bleu")
    if lookup is not None:
        ax.axhline(lookup, color="gray", linestyle="--", label="word-by-word lookup (validation)")
    ax.set_xlabel("training time on a loaded 2-core CPU (minutes)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="600,1800", help="training seconds per run, comma-separated")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    ap.add_argument("--eval-every", type=int, default=150)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("translate")
    rows, curves, examples = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for budget in (int(b) for b in args.budgets.split(",")):
            cfg = apply_overrides(
                task.Config(), [f"max_time={budget}", "max_steps=1000000", f"eval_every={args.eval_every}"]
            )
            run = Path(tmp) / f"run{budget}"
            wall, cpu = time.perf_counter(), time.process_time()
            m = train(task, cfg, run, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append({"budget_s": budget, **m, "wall_s_with_eval": round(wall), "cpu_s_with_eval": round(cpu)})
            curves[budget] = RunDir(run).read_log()
            _, run_cfg, meta, model = load_run(run)
            examples[budget] = dict(zip(EXAMPLES, task.predict(model, run_cfg, meta, EXAMPLES), strict=True))
            task.predict(model, run_cfg, meta, EXAMPLES[:1], show_attention=DOCS / "translate_cross_attention.png")
            print(f"{budget}s: {m}", file=sys.stderr)
    cols = [
        "budget_s",
        "steps",
        "test_bleu_greedy",
        "test_bleu_beam",
        "test_chrf",
        "copy_bleu",
        "lookup_bleu",
        "test_loss",
        "params",
        "train_seconds",
        "cpu_s_with_eval",
    ]
    print(table(rows, cols))
    print(machine())
    plot_curves(curves, DOCS / "translate_bleu_vs_time.png")
    extra = {"threads": args.threads, "curves": curves, "examples": examples}
    save("translate", " ".join(["python", *sys.argv]), rows, extra)


if __name__ == "__main__":
    main()
