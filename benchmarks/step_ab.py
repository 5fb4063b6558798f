"""Where the eager gap to nanoGPT is: one training step of the nanoGPT configuration (4 layers, 4 heads, 128
dims, batch 12 x 64), the reference model against ours with and without what differs, finely interleaved.

    python benchmarks/step_ab.py [--rounds 40] [--chunk 10] [--threads 2] [--name step_ab]

``speed.py`` compares whole 2,000-step runs, a minute each; on a host whose speed drifts by more than the
effect (the AVX2 host: the same reference run at 10,081 and 13,525 tokens/s four minutes apart) that cannot
tell a 5% difference. Here every variant runs ``--chunk`` steps in turn, ``--rounds`` times (the order
reversed every other round), and each variant is judged by the median over rounds of its speed divided by the
reference's *in the same round*, so a drift slower than a round cancels.

The step is the model's alone (forward, loss, backward, gradient clipping, AdamW, zero_grad), on one fixed
batch: the trainer's own per-step work (batches, learning rate, logging) is what ``speed.py``'s whole runs
add on top. The variants:

* the nanoGPT-style reference of ``nanogpt_ref.py`` (no biases, learned positions, AdamW ``foreach``);
* ours as ``tinyformers train shakespeare`` builds it with ``common.NANOGPT`` (rotary positions, biases in
  every linear layer and layer norm, fused AdamW from :func:`~tinyformers.engine.trainer.optimizer_for`);
* ours with ``bias=false``; with ``bias=false positions=learned`` (nanoGPT's architecture); and that with
  AdamW ``foreach`` instead of fused (nanoGPT's optimizer too).

Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from common import NANOGPT, save, table
from nanogpt_ref import RefConfig, RefGPT

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import optimizer_for
from tinyformers.tasks import get_task

VOCAB = 65  # nanoGPT's shakespeare_char vocabulary
REFERENCE = "nanoGPT-style reference"
VARIANTS: dict[str, tuple[list[str], bool]] = {  # our variants: (settings, fused AdamW)
    "ours (rotary, biases)": ([], True),
    "ours, bias=false": (["bias=false"], True),
    "ours, bias=false positions=learned": (["bias=false", "positions=learned"], True),
    "ours, bias=false positions=learned, AdamW foreach": (["bias=false", "positions=learned"], False),
}


def reference_step(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """nanogpt_ref.train_reference's step, without its batch sampling and learning-rate setting."""
    torch.manual_seed(1337)
    model = RefGPT(RefConfig(vocab_size=VOCAB, block_size=x.shape[1]))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))

    def step() -> None:
        model(x, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def our_step(settings: list[str], fused: bool, x: torch.Tensor, y: torch.Tensor) -> tuple[Callable[[], None], int]:
    """Our model as the shakespeare task builds it with these settings, and the trainer's optimizer."""
    from tinyformers.core.tokenizers import CharTokenizer

    task = get_task("shakespeare")
    cfg = apply_overrides(task.Config(), [*NANOGPT, *settings])
    torch.manual_seed(1337)
    model = task.model(cfg, {"tokenizer": CharTokenizer([chr(33 + i) for i in range(VOCAB)]).to_dict()})
    opt = optimizer_for(model, cfg)
    if not fused:
        for group in opt.param_groups:
            group["fused"], group["foreach"] = False, True
    model.train()

    def step() -> None:
        model(x, labels=y).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--chunk", type=int, default=10, help="steps of one variant in a row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="step_ab")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, VOCAB, (12, 64), generator=g), torch.randint(0, VOCAB, (12, 64), generator=g)
    steps: dict[str, Callable[[], None]] = {REFERENCE: reference_step(x, y)}
    params = {REFERENCE: sum(p.numel() for p in RefGPT(RefConfig(VOCAB, 64)).parameters())}
    for name, (settings, fused) in VARIANTS.items():
        steps[name], params[name] = our_step(settings, fused, x, y)
    for step in steps.values():  # warm up: allocator, kernels, optimizer state
        for _ in range(5):
            step()
    speed: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(args.rounds):
        for name in list(steps) if r % 2 == 0 else reversed(list(steps)):
            t0 = time.perf_counter()
            for _ in range(args.chunk):
                steps[name]()
            speed[name].append(args.chunk * x.numel() / (time.perf_counter() - t0))
        if r % 10 == 9:
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in speed.items()), file=sys.stderr)
    rows = []
    for name, values in speed.items():
        ratios = [v / ref for v, ref in zip(values, speed[REFERENCE], strict=True)]
        q = statistics.quantiles(ratios, n=4)
        rows.append(
            {
                "variant": name,
                "params": params[name],
                "tokens_per_s": round(statistics.median(values)),
                "vs_reference": round(statistics.median(ratios), 3),
                "vs_reference_iqr": [round(q[0], 3), round(q[2], 3)],
            }
        )
    print(table(rows, list(rows[0])))
    extra = {"rounds": args.rounds, "chunk": args.chunk, "threads": args.threads, "runs": speed}
    print(f"wrote {save(args.name, ' '.join(['python', *sys.argv]), rows, extra)}")


if __name__ == "__main__":
    main()
