"""The kernel-level facts behind the 2026-12-05 speed work (docs/speed.md), measured on this machine.

    python benchmarks/cpu_kernels.py [--repeats 30] [--no-compile] [--name kernels]

1. Fused attention (``F.scaled_dot_product_attention``, causal) forward + backward in the nanoGPT configuration's
   shape (batch 12, 4 heads, 64 tokens, 32 dims a head): fp32, bf16 inputs under autocast (PyTorch's bf16 CPU
   kernel), and what ``core.attention.fused_sdpa`` does under autocast (the kernel in fp32 on upcast inputs).
   Next to them, the alternatives to the fused kernel for that shape (twenty-third session): attention written
   out (``q @ k^T``, masked softmax in fp32, ``@ v``: Eq. 1 as ``core.attention.scaled_dot_product_attention``
   computes it, with its softmax upcast to fp32 as a bf16 step needs, without its guard for fully masked rows,
   which a causal mask never has) in fp32 and in bf16,
   eager and under ``torch.compile``, and the fused kernel under ``torch.compile``.
2. A dropout mask over 2.4M elements (the pixels recipe's activations: 32 x 784 x 96): ``bernoulli_`` (what
   ``nn.Dropout`` draws) against ``core.dropout.dropout_mask``, next to one element-wise multiply of the same size.
3. The step after backward for the nanoGPT configuration's 0.8M parameters (a 4-layer ``nn.TransformerEncoder`` of
   128 dims, 53 tensors): gradient clipping (``clip_grad_norm_``), the fused AdamW step the trainer uses, both,
   and both under ``torch.compile`` (AdamW with ``foreach`` and a tensor learning rate, so a changing rate does
   not recompile).

4. The nanoGPT configuration's matmuls one by one (forward and both gradients of each linear layer), with GFLOP/s
   and their share of the calibrated fp32 ceiling (1024x1024 matmuls), and what all of a step's matmuls take
   at those speeds: how much of a step the matmuls are, and whether small shapes run slower than the ceiling.

``--no-compile`` leaves out the compiled rows (each compiles once, ~5-25 s).

Medians of ``--repeats`` timings after warm-up, with torch's threads. Writes benchmarks/results/NAME.json
(``--name``, default ``kernels``).
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
from torch import nn

from tinyformers.core.attention import causal_mask, fused_sdpa
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


def attention_rows(repeats: int, compiled: bool) -> list[dict]:
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
    causal = causal_mask(shape[-2], shape[-2])

    def written_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = (q @ k.transpose(-2, -1)) * shape[-1] ** -0.5
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")).float(), dim=-1)
        return weights.to(q.dtype) @ v

    def fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def run(fn: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Callable[[], None]:
        return lambda: fn(q, k, v).float().sum().backward()

    variants["written out, fp32"] = run(written_out, q32, k32, v32)
    variants["written out, bf16 (softmax in fp32)"] = run(written_out, q16, k16, v16)
    if compiled:
        variants["written out, fp32, torch.compile"] = run(torch.compile(written_out), q32, k32, v32)
        variants["written out, bf16, torch.compile"] = run(torch.compile(written_out), q16, k16, v16)
        variants["fused kernel, fp32, torch.compile"] = run(torch.compile(fused), q32, k32, v32)
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


def optimizer_rows(repeats: int, compiled: bool) -> list[dict]:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(128, 4, 512, batch_first=True)
    model = nn.Sequential(nn.Embedding(65, 128), nn.TransformerEncoder(layer, 4), nn.LayerNorm(128), nn.Linear(128, 65))
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    fused = torch.optim.AdamW(params, lr=1e-3, fused=True)

    def clip() -> None:
        nn.utils.clip_grad_norm_(params, 1.0)

    def both() -> None:
        clip()
        fused.step()

    variants: dict[str, Callable[[], object]] = {
        "clip_grad_norm_": clip,
        "fused AdamW step": fused.step,
        "both (the trainer's)": both,
    }
    if compiled:
        foreach = torch.optim.AdamW(params, lr=torch.tensor(1e-3), foreach=True, capturable=True)

        @torch.compile
        def compiled_both() -> None:
            clip()
            foreach.step()

        variants["both, torch.compile (foreach AdamW)"] = compiled_both
    what = f"after backward, {sum(p.numel() for p in params):,} params in {len(params)} tensors"
    return [{"what": what, "variant": k, "ms": median_ms(f, repeats)} for k, f in variants.items()]


def matmul_rows(repeats: int) -> list[dict]:
    """The nanoGPT configuration's matmuls (batch 12 x block 64 = 768 tokens, 128 dims, 4 layers), one by one.

    Each linear layer ``in -> out`` does three per step: forward ``(768, in) @ (in, out)``, the input's gradient
    ``(768, out) @ (out, in)`` and the weight's ``(out, 768) @ (768, in)``. Each shape's GFLOP/s, and the last
    row: all of a step's matmuls at those speeds (4 layers x 4 linears x 3, plus the output head's 3) — the
    time a step could not go below without faster matmuls, and its FLOP/s. The attention's own products are in
    the fused kernel (the first rows), not here.
    """
    tokens, d = 12 * 64, 128
    linears = {"qkv": (d, 3 * d), "out": (d, d), "ffn in": (d, 4 * d), "ffn out": (4 * d, d)}
    rows, step_ms, step_flop = [], 0.0, 0.0
    for name, (n_in, n_out), count in [*((k, v, 4) for k, v in linears.items()), ("head", (d, 65), 1)]:
        for part, (m, k, n) in {
            "forward": (tokens, n_in, n_out),
            "grad input": (tokens, n_out, n_in),
            "grad weight": (n_out, tokens, n_in),
        }.items():
            a, b = torch.randn(m, k), torch.randn(k, n)
            ms = median_ms(lambda a=a, b=b: a @ b, repeats * 10)
            flop = 2 * m * k * n
            rows.append(
                {
                    "what": f"matmul {name} {part}",
                    "variant": f"({m}x{k}) @ ({k}x{n})",
                    "ms": ms,
                    "gflops": flop / ms / 1e6,
                }
            )
            step_ms, step_flop = step_ms + count * ms, step_flop + count * flop
    what = "all matmuls of a nanoGPT step (51)"
    rows.append({"what": what, "variant": "sum of the rows above", "ms": step_ms, "gflops": step_flop / step_ms / 1e6})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    ap.add_argument("--name", default="kernels", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()
    compiled = not args.no_compile
    rows = attention_rows(args.repeats, compiled) + dropout_rows(args.repeats) + optimizer_rows(args.repeats, compiled)
    rows += matmul_rows(args.repeats)
    ceiling = machine()["calibration"].get("fp32_gflops")
    for row in rows:
        if "gflops" in row and ceiling:
            row["frac_fp32"] = row["gflops"] / ceiling
    print(table(rows, ["what", "variant", "ms", "gflops", "frac_fp32"]))
    print(machine())
    save(args.name, " ".join(["python", *sys.argv]), rows, {"repeats": args.repeats})


if __name__ == "__main__":
    main()
