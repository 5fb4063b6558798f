"""One training step of the nanoGPT CPU configuration (4 layers, 4 heads, 128 dims, batch 12 x 64) under
implementation variants: AdamW loop vs fused, exact vs tanh GELU, bf16 autocast, fp32 matmul precision.

    python benchmarks/step_variants.py [--steps 100] [--repeats 3]

Variants are interleaved and repeated (this machine's speed drifts); medians of tokens/s are reported.
Writes benchmarks/results/step_variants.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch
from common import machine, save, table

from tinyformers.core.models import DecoderConfig, DecoderLM

VARIANTS = {
    "gelu_tanh, AdamW loop": dict(activation="gelu_tanh", fused=False),
    "gelu_tanh, AdamW fused": dict(activation="gelu_tanh", fused=True),
    "gelu exact, AdamW fused (default)": dict(activation="gelu", fused=True),
    "gelu exact, fused, bf16 autocast": dict(activation="gelu", fused=True, bf16=True),
    "gelu exact, fused, matmul precision medium": dict(activation="gelu", fused=True, precision="medium"),
}


def tokens_per_s(activation: str, fused: bool, steps: int, bf16: bool = False, precision: str = "highest") -> float:
    torch.manual_seed(0)
    model = DecoderLM(
        DecoderConfig(vocab_size=78, max_len=64, d_model=128, n_heads=4, n_layers=4, d_ff=512, activation=activation)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    x, y = torch.randint(0, 78, (12, 64)), torch.randint(0, 78, (12, 64))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    torch.set_float32_matmul_precision(precision)
    try:
        for i in range(10 + steps):
            if i == 10:
                t0 = time.perf_counter()
            with ctx():
                loss = model(x, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return steps * x.numel() / (time.perf_counter() - t0)
    finally:
        torch.set_float32_matmul_precision("highest")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.repeats):
        for name, kw in VARIANTS.items():
            runs[name].append(tokens_per_s(steps=args.steps, **kw))
        print({k: round(v[-1]) for k, v in runs.items()}, file=sys.stderr)
    base = statistics.median(runs["gelu_tanh, AdamW loop"])
    rows = []
    for k, v in runs.items():
        med = statistics.median(v)
        rows.append(
            {
                "variant": k,
                "median_tokens_per_s": round(med),
                "vs_first": round(med / base, 3),
                "runs": [round(t) for t in v],
            }
        )
    print(table(rows, list(rows[0])))
    print(machine())
    save("step_variants", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
