"""Training speed of the current code against a baseline commit: every task's default recipe, the nanoGPT
configuration against benchmarks/nanogpt_ref.py, and the achieved FLOP/s against this machine's matmul ceiling.

    python benchmarks/speed.py --baseline COMMIT [--tasks copy,shakespeare] [--steps 200] [--repeats 3]
                               [--nanogpt-steps 2000] [--no-tasks] [--no-nanogpt] [--startup] [--name speed]
    python benchmarks/speed.py --no-tasks --nanogpt-compiled [--repeats 3]      # nanoGPT only, no baseline

Wrap it in ../shared/tools/measure (waits for a quiet machine, prints the verdict line to quote).

* The baseline is checked out as a detached ``git worktree`` (removed at the end); each run is a subprocess
  ``python -m tinyformers train`` with PYTHONPATH at that side's ``src``, so the two sides never share a process.
* Each task trains its default recipe for a fixed number of steps with no time budget
  (``--set max_steps=N max_time=0 eval_every=N``): the one evaluation comes after the last step, outside the
  timed training, and ``clock=wall`` makes ``train_seconds`` wall-clock for every recipe (arithmetic's counts CPU
  seconds by default: twice the wall time on 2 threads). steps/s = steps / train_seconds (metrics.json: the sum
  of the step times, compile time included); examples/s = steps/s x batch_size x grad_accum. The held-out
  metric of both sides at that step budget is in the table too: speed must not cost quality.
* ``SAME_WORK``: where a task's default recipe changed what one step computes (arithmetic's scratchpad), the
  current side runs the baseline's recipe, so the ratio measures the engine; the row's ``same_work`` says so.
* ``--baseline-set`` adds settings to the baseline side's task runs only: with ``--baseline HEAD`` it measures
  one setting of the current code, e.g. ``--baseline-set amp=off`` against the recipes' own choice (bf16 autocast
  where a task opts in on a CPU with native bf16): speed and held-out metric at equal steps.
* Runs are interleaved (baseline, current, current, baseline, ...: the order flips every repeat) and repeated;
  the table shows medians. These VMs drift +-15-20% from minute to minute.
* nanoGPT configuration (4 layers, 4 heads, 128 dims, block 64, batch 12, dropout 0, lr 1e-3 with 100 warmup
  steps): tokens/s of the reference (``nanogpt_ref.train_reference``), the baseline and the current code,
  ``--nanogpt-steps`` steps each (2,000 = nanoGPT's CPU run; compile time included in the timed steps).
  ``--nanogpt-compiled`` adds the current code with ``compile=on`` as a user's *second* run of the
  configuration: one unmeasured run first fills a fresh compile cache (``TINYFORMERS_CACHE_DIR``), then each
  measured run compiles from that cache, and its (warm) compile time counts in its tokens/s.
  ``--nanogpt-set KEY=VALUE ...`` adds the current code with those settings as one more variant (e.g.
  ``positions=learned``: nanoGPT's learned position table instead of the recipe's rotary positions). Without
  ``--baseline`` (only with ``--no-tasks``) the baseline row is left out.
* FLOP/s = tokens/s x (6 N + 12 L d T) per token (Kaplan et al. 2020 / PaLM's accounting: 6 N for the
  forward and backward matmuls of N parameters, 12 L d T for the attention scores and weighted sums of L
  layers of width d over a context of T tokens). N counts every parameter, embedding tables included (an
  overestimate for the lookups; exact for a tied output head). Reported for tasks whose batches have
  ``input_ids``; encoder-decoder and image tasks count only their input tokens, so theirs is a rough figure.
  The ceiling is the machine's calibration (``common.machine()``, :mod:`tinyformers.engine.calibration`:
  1024x1024 matmuls with torch's threads, ``--threads`` when given): fp32, and bf16 when the CPU has native
  bf16 (an emulated bf16 ceiling means nothing).

* ``--startup``: seconds from process start to the first training step done (metrics.json's
  ``first_step_seconds``: imports, data, model and, compiled, the compile) of the shakespeare recipe, current code:
  eager, compiled with an empty compile cache (``TINYFORMERS_CACHE_DIR`` a fresh directory: a first run), and
  compiled again with that cache (the second run of the same task), ``--repeats`` times.

Writes benchmarks/results/<name>.json (default ``speed``), with the calibration and the load verdict of the
whole benchmark (``machine``: a 'LOADED' run's speeds are upper bounds on time, not speeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import NANOGPT, machine, save, table

ROOT = Path(__file__).resolve().parent.parent
TASKS = r"""
import json
from tinyformers.tasks import TASKS
print(json.dumps({n: {"ready": c().data_status(c.Config()) is None, "metric": f"{c.final_split}_{c.metric}"}
                  for n, c in sorted(TASKS.items())}))
