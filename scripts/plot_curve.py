"""Draw the validation curve kept with a recorded run (``scripts/record_run.py --curve``) as a PNG.

    python scripts/plot_curve.py translate_quiet "length buckets, 80 CPU-min, bf16" \
        --metrics val_bleu_greedy,val_chrf_greedy --baselines lookup_bleu,lookup_chrf \
        --out docs/tasks/translate_curve.png

One panel per metric against CPU-minutes of training, each with its baseline (the value logged with the last
evaluation, on the same validation split) as a dashed line. Exits 1 with one line when the row or its curve is
missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="results file benchmarks/results/<name>.json")
    ap.add_argument("label", help="the row's label")
    ap.add_argument("--metrics", required=True, help="comma-separated keys of the curve's evaluations")
    ap.add_argument("--baselines", default="", help="comma-separated keys, one per metric ('' = none)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        rows = json.loads((ROOT / "benchmarks" / "results" / f"{args.name}.json").read_text())["rows"]
        curve = next(r for r in rows if r.get("label") == args.label)["curve"]
    except (OSError, ValueError, KeyError, StopIteration) as e:
        print(f"error: no curve for {args.label!r} in {args.name}.json ({type(e).__name__})", file=sys.stderr)
        return 1
    metrics = args.metrics.split(",")
    baselines = args.baselines.split(",") if args.baselines else [""] * len(metrics)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    minutes = [e["train_seconds"] / 60 for e in curve]
    for ax, metric, base in zip(axes[0], metrics, baselines, strict=True):
        ax.plot(minutes, [e.get(metric) for e in curve], marker="o", markersize=3, label=args.label)
        if base and base in curve[-1]:
            ax.axhline(curve[-1][base], color="gray", linestyle="--", label=base.replace("_", " "))
        ax.set_xlabel("CPU-minutes of training")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
