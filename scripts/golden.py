"""Record or check the behaviour golden: every task's default recipe for a few steps -> its metrics.json.

    python scripts/golden.py record            # writes tests/golden/metrics/TASK.json (before a refactor)
    python scripts/golden.py check [TASK ...]   # re-runs and compares every number exactly

A refactor that must not change behaviour keeps every number identical (one thread, fixed seed, no time
budget, fp32: ``amp=off``, so a CPU with native bf16 and one without give the same numbers). Wall-clock fields
(anything counting seconds) are left out: they measure the machine, not the code. On another kind of host the
fp32 kernels themselves round differently in the last digits (the golden was recorded on an AMD EPYC; on an
Intel Xeon with AMX reverse's test loss differs in the 8th significant digit), so :func:`same` compares
numbers to a relative 1e-5 (far below any change of behaviour: a changed step, seed or recipe moves them in
the 1st–3rd digit) and everything else exactly.

sentiment and ner train a BPE tokenizer with Hugging Face ``tokenizers``, whose BpeTrainer is not deterministic
across processes: with ``continuing_subword_prefix`` ("##") it numbers the "##x" pieces while iterating over a
hash map whose order is randomised per process, and merges of equal count are broken by those ids
(huggingface/tokenizers#1794, PR #2066; no setting fixes it, not RAYON_NUM_THREADS=1 nor
TOKENIZERS_PARALLELISM=false). Until 2026-12-07 they were therefore reported here, not failed, when they differed;
``tasks._text.train_bpe`` now numbers the pieces itself before training, so their numbers are golden like the
others' (re-recorded then).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "metrics"
STEPS = 12
# tasks whose default data or model is slow to build get a smaller eval; every other setting is the default
SETTINGS = [f"max_steps={STEPS}", "max_time=0", f"eval_every={STEPS // 2}", "seed=1337", "amp=off"]
TIME_KEYS = ("seconds", "time", "per_s", "steps_per", "examples_per", "tokens_per")


def task_names() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "tinyformers", "list"], capture_output=True, text=True, check=True, env=_env()
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def stable(metrics: dict) -> dict:
    return {k: v for k, v in sorted(metrics.items()) if not any(t in k for t in TIME_KEYS)}


def run_task(name: str) -> dict:
    """``name``'s stable metrics, trained in a fresh process."""
    return run_tasks([name])[name]


def run_tasks(names: list[str]) -> dict[str, dict]:
    """The stable metrics of every task in ``names``, trained one after the other in one fresh process (one
    import of torch and the tasks for all of them; each run seeds itself, so the numbers are those of a
    process per task)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "train-here", tmp, *names]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(names)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        return {name: stable(json.loads((Path(tmp) / name / "metrics.json").read_text())) for name in names}


def train_here(out: str, names: list[str]) -> int:
    """Train each task of ``names`` into ``out/NAME`` in this process (``run_tasks``' child)."""
    from tinyformers.apps.cli import main as cli  # the child only: the parent needs no torch

    for name in names:
        code = cli(["train", name, "--out", str(Path(out) / name), "--no-progress", "--set", *SETTINGS])
        if code:
            return code
    return 0


def main(argv: list[str]) -> int:
    mode, names = (argv[0] if argv else "check"), argv[1:]
    if mode == "train-here":
        return train_here(names[0], names[1:])
    names = names or task_names()
    failed = []
    for name in names:
        got = run_task(name)
        path = GOLDEN / f"{name}.json"
        if mode == "record":
            GOLDEN.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
            print(f"recorded {name}: {len(got)} numbers")
            continue
        want = json.loads(path.read_text())
        diff = differences(want, got)
        print(f"{name}: {'identical' if not diff else 'DIFFERS ' + json.dumps(diff)}")
        if diff:
            failed.append(name)
    return 1 if failed else 0


def same(want: object, got: object, rel: float = 1e-5) -> bool:
    """Equal, except that two floats may differ by ``rel`` of their size (kernels of another kind of host)."""
    if isinstance(want, float) and isinstance(got, float):
        return abs(want - got) <= rel * max(abs(want), abs(got), 1e-12)
    return want == got


def differences(want: dict, got: dict) -> dict:
    """Key -> (golden, now) for every number that is not :func:`same` (a key missing on one side included)."""
    return {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if not same(want.get(k), got.get(k))}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
