"""Where a training step's time goes: each task's default recipe under torch.profiler, ops grouped by kind.

    python benchmarks/profile_step.py [--tasks copy,reverse,sort] [--steps 30] [--warmup 20]
                                      [--set key=value ...] [--name profile_step] [--top N] [--kernels]

``--set`` applies settings to every task's recipe, as ``tinyformers train --set`` does (e.g. ``--tasks translate
--set extra_pairs=dictionary extra_batch=256 length_buckets=true``); they are in each row (``settings``).

For each task, the trainer's own setup and optimizer step (``trainer._setup``, ``trainer._optimizer_step``: the
batch, the recipe's autocast, forward and loss, backward, gradient clipping, fused AdamW), eagerly (compiled
with ``--set compile=on``; then a compiled graph is one opaque item): ``--warmup`` steps, then ``--steps`` steps
timed without the profiler (ms/step), then the same number under ``torch.profiler`` (CPU activities). Each op's
*self* CPU time goes to one group: matmul (mm, addmm, bmm,
matmul, linear, convolution), attention (the fused ``scaled_dot_product_*`` kernels, forward and backward),
optimizer (AdamW and gradient clipping's norms), layer norm, softmax and cross-entropy, the autograd engine's
own time per node, and everything else (element-wise ops, copies, views, indexing). "unaccounted" is the
profiled wall time not inside any op: Python, module calls and batch assembly between ops. The profiler adds
its own overhead, so shares are approximate; ms/step is from the unprofiled steps.

``--top N`` also lists, per task, the N single ops with the most self time (``top_ops`` in each row), which is
how to see what the "other ops" group is made of.

``--kernels`` (with ``--set compile=on``) opens the compiled graph: Inductor's Python wrapper instead of its C++ one
(``TORCHINDUCTOR_CPP_WRAPPER=0``), so the ATen kernels it calls (matmuls, the fused attention) are profiled as ops,
and ``cpp.enable_kernel_profile``, so each kernel Inductor generated is one item (group "fused kernels
(Inductor)"); "graph host code" is the rest of the graphs' calls. Both change the graph's code, so its ms/step is
a slightly slower step than the default compile's (and a first run compiles cold).

Wrap it in ../shared/tools/measure for ms/step to mean anything (the shares need no quiet machine).
Prints a Markdown table, writes benchmarks/results/profile_step.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import save, table
from torch.profiler import ProfilerActivity, profile

from tinyformers.engine import accel, trainer
from tinyformers.engine.distributed import Dist
from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import apply_overrides
from tinyformers.tasks import get_task

GROUPS = {
    "matmul": (
        "aten::mm",
        "aten::addmm",
        "aten::bmm",
        "aten::matmul",
        "aten::linear",
        "aten::convolution",
        "aten::mkldnn_convolution",
        "aten::_convolution",
        "aten::convolution_backward",
        "aten::baddbmm",
    ),
    "attention": ("aten::_scaled_dot_product",),
    "optimizer": ("aten::_fused_adamw", "aten::_foreach", "aten::linalg_vector_norm", "Optimizer."),
    "layer norm": ("aten::native_layer_norm",),
    "softmax, loss": ("aten::_log_softmax", "aten::_softmax", "aten::nll_loss", "aten::cross_entropy"),
    "fused kernels (Inductor)": ("graph_", "cpp_fused_"),  # with --kernels: the C++ kernels Inductor generated
    "graph host code": ("## Call CompiledFxGraph", "CompiledFunction", "Torch-Compiled Region", "TorchDynamo"),
}


def group(name: str) -> str:
    if name.startswith("autograd::") or name.endswith(("Backward0", "Backward1")):
        return "autograd nodes"  # the engine's own time per node, around the kernels it calls
    for g, prefixes in GROUPS.items():
        if name.startswith(prefixes):
            return g
    return "other ops"


def profile_task(
    name: str, steps: int, warmup: int, tmp: Path, settings: list[str] | None = None, top: int = 0
) -> dict:
    task = get_task(name)
    cfg = apply_overrides(task.Config(), settings or [])
    t = trainer._setup(task, cfg, RunDir(tmp / name), Dist(), resume=False)  # what `tinyformers train` builds
    on = accel.parse_compile(cfg.compile) == "on"  # --set compile=on profiles the compiled step; else eager
    compiler = accel.AutoCompile("on" if on else "off", t.model, name, cfg.amp, t.device)
    autocast, use_scaler = accel.autocast_for(cfg, t.device)
    scaler = torch.amp.GradScaler(t.device.type) if use_scaler else None
    t.model.train()

    def step() -> None:  # the trainer's own optimizer step (batch, autocast, loss, backward, clipping, AdamW)
        trainer._optimizer_step(t, trainer.StepModel(compiler), autocast, scaler, cfg.lr)
        t.state.step += 1

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - start) / steps * 1000
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        profiled_us = (time.perf_counter() - start) * 1e6  # the steps only, not the profiler's own collection
    shares: dict[str, float] = {g: 0.0 for g in [*GROUPS, "autograd nodes", "other ops"]}
    events = prof.key_averages()
    for event in events:
        shares[group(event.key)] += event.self_cpu_time_total
    shares["unaccounted"] = max(0.0, profiled_us - sum(shares.values()))
    total = sum(shares.values())
    amp = "bf16" if isinstance(autocast, torch.autocast) else "fp32"
    row = {"task": name, "settings": " ".join(settings or []), "ms_per_step": round(ms, 2), "amp": amp}
    row.update({g: round(100 * v / total, 1) for g, v in shares.items()})
    if top:  # the single ops that cost most, whatever their group: where "other ops" goes
        largest = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
        row["top_ops"] = [
            {"op": e.key, "group": group(e.key), "pct": round(100 * e.self_cpu_time_total / total, 1), "calls": e.count}
            for e in largest
        ]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="copy,reverse,sort,languages,mnist-words,weather")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings for every task's recipe")
    ap.add_argument("--name", default="profile_step", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--top", type=int, default=0, help="also list the N ops with the most self time, per task")
    ap.add_argument("--kernels", action="store_true", help="compiled: profile Inductor's kernels one by one")
    args = ap.parse_args()
    if args.kernels:  # before anything compiles: cpu_compile_settings leaves the wrapper alone when this is set
        os.environ["TORCHINDUCTOR_CPP_WRAPPER"] = "0"
        from torch._inductor import config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks.split(","):
            rows.append(profile_task(name, args.steps, args.warmup, Path(tmp), args.set, args.top))
            print(rows[-1], file=sys.stderr)
    print("% of the profiled step's CPU time (self time of each op, by group)")
    print(table(rows, [k for k in rows[0] if k != "top_ops"]))
    for row in rows:
        if row.get("top_ops"):
            print(f"\n{row['task']}: the {len(row['top_ops'])} ops with the most self time")
            print(table(row["top_ops"], ["op", "group", "pct", "calls"]))
    extra = {"steps": args.steps, "warmup": args.warmup, "kernels": args.kernels}
    save(args.name, " ".join(["python", *sys.argv]), rows, extra)


if __name__ == "__main__":
    main()
