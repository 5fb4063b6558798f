"""Character-level Shakespeare on 2 cores: quality in a time budget, and training throughput vs nanoGPT.

    python benchmarks/shakespeare.py quality [--budget 100]
    python benchmarks/shakespeare.py throughput [--steps 400] [--repeats 3]
    python benchmarks/shakespeare.py race [--iters 2000] [--share 0.333]
    (each also takes --name NAME: the results file benchmarks/results/NAME.json, default shakespeare_WHAT)

quality: trains our default recipe and the nanoGPT CPU configuration (4 layers, 4 heads, 128 dims, block 64,
batch 12, lr 1e-3, warmup 100, cosine to 1e-4; run by our trainer) with the same budget, evaluating often;
then the default recipe with a third of the budget. Prints a table, plots validation loss against training
seconds (docs/tasks/shakespeare_loss_vs_time.png).

throughput: the exact nanoGPT configuration trained for --steps steps by (a) a reference written like
nanoGPT's model.py/train.py (benchmarks/nanogpt_ref.py) and (b) our trainer, eager and compiled; the runs
are interleaved and repeated because this machine's speed drifts; medians are reported.
race: the reference trains nanoGPT's 2,000-step CPU recipe (timed: training steps only), its loss is measured on
our 1,000 fixed validation windows; then our default recipe trains with a third of that time (wall clock, the
recipe's schedule fitted to it). Target: our loss at most the reference's. Same sitting, one after the other.
All write JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
from common import NANOGPT, machine, save, table
from nanogpt_ref import train_reference

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"


def run(settings: list[str], out: Path) -> tuple[dict, list[dict]]:
    task = get_task("shakespeare")
    metrics = train(task, apply_overrides(task.Config(), settings), out, progress=False)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return metrics, log


def quality(budget: float, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = {
        "tinyformers default": [f"max_time={budget}", "eval_every=200"],
        "nanoGPT CPU config": [*NANOGPT, f"max_time={budget}", "eval_every=200"],
        f"tinyformers default, {budget / 3:.0f} s": [f"max_time={budget / 3}", "eval_every=200"],
    }
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as d:
        for i, (name, settings) in enumerate(recipes.items()):
            m, log = run(settings, Path(d) / str(i))
            curves[name] = log
            rows.append(
                {
                    "recipe": name,
                    **{k: m[k] for k in ("val_loss", "val_bpc", "params", "steps", "train_seconds", "tokens_per_s")},
                }
            )
            print(rows[-1], file=sys.stderr)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, log in curves.items():
        ax.plot([e["train_seconds"] for e in log], [e["val_loss"] for e in log], marker=".", label=name)
    ax.axhline(1.883, color="grey", ls="--", lw=1, label="nanoGPT measured here: 1.883 in 101 s")
    ax.axhline(1.70, color="tab:red", ls=":", lw=1, label="target 1.70")
    ax.set_xlabel("training seconds (2 CPU cores)")
    ax.set_ylabel("validation loss (nats / character)")
    ax.set_ylim(1.5, 2.6)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    DOCS.mkdir(parents=True, exist_ok=True)
    fig.savefig(DOCS / "shakespeare_loss_vs_time.png", dpi=100)
    print(table(rows, list(rows[0])))
    print(machine())
    save(name, " ".join(["python", *sys.argv]), rows, {"curves": curves})


def throughput(steps: int, repeats: int, name: str) -> None:
    task = get_task("shakespeare")
    data = task.data(task.Config())
    vocab = len(data.meta["tokenizer"]["chars"])
    results: dict[str, list[float]] = {
        "nanoGPT-style reference": [],
        "tinyformers eager": [],
        "tinyformers compiled": [],
    }
    common = [*NANOGPT, f"max_steps={steps}", f"eval_every={steps}", "eval_windows=10", "max_time=0"]
    for _ in range(repeats):  # interleaved: drift hits every variant alike
        results["nanoGPT-style reference"].append(
            train_reference(data.splits["train"], vocab, iters=steps)[1]["tokens_per_s"]
        )
        with tempfile.TemporaryDirectory() as d:
            results["tinyformers eager"].append(run(common, Path(d) / "a")[0]["tokens_per_s"])
            results["tinyformers compiled"].append(run([*common, "compile=true"], Path(d) / "b")[0]["tokens_per_s"])
        print({k: v[-1] for k, v in results.items()}, file=sys.stderr)
    ref = statistics.median(results["nanoGPT-style reference"])
    rows = [
        {
            "implementation": k,
            "median_tokens_per_s": round(statistics.median(v)),
            "vs_reference": round(statistics.median(v) / ref, 3),
            "runs": [round(x) for x in v],
        }
        for k, v in results.items()
    ]
    print(table(rows, list(rows[0])))
    print(machine())
    save(name, " ".join(["python", *sys.argv]), rows, {"steps": steps})


class _TaskView(torch.nn.Module):
    """The reference model called as the task calls ours (``model(input_ids=, labels=).loss``), so
    ``ShakespeareTask.evaluate`` scores it on the same fixed windows with the same estimator."""

    def __init__(self, ref: torch.nn.Module) -> None:
        super().__init__()
        self.ref = ref

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=self.ref(input_ids.contiguous(), labels.contiguous()))


@torch.no_grad()
def reference_val_loss(model: torch.nn.Module, data, cfg) -> float:
    """The reference model's loss (nats per character) on the task's own 1,000 fixed validation windows."""
    return get_task("shakespeare").evaluate(_TaskView(model).eval(), data, "val", cfg)["val_loss"]


def race(iters: int, share: float, name: str) -> None:
    """The reference's ``iters``-step nanoGPT CPU run, timed; then our default recipe with ``share`` of its time."""
    task = get_task("shakespeare")
    cfg = task.Config()
    data = task.data(cfg)
    vocab = len(data.meta["tokenizer"]["chars"])
    model, stats = train_reference(data.splits["train"], vocab, iters=iters)
    ref = {"run": f"nanoGPT-style reference, {iters} steps", "steps": stats["steps"]}
    ref.update(train_seconds=round(stats["seconds"], 2), val_loss=reference_val_loss(model, data, cfg))
    print(ref, file=sys.stderr)
    budget = stats["seconds"] * share
    with tempfile.TemporaryDirectory() as d:
        m, log = run([f"max_time={budget}", "eval_every=100"], Path(d) / "ours")
    crossed = next((e["train_seconds"] for e in log if e["val_loss"] <= ref["val_loss"]), None)
    ours = {"run": f"tinyformers default, {share:.2f} of the reference's time", "steps": m["steps"]}
    ours.update(train_seconds=m["train_seconds"], val_loss=m["val_loss"], reached_reference_at_s=crossed)
    rows = [ref, ours]
    print(table(rows, ["run", "steps", "train_seconds", "val_loss", "reached_reference_at_s"]))
    verdict = "met" if m["val_loss"] <= ref["val_loss"] else "not met"
    target = f"the reference's {ref['val_loss']:.3f} within {budget:.1f} s ({share:.2f} of {stats['seconds']:.1f} s)"
    print(f"target: {target}: {verdict}")
    print(machine())
    save(name, " ".join(["python", *sys.argv]), rows, {"share": share, "verdict": verdict})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["quality", "throughput", "race"])
    ap.add_argument("--budget", type=float, default=100.0, help="seconds of training per recipe (quality)")
    ap.add_argument("--steps", type=int, default=400, help="steps per throughput run (compile time included)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2000, help="reference steps (race)")
    ap.add_argument("--share", type=float, default=1 / 3, help="our budget as a share of the reference's time (race)")
    ap.add_argument("--name", default=None, help="results file benchmarks/results/NAME.json (default shakespeare_WHAT)")
    args = ap.parse_args()
    name = args.name or f"shakespeare_{args.what}"
    if args.what == "race":
        race(args.iters, args.share, name)
    elif args.what == "quality":
        quality(args.budget, name)
    else:
        throughput(args.steps, args.repeats, name)


if __name__ == "__main__":
    main()
