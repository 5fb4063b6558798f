"""Sanity tasks (copy / reverse / sort) x (encoder-decoder, decoder-only) with the default recipe.

    python benchmarks/sanity.py [--max-time 120]

Prints a table of held-out exact match and training time; writes benchmarks/results/sanity.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-time", type=float, default=120.0, help="training budget per run, seconds")
    ap.add_argument("--tasks", default="copy,reverse,sort")
    args = ap.parse_args()
    rows = []
    for name in args.tasks.split(","):
        for arch in ("seq2seq", "decoder"):
            task = get_task(name)
            cfg = apply_overrides(task.Config(), [f"arch={arch}", f"max_time={args.max_time}"])
            with tempfile.TemporaryDirectory() as d:
                m = train(task, cfg, d, progress=False)
            rows.append({"task": name, "arch": arch, **m})
            print(
                f"{name} {arch}: exact match {m['test_exact_match']:.4f} in {m['train_seconds']}s",
                file=sys.stderr,
            )
    cols = [
        "task",
        "arch",
        "test_exact_match",
        "baseline_exact_match",
        "params",
        "steps",
        "best_step",
        "train_seconds",
    ]
    print(table(rows, cols))
    print(machine())
    save("sanity", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
