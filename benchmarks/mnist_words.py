"""mnist-words on MNIST-5k: the image-to-word encoder-decoder (greedy and beam decoding) against the same ViT
encoder trained as a 10-way classifier with a name lookup, same split, recipe and step budget.

    python benchmarks/mnist_words.py [--runs DIR] [--steps N]

Trains (one process at a time, one thread: the machine is shared) ``tinyformers train mnist-words`` with the
default recipe and with ``--set model=classifier``, into ``--runs`` (a run already complete there is reused,
not retrained); re-evaluates the words run with beam search; prints a Markdown table; writes
benchmarks/results/mnist_words.json and docs/tasks/mnist-words_*.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from common import machine, save, table

from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import evaluate_run, train
from tinyformers.tasks import get_task, load_run
from tinyformers.viz.plots import plt

DOCS = Path(__file__).parent.parent / "docs" / "tasks"


def run(name: str, overrides: list[str], runs: Path) -> dict:
    """Train (unless already done) and return metrics.json of ``runs/name``."""
    out = runs / name
    if not (out / "metrics.json").exists():
        task = get_task("mnist-words")
        train(task, apply_overrides(task.Config(), overrides), out, progress=False)
    return json.loads((out / "metrics.json").read_text())


def plot_curves(runs: Path, path: Path) -> None:
    """Validation word accuracy against steps for both models."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, label in (("words", "encoder-decoder (greedy)"), ("classifier", "classifier + lookup")):
        log = RunDir(runs / name).read_log()
        ax.plot([e["step"] for e in log], [e["val_word_accuracy"] for e in log], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation word accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("MNIST-5k, 500 validation images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="/tmp/mnist_words_bench", help="where the runs are (reused if complete)")
    ap.add_argument("--steps", type=int, default=0, help="override max_steps (0 = the task's default)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = Path(args.runs)
    steps = [f"max_steps={args.steps}"] if args.steps else []
    rows = []
    words = run("words", steps, runs)
    rows.append({"model": "encoder-decoder", "decoding": "greedy", **words})
    beam = evaluate_run(get_task("mnist-words"), runs / "words", ["num_beams=4"])
    rows.append({"model": "encoder-decoder", "decoding": "beam 4", **{**words, **beam}})
    cls = run("classifier", ["model=classifier", *steps], runs)
    rows.append({"model": "ViT classifier + lookup", "decoding": "argmax", **cls})
    for name in ("words", "classifier"):
        task, cfg, meta, model = load_run(runs / name)
        data = task.data(cfg, meta)
        for png in task.plots(model, data, cfg, str(runs / name)):
            shutil.copy(png, DOCS / f"mnist-words_{name}_{Path(png).name}")
    plot_curves(runs, DOCS / "mnist-words_val_accuracy.png")
    for r in rows:
        print(f"{r['model']} {r['decoding']}: word accuracy {r['test_word_accuracy']:.4f}", file=sys.stderr)
    cols = [
        "model",
        "decoding",
        "test_word_accuracy",
        "test_char_error_rate",
        "test_valid_name_rate",
        "params",
        "steps",
        "best_step",
        "train_seconds",
    ]
    print(table(rows, cols))
    print(machine())
    save("mnist_words", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
