"""Arithmetic by sequence modelling: the targets, and what the formatting options change.

    python benchmarks/arithmetic.py targets [--ops add,sub,mul] [--set KEY=VALUE ...]
    python benchmarks/arithmetic.py options [--steps 1500]

targets: trains the default recipe once per operation (3-digit + and -, 2-digit *; ``--ops`` a subset, whose
rows replace those in the results file), reports held-out exact match, the length-generalisation set, the
carry-free baseline, wall-clock and CPU seconds; plots validation accuracy per operation against steps
(docs/tasks/arithmetic_curve.png).
options: the four combinations of format (reversed, plain) x pad_operands with the same short step budget
on 3-digit addition (docs/tasks/arithmetic_options.png). Runs one training at a time, on one thread by default
(on the shared machine two threads mostly waited for each other); writes benchmarks/results/arithmetic*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"
OPS = {"add": "+", "sub": "-", "mul": "*"}


def run(settings: list[str]) -> tuple[dict, list[dict]]:
    """Train ``arithmetic`` with ``settings``; the metrics (plus the process's CPU seconds) and the log."""
    task = get_task("arithmetic")
    cfg = apply_overrides(task.Config(), settings)
    with tempfile.TemporaryDirectory() as d:
        cpu = time.process_time()
        metrics = train(task, cfg, d, progress=False)
        metrics["cpu_seconds"] = round(time.process_time() - cpu, 1)  # all threads, evaluation included
        log = [json.loads(x) for x in (Path(d) / "log.jsonl").read_text().splitlines()]
    return metrics, log


def plot(curves: dict[str, list[dict]], keys: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, log in curves.items():
            ax.plot([e["step"] for e in log], [e[key] for e in log], marker=".", label=name)
        ax.set_title(key.replace("_", " ").replace("val ", "validation "))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def targets(names: list[str], settings: list[str]) -> None:
    """One model per operation (3-digit + and -, 2-digit *), each with the default recipe. The rows (and curves)
    of operations not named are kept from the results file, so the three can run as parallel jobs; every row
    records its own command, date and settings."""
    command = " ".join(["python", *sys.argv])
    path = RESULTS / "arithmetic.json"
    mine, my_curves = {}, {}
    for name in names:
        op = OPS[name]
        m, log = run([f"ops={op}", *settings])
        my_curves[name] = log
        mine[op] = {"ops": op, "command": command, "date": machine()["date"], "settings": settings, **m}
        mine[op].update(test_acc=m[f"test_acc_{name}"], carryfree_acc=m[f"carryfree_acc_{name}"])
        print(mine[op], file=sys.stderr)
        previous = json.loads(path.read_text()) if path.exists() else {}  # re-read: a parallel job may have written
        rows = {**{r["ops"]: r for r in previous.get("rows", []) if "date" in r}, **mine}
        curves = {**previous.get("logs", {}), **my_curves}
        curves = {n: curves[n] for n in OPS if OPS[n] in rows}
        ordered = [rows[o] for o in OPS.values() if o in rows]
        save("arithmetic", command, ordered, {"logs": curves})
    plot_one(curves, DOCS / "arithmetic_curve.png")
    cols = ["ops", "test_acc", "test_acc_longer", "carryfree_acc", "params", "steps", "best_step"]
    print(table(ordered, [*cols, "date", "train_seconds", "cpu_seconds"]))
    print(machine())


def plot_one(curves: dict[str, list[dict]], path: Path) -> None:
    """Validation exact match of each operation's model against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, log in curves.items():
        ax.plot([e["step"] for e in log], [e[f"val_acc_{name}"] for e in log], marker=".", label=f"{OPS[name]} model")
    ax.set_xlabel("step")
    ax.set_ylabel("validation exact match")
    ax.set_title("one model per operation (3-digit + and -, 2-digit *)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def options(steps: int) -> None:
    """The four formats on 3-digit addition, the same short budget each."""
    rows, curves = [], {}
    for form in ("reversed", "plain"):
        for pad in (True, False):
            name = f"{form}, {'padded' if pad else 'unpadded'}"
            settings = ["ops=+", f"format={form}", f"pad_operands={pad}", f"max_steps={steps}"]
            m, log = run(settings)
            curves[name] = log
            rows.append({"format": name, **m})
            print(rows[-1], file=sys.stderr)
    plot(curves, ["val_acc_add", "val_loss"], DOCS / "arithmetic_options.png", f"3-digit +, {steps} steps each")
    cols = ["format", "test_acc_add", "test_acc_longer", "test_loss", "steps"]
    print(table(rows, [*cols, "train_seconds", "cpu_seconds"]))
    print(machine())
    save("arithmetic_options", " ".join(["python", *sys.argv]), rows, {"logs": curves})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("targets")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override the default recipe")
    t.add_argument("--ops", default="add,sub,mul", help="comma-separated subset of add,sub,mul")
    o = sub.add_parser("options")
    o.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (see docs/tasks/arithmetic.md)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "targets":
        names = [n.strip() for n in args.ops.split(",") if n.strip()]
        if not names or set(names) - set(OPS):
            ap.error(f"--ops {args.ops}: choose from {','.join(OPS)}")
        targets(names, args.set)
    else:
        options(args.steps)


if __name__ == "__main__":
    main()
