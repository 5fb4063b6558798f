"""Record or check the behaviour golden: every task's default recipe for a few steps -> its metrics.json.

    python scripts/golden.py record            # writes tests/golden/metrics/TASK.json (before a refactor)
    python scripts/golden.py check [TASK ...]   # re-runs and compares every number exactly

A refactor that must not change behaviour keeps every number identical (one thread, fixed seed, no time
budget). Wall-clock fields (anything counting seconds) are left out: they measure the machine, not the code.
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
SETTINGS = [f"max_steps={STEPS}", "max_time=0", f"eval_every={STEPS // 2}", "seed=1337"]
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
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        cmd = [sys.executable, "-m", "tinyformers", "train", name, "--out", str(out), "--no-progress", "--set"]
        proc = subprocess.run(cmd + SETTINGS, capture_output=True, text=True, env=_env())
        if proc.returncode != 0:
            raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        return stable(json.loads((out / "metrics.json").read_text()))


def main(argv: list[str]) -> int:
    mode, names = (argv[0] if argv else "check"), argv[1:]
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
        diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
        print(f"{name}: {'identical' if not diff else 'DIFFERS ' + json.dumps(diff)}")
        if diff:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
