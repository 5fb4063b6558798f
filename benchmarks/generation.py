"""Generation speed with and without the KV cache (greedy, batch 1).

    python benchmarks/generation.py [--new-tokens 1000] [--run RUN_DIR]

Two models of the default shakespeare architecture (3 layers, 4 heads, 128 dims): one whose context
(block_size 1024) holds prompt + output, where the cache makes every step a one-token forward pass, and
one with the default context of 128, where past the window every step must recompute the window with or
without a cache (the exact sliding window; see ``NextTokenLogits`` in generation.py). Speed does not depend
on the weights, so random weights are used unless ``--run`` names a trained run (then also checks that
cached and uncached outputs are identical). Writes benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import machine, save, table

from tinyformers.core.generation import generate
from tinyformers.core.models import DecoderConfig, DecoderLM


def timed(
    model: DecoderLM, prompt: torch.Tensor, new: int, use_cache: bool, repeats: int
) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, prompt, max_new_tokens=new, use_cache=use_cache)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="best of N")
    ap.add_argument("--run", help="a trained shakespeare run directory to use as well")
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {
        "context 1024 (random weights)": DecoderLM(
            DecoderConfig(vocab_size=78, max_len=1024, d_model=128, n_heads=4, n_layers=3, d_ff=512, activation="gelu")
        ),
        "context 128 (random weights)": DecoderLM(
            DecoderConfig(vocab_size=78, max_len=128, d_model=128, n_heads=4, n_layers=3, d_ff=512, activation="gelu")
        ),
    }
    if args.run:
        from tinyformers.tasks import load_run

        models[f"trained run {args.run}"] = load_run(args.run)[3]
    rows = []
    for name, model in models.items():
        prompt = torch.randint(0, model.config.vocab_size, (1, 16))
        with_cache, a = timed(model, prompt, args.new_tokens, True, args.repeats)
        without, b = timed(model, prompt, args.new_tokens, False, args.repeats)
        rows.append(
            {
                "model": name,
                "new_tokens": args.new_tokens,
                "cache_s": round(with_cache, 3),
                "no_cache_s": round(without, 3),
                "speedup": round(without / with_cache, 2),
                "cache_tokens_per_s": round(args.new_tokens / with_cache, 1),
                "identical_output": bool(torch.equal(a, b)),
            }
        )
        print(rows[-1], file=sys.stderr)
    print(table(rows, list(rows[0])))
    print(machine())
    save("generation", " ".join(["python", *sys.argv]), rows)


if __name__ == "__main__":
    main()
