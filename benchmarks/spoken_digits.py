"""Spoken digits: accuracy on espeak-ng voices never heard in training and on flite's voices (a speaker
shift), against logistic regression on time-pooled log-mel bands, for the default recipe.

    OMP_NUM_THREADS=1 python benchmarks/spoken_digits.py [--max-steps N] [--set key=value ...] [--extra-seeds 1,2]

Prints a table; writes benchmarks/results/spoken_digits.json and the run's pictures to
docs/tasks/spoken-digits_{confusion,confusion_flite,log_mel}.png. The first run synthesises the corpus
(cached in ~/.cache/tinyformers/spoken-digits); its time is not training time. ``train_seconds`` is wall
time of the training steps; ``cpu_seconds`` the CPU time this process used for training and evaluation,
the fairer number on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task

DOCS = Path(__file__).parent.parent / "docs" / "tasks"
PICTURES = ("confusion", "confusion_flite", "log_mel")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, help="default: the recipe's")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other settings of the recipe")
    ap.add_argument("--no-pictures", action="store_true", help="do not copy the PNGs into docs/tasks")
    ap.add_argument(
        "--extra-seeds",
        default="",
        help="comma-separated training seeds (init, batches, augmentation) also run after the recipe's own: "
        "the spread between seeds; the voice split (data_seed) stays",
    )
    args = ap.parse_args()
    task = get_task("spoken-digits")
    settings = [*args.set, *([f"max_steps={args.max_steps}"] if args.max_steps else [])]
    t0 = time.perf_counter()
    data = task.data(apply_overrides(task.Config(), settings))  # synthesises the corpus on the first run
    data_seconds = time.perf_counter() - t0
    print(f"data ready in {data_seconds:.0f} s: {data.meta['clips']} clips", file=sys.stderr)
    rows = []
    for seed in [None, *(int(x) for x in args.extra_seeds.split(",") if x)]:
        run_settings = settings + ([f"seed={seed}"] if seed is not None else [])
        cfg = apply_overrides(task.Config(), run_settings)
        with tempfile.TemporaryDirectory() as d:
            cpu0 = time.process_time()
            m = train(task, cfg, d, progress=False)
            m["cpu_seconds"] = round(time.process_time() - cpu0, 1)  # this process's CPU time: training + evals
            if seed is None and not args.no_pictures:
                for name in PICTURES:
                    if (Path(d) / f"{name}.png").exists():
                        shutil.copy(Path(d) / f"{name}.png", DOCS / f"spoken-digits_{name}.png")
        rows.append(
            {"settings": " ".join(run_settings) or "defaults", "seed": cfg.seed, "clips": data.meta["clips"], **m}
        )
    cols = [
        "settings",
        "test_accuracy",
        "test_accuracy_flite",
        "baseline_accuracy",
        "baseline_accuracy_flite",
        "params",
        "steps",
        "best_step",
        "train_seconds",
        "cpu_seconds",
    ]
    print(table(rows, cols))
    print(machine(), f"threads={torch.get_num_threads()}")
    save("spoken_digits", " ".join(["python", *sys.argv]), rows, {"data_seconds": round(data_seconds, 1)})


if __name__ == "__main__":
    main()
