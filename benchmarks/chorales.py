"""Chorales: held-out NLL per note of the note-level LM vs the n-gram baseline, with and without
transposition augmentation, for each voice asked for.

    python benchmarks/chorales.py [--max-steps 1200] [--voices soprano] [--ablate-transpose]

Prints a table; writes benchmarks/results/chorales.json and docs/tasks/chorales_sample.png (the run's
real-vs-sampled piano roll of the first held-out melody).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import machine, save, table

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task

DOCS = Path(__file__).parent.parent / "docs" / "tasks"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=1200)
    ap.add_argument("--voices", default="soprano")
    ap.add_argument("--ablate-transpose", action="store_true", help="also train without transposition")
    args = ap.parse_args()
    rows = []
    for voice in args.voices.split(","):
        for transpose in (6, 0) if args.ablate_transpose else (6,):
            task = get_task("chorales")
            cfg = apply_overrides(task.Config(), [f"voice={voice}", f"transpose={transpose}"])
            cfg = apply_overrides(cfg, [f"max_steps={args.max_steps}", "max_time=0"])
            with tempfile.TemporaryDirectory() as d:
                m = train(task, cfg, d, progress=False)
                if voice == "soprano" and transpose == 6:
                    shutil.copy(Path(d) / "sample_vs_real.png", DOCS / "chorales_sample.png")
            rows.append({"voice": voice, "transpose": transpose, **m})
            print(f"{voice} transpose={transpose}: {m['test_nll_per_note']:.3f} nats/note", file=sys.stderr)
    cols = [
        "voice",
        "transpose",
        "test_nll_per_note",
        "ngram_nll_per_note",
        "ngram_order",
        "uniform_nll_per_note",
        "params",
        "steps",
        "best_step",
        "train_seconds",
    ]
    print(table(rows, cols))
    print(machine())
    save("chorales", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
