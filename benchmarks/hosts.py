"""Two machines, the same code: does a budget stated in reference minutes buy the same training on both?

    python benchmarks/hosts.py speed-intel speed-avx2 [--name hosts-intel-avx2]

Reads two results of ``benchmarks/speed.py`` (``benchmarks/results/A.json`` and ``B.json``, each measured on one
host) and compares their current-code rows task by task: steps/s on A and on B, and A's speed over B's. Next to
it, what ``tinyformers challenge --budget-ref-minutes`` assumes (``engine.calibration.scaled_minutes``): that a
step's time scales with the measured fp32 matmul rate, so B gets ``fp32_A / fp32_B`` times A's seconds. The last
column is then the share of A's steps that B makes in the same reference-minute budget::

    steps_B / steps_A = (fp32_A / fp32_B) / (steps_per_s_A / steps_per_s_B)

1.0 = the budget travels exactly; above 1, the slower host gets more training than the faster one. A task whose
recipe uses bf16 autocast on a host with native bf16 (``cpu_bf16``) runs bf16 there and fp32 on the other: the
``bf16 on`` column says where. A task whose two rows ran different recipes (``same_work``) is left out. The
nanoGPT reference (fp32 eager on both, no code of ours) is the last row.
Nothing is run here: the speeds are the two files' (quote their measure lines).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from common import RESULTS, save, table

from tinyformers.tasks import TASKS


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        sys.exit(f"error: {path} not found: give the name of a benchmarks/speed.py result")
    return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="speed.py result of host A (name under benchmarks/results/, no .json)")
    ap.add_argument("b", help="speed.py result of host B")
    ap.add_argument("--name", default=None, help="results file (default hosts-A-B)")
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)
    cal_a, cal_b = a["machine"]["calibration"], b["machine"]["calibration"]
    fp32_ratio = cal_a["fp32_gflops"] / cal_b["fp32_gflops"]
    speeds_b = {r["task"]: r for r in b["rows"]}
    native = ", ".join(name for name, cal in ((args.a, cal_a), (args.b, cal_b)) if cal.get("native_bf16"))
    rows = []
    for row_a in a["rows"]:
        row_b = speeds_b.get(row_a["task"])
        if row_b is None or "steps_per_s_new" not in row_a or "steps_per_s_new" not in row_b:
            continue
        if row_a.get("same_work") != row_b.get("same_work"):
            continue  # the two runs trained different recipes (speed.py's SAME_WORK changed between them)
        task = TASKS.get(row_a["task"])
        bf16 = bool(task and getattr(task.Config(), "cpu_bf16", False))
        ratio = row_a["steps_per_s_new"] / row_b["steps_per_s_new"]
        rows.append(
            {
                "task": row_a["task"],
                "steps_per_s_a": row_a["steps_per_s_new"],
                "steps_per_s_b": row_b["steps_per_s_new"],
                "a_over_b": ratio,
                "bf16_on": native if bf16 else "",
                "ref_budget_steps_b_over_a": fp32_ratio / ratio,
            }
        )
    ref = [
        next((r["tokens_per_s"] for r in side.get("nanogpt", []) if r["variant"].startswith("nanoGPT-style")), None)
        for side in (a, b)
    ]
    if all(ref):
        ratio = ref[0] / ref[1]
        rows.append(
            {
                "task": "nanoGPT-style reference (tokens/s)",
                "steps_per_s_a": ref[0],
                "steps_per_s_b": ref[1],
                "a_over_b": ratio,
                "ref_budget_steps_b_over_a": fp32_ratio / ratio,
            }
        )
    cols = ["task", "steps_per_s_a", "steps_per_s_b", "a_over_b", "bf16_on", "ref_budget_steps_b_over_a"]
    print(table(rows, cols))
    shares = [r["ref_budget_steps_b_over_a"] for r in rows if not r["task"].startswith("nanoGPT")]
    summary = {
        "a": {"result": args.a, "calibration": cal_a, "date": a["machine"]["date"]},
        "b": {"result": args.b, "calibration": cal_b, "date": b["machine"]["date"]},
        "fp32_ratio": fp32_ratio,
        "median_ref_budget_steps_b_over_a": statistics.median(shares) if shares else None,
    }
    print(
        f"fp32 matmul rate A/B: {cal_a['fp32_gflops']} / {cal_b['fp32_gflops']} = {fp32_ratio:.2f}; "
        f"median over tasks of B's steps / A's in one reference-minute budget: "
        f"{summary['median_ref_budget_steps_b_over_a']:.2f}"
    )
    name = args.name or f"hosts-{args.a}-{args.b}"
    save(name, " ".join(["python", *sys.argv]), rows, summary)


if __name__ == "__main__":
    main()