"""
REFERENCE = r"""
import json, sys
sys.path.insert(0, {bench!r})
from nanogpt_ref import train_reference
from tinyformers.tasks import get_task
task = get_task("shakespeare")
data = task.data(task.Config())
_, stats = train_reference(data.splits["train"], len(data.meta["tokenizer"]["chars"]), iters={steps})
print(json.dumps(stats))
"""


# Settings for the current side's run of a task whose default recipe now does more work per step than the
# baseline's, so that both sides train on the same problems and steps/s compares the engine, not the recipe.
# arithmetic: the default writes products with a scratchpad of partial products (format=scratchpad, since
# 2026-12-04, 7e1108d: longer sequences); the baseline's default was reversed, zero-padded answers = format=reversed.
SAME_WORK = {"arithmetic": ["format=reversed"]}


def python_env(src: Path, threads: int | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src), **(extra or {})}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_python(code: str, src: Path, threads: int | None, timeout: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], env=python_env(src, threads), capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_run(
    src: Path, task: str, settings: list[str], threads: int | None, timeout: float, env: dict[str, str] | None = None
) -> dict:
    """One ``tinyformers train`` in a subprocess; its metrics plus the recipe's batch size and layout."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "tinyformers", "train", task, "--out", d, "--overwrite", "--no-progress"]
        out = subprocess.run(
            [*cmd, "--set", *settings],
            env=python_env(src, threads, env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
            return {"error": tail}
        metrics = json.loads((Path(d) / "metrics.json").read_text())
        config = json.loads((Path(d) / "config.json").read_text())["config"]
    return {"metrics": metrics, "config": config}


def flops_per_token(metrics: dict, config: dict) -> float | None:
    """6 N + 12 L d T (see the module docstring), or None when the run has no token count."""
    tokens, steps = metrics.get("train_tokens"), metrics.get("steps")
    if not tokens or not steps or "d_model" not in config:
        return None
    t = tokens / (steps * config.get("batch_size", 1) * config.get("grad_accum", 1))  # tokens per sequence
    layers = sum(v for k, v in config.items() if k.startswith("n_") and k.endswith("layers") and isinstance(v, int))
    return 6 * metrics["params"] + 12 * layers * config["d_model"] * t


def summarise(runs: list[dict], metric: str | None) -> dict:
    """Medians of a side's runs of one task."""
    ok = [r for r in runs if "metrics" in r]
    if not ok:
        return {"error": runs[-1].get("error", "no run") if runs else "no run"}
    steps_s = [r["metrics"]["steps"] / max(r["metrics"]["train_seconds"], 1e-9) for r in ok]
    cfg = ok[0]["config"]
    per_step = cfg.get("batch_size", 1) * cfg.get("grad_accum", 1)
    out = {
        "steps_per_s": statistics.median(steps_s),
        "examples_per_s": statistics.median(steps_s) * per_step,
        "runs_steps_per_s": [round(x, 3) for x in steps_s],
    }
    tokens_s = [r["metrics"]["tokens_per_s"] for r in ok if "tokens_per_s" in r["metrics"]]
    if tokens_s:
        out["tokens_per_s"] = statistics.median(tokens_s)
    fpt = flops_per_token(ok[0]["metrics"], cfg)
    if fpt and tokens_s:
        out["gflops"] = statistics.median(tokens_s) * fpt / 1e9
    if metric and all(metric in r["metrics"] for r in ok):
        out["metric"] = statistics.median(r["metrics"][metric] for r in ok)
    return out


def ceiling_fraction(row: dict, cal: dict) -> None:
    if "gflops" in row and cal.get("fp32_gflops"):  # None with TINYFORMERS_CALIBRATION=off
        row["frac_fp32"] = row["gflops"] / cal["fp32_gflops"]
        if cal.get("bf16_gflops"):
            row["frac_bf16"] = row["gflops"] / cal["bf16_gflops"]


def bench_tasks(args: argparse.Namespace, sides: dict[str, Path], cal: dict) -> list[dict]:
    known = run_python(TASKS, sides["current"], args.threads, 300)
    ready = {n: k["ready"] for n, k in known.items()}
    names = args.tasks.split(",") if args.tasks else sorted(ready)
    # clock=wall: steps/s from wall-clock seconds on both sides (a recipe with clock=cpu, arithmetic's, would count
    # CPU seconds of every thread in train_seconds: half the steps/s on 2 threads)
    settings = [f"max_steps={args.steps}", "max_time=0", f"eval_every={args.steps}", "clock=wall", *args.set]
    runs: dict[str, dict[str, list[dict]]] = {n: {"baseline": [], "current": []} for n in names}
    for rep in range(args.repeats):
        for name in names:
            if not ready.get(name, False):
                continue
            order = ["baseline", "current"] if rep % 2 == 0 else ["current", "baseline"]
            for side in order:
                extra = args.baseline_set if side == "baseline" else SAME_WORK.get(name, [])
                runs[name][side].append(train_run(sides[side], name, [*settings, *extra], args.threads, args.timeout))
            print(name, rep, {s: runs[name][s][-1].get("error", "ok") for s in order}, file=sys.stderr)
    rows = []
    for name in names:
        if not ready.get(name, False):
            rows.append({"task": name, "note": "data missing here"})
            continue
        metric = known[name]["metric"]  # the task's held-out metric, e.g. test_accuracy
        old, new = summarise(runs[name]["baseline"], metric), summarise(runs[name]["current"], metric)
        row: dict = {"task": name, "held_out": metric}
        if name in SAME_WORK:
            row["same_work"] = " ".join(SAME_WORK[name])
        for side, s in (("old", old), ("new", new)):
            for k, v in s.items():
                row[f"{k}_{side}"] = v
        if "steps_per_s" in old and "steps_per_s" in new:
            row["speedup"] = new["steps_per_s"] / old["steps_per_s"]
        if "gflops" in new:
            row["gflops"] = new["gflops"]
            ceiling_fraction(row, cal)
        rows.append(row)
    return rows


def bench_nanogpt(args: argparse.Namespace, sides: dict[str, Path], cal: dict) -> list[dict]:
    steps = args.nanogpt_steps
    settings = [*NANOGPT, f"max_steps={steps}", "max_time=0", f"eval_every={steps}", "eval_windows=10"]
    compiled = "current, compile=on, second run (warm cache)"
    reference = "nanoGPT-style reference"
    with tempfile.TemporaryDirectory(prefix="tinyformers-cache-") as cache:
        warm_env = {"TINYFORMERS_CACHE_DIR": cache}
        # each trained variant: (code side, extra settings, extra environment)
        runs: dict[str, tuple[str, list[str], dict[str, str] | None]] = {}
        if "baseline" in sides:
            runs["baseline"] = ("baseline", [], None)
        runs["current"] = ("current", [], None)
        if args.nanogpt_compiled:
            runs[compiled] = ("current", ["compile=on"], warm_env)
        if args.nanogpt_set:
            runs[f"current, {' '.join(args.nanogpt_set)}"] = ("current", args.nanogpt_set, None)
        results: dict[str, list[float]] = {v: [] for v in [reference, *runs]}
        fpt = None
        code = REFERENCE.format(bench=str(Path(__file__).resolve().parent), steps=steps)
        if args.nanogpt_compiled:  # the first run: fills the compile cache, not measured
            run = [*settings, "compile=on"]
            r = train_run(sides["current"], "shakespeare", run, args.threads, args.timeout, warm_env)
            print("compile cache warmed:", r.get("error", "ok"), file=sys.stderr)
        for rep in range(args.repeats):
            order = list(results) if rep % 2 == 0 else list(reversed(results))
            for variant in order:
                if variant == reference:
                    stats = run_python(code, sides["current"], args.threads, args.timeout)
                    results[variant].append(stats["tokens_per_s"])
                    continue
                side, extra, env = runs[variant]
                r = train_run(sides[side], "shakespeare", [*settings, *extra], args.threads, args.timeout, env)
                if "metrics" not in r:
                    print(variant, r["error"], file=sys.stderr)
                    continue
                results[variant].append(r["metrics"]["tokens_per_s"])
                fpt = fpt or flops_per_token(r["metrics"], r["config"])
            print({k: round(v[-1]) for k, v in results.items() if v}, file=sys.stderr)
    ref = statistics.median(results[reference])
    rows = []
    for name, values in results.items():
        if not values:
            continue
        row = {
            "variant": name,
            "tokens_per_s": statistics.median(values),
            "vs_reference": statistics.median(values) / ref,
            "runs": [round(v) for v in values],
        }
        if fpt:
            row["gflops"] = row["tokens_per_s"] * fpt / 1e9
            ceiling_fraction(row, cal)
        rows.append(row)
    return rows


def bench_startup(args: argparse.Namespace, sides: dict[str, Path]) -> list[dict]:
    """Seconds from process start to the first training step done (``first_step_seconds``), current code, the
    shakespeare recipe: eager (``compile=off``), compiled with an empty compile cache (a first run), and compiled
    again with that cache (a second run of the same task)."""
    settings = ["max_steps=20", "max_time=0", "eval_every=20", "eval_windows=10"]
    runs = [
        ("eager (compile=off)", "compile=off"),
        ("compile=on, first run", "compile=on"),
        ("compile=on, second run", "compile=on"),
    ]
    results: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {"TINYFORMERS_CACHE_DIR": cache}
            for name, setting in runs:
                r = train_run(sides["current"], "shakespeare", [*settings, setting], args.threads, args.timeout, env)
                if "metrics" in r and "first_step_seconds" in r["metrics"]:
                    results[name].append(r["metrics"]["first_step_seconds"])
                else:
                    print(name, r.get("error", "no first_step_seconds"), file=sys.stderr)
        print({k: v[-1] for k, v in results.items() if v}, file=sys.stderr)
    eager = statistics.median(results["eager (compile=off)"]) if results["eager (compile=off)"] else None
    rows = []
    for name, values in results.items():
        if values:
            median = statistics.median(values)
            row = {"run": name, "first_step_seconds": median, "runs": values}
            if eager is not None:
                row["vs_eager_seconds"] = median - eager
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=None, help="commit (or branch) to compare against (needed for the tasks)")
    ap.add_argument("--tasks", default="", help="comma-separated task names (default: every task with data)")
    ap.add_argument("--steps", type=int, default=200, help="training steps per task run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nanogpt-steps", type=int, default=2000)
    ap.add_argument("--no-tasks", action="store_true", help="only the nanoGPT configuration")
    ap.add_argument("--no-nanogpt", action="store_true", help="only the tasks")
    ap.add_argument(
        "--nanogpt-compiled", action="store_true", help="also the current code compiled, as a second run (warm cache)"
    )
    ap.add_argument(
        "--nanogpt-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="also the current code with these settings added to the nanoGPT configuration (one more variant)",
    )
    ap.add_argument("--startup", action="store_true", help="also: seconds to the first step, cold and warm compile")
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value settings for both sides' task runs")
    ap.add_argument(
        "--baseline-set",
        nargs="*",
        default=[],
        help="settings for the baseline side's task runs only (an A/B of one "
        "setting: --baseline HEAD --baseline-set amp=off)",
    )
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every run (default: unset)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--name", default="speed", help="results file benchmarks/results/<name>.json")
    args = ap.parse_args()
    if args.baseline is None and not args.no_tasks:
        ap.error("--baseline COMMIT is needed for the tasks (or pass --no-tasks)")

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    sides = {"current": ROOT / "src"}
    commit, worktree = None, None
    if args.baseline is not None:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", args.baseline], capture_output=True, text=True, check=True
        ).stdout.strip()
        worktree = Path(tempfile.mkdtemp(prefix="tinyformers-baseline-")) / "wt"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), commit], check=True)
        sides["baseline"] = worktree / "src"
    if args.threads:  # the calibration's matmuls use the runs' threads
        torch.set_num_threads(args.threads)
    cal = machine()["calibration"]
    print("ceiling:", cal, file=sys.stderr)
    try:
        started = time.time()
        task_rows = [] if args.no_tasks else bench_tasks(args, sides, cal)
        nano_rows = [] if args.no_nanogpt else bench_nanogpt(args, sides, cal)
        startup_rows = bench_startup(args, sides) if args.startup else []
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)

    print(f"baseline {commit[:10] if commit else 'none'}, current {head[:10]} (+ uncommitted changes, if any)")
    summary: dict = {"baseline": commit, "current": head, "seconds": time.time() - started}
    if task_rows:
        cols = ["task", "steps_per_s_old", "steps_per_s_new", "speedup", "examples_per_s_new", "held_out"]
        cols += ["metric_old", "metric_new", "gflops", "frac_fp32", "frac_bf16", "note"]
        print(table(task_rows, cols))
        ratios = [r["speedup"] for r in task_rows if "speedup" in r]
        if ratios:
            summary.update(median_speedup=statistics.median(ratios), min_speedup=min(ratios))
            median, lowest = summary["median_speedup"], summary["min_speedup"]
            print(f"median speed-up over {len(ratios)} tasks: {median:.3f}, lowest {lowest:.3f}")
    if nano_rows:
        print(table(nano_rows, ["variant", "tokens_per_s", "vs_reference", "gflops", "frac_fp32", "frac_bf16", "runs"]))
    if startup_rows:
        print(table(startup_rows, ["run", "first_step_seconds", "vs_eager_seconds", "runs"]))
    extra = {**summary, "nanogpt": nano_rows, "startup": startup_rows, "steps": args.steps}
    extra["nanogpt_steps"] = args.nanogpt_steps
    path = save(args.name, " ".join(["python", *sys.argv]), task_rows, extra)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
