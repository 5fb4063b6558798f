"""The two kernel-level facts behind the 2026-12-05 speed work (docs/speed.md), measured on this machine.

    python benchmarks/cpu_kernels.py [--repeats 30]

1. Fused attention (``F.scaled_dot_product_attention``, causal) forward + backward in the nanoGPT configuration's
   shape (batch 12, 4 heads, 64 tokens, 32 dims a head): fp32, bf16 inputs under autocast (PyTorch's bf16 CPU
   kernel), and what ``core.attention.fused_sdpa`` does under autocast (the kernel in fp32 on upcast inputs).
2. A dropout mask over 2.4M elements (the pixels recipe's activations: 32 x 784 x 96): ``bernoulli_`` (what
   ``nn.Dropout`` draws) against ``core.dropout.dropout_mask``, next to one element-wise multiply of the same size.

Medians of ``--repeats`` timings after warm-up, with torch's threads. Writes benchmarks/results/kernels.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import machine, save, table

from tinyformers.core.attention import fused_sdpa
from tinyformers.core.dropout import dropout_mask


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def attention_rows(repeats: int) -> list[dict]:
    shape = (12, 4, 64, 32)
    q32, k32, v32 = (torch.randn(shape, requires_grad=True) for _ in range(3))
    q16, k16, v16 = (torch.randn(shape).bfloat16().requires_grad_() for _ in range(3))

    def fp32() -> None:
        F.scaled_dot_product_attention(q32, k32, v32, is_causal=True).sum().backward()

    def bf16_kernel() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = F.scaled_dot_product_attention(q16, k16, v16, is_causal=True)
        out.float().sum().backward()

    def ours() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fused_sdpa(q16, k16, v16, is_causal=True)
        out.sum().backward()

    variants = {"fp32": fp32, "bf16 kernel (bf16 inputs, autocast)": bf16_kernel, "fused_sdpa under autocast": ours}
    return [
        {"what": "causal attention fwd+bwd, 12x4x64x32", "variant": k, "ms": median_ms(f, repeats)}
        for k, f in variants.items()
    ]


def dropout_rows(repeats: int) -> list[dict]:
    x = torch.randn(32 * 784 * 96)
    variants = {
        "bernoulli_ mask (nn.Dropout's)": lambda: torch.empty_like(x).bernoulli_(0.9),
        "core.dropout.dropout_mask": lambda: dropout_mask(x.shape, 0.1),
        "one multiply, same size": lambda: x * x,
    }
    what = "dropout mask, 2.4M elements"
    return [{"what": what, "variant": k, "ms": median_ms(f, repeats)} for k, f in variants.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    rows = attention_rows(args.repeats) + dropout_rows(args.repeats)
    print(table(rows, ["what", "variant", "ms"]))
    print(machine())
    save("kernels", " ".join(["python", *sys.argv]), rows, {"repeats": args.repeats})


if __name__ == "__main__":
    main()
