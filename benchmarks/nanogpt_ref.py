"""A reference GPT written the way nanoGPT's ``model.py`` is (LayerNorm without bias, fused c_attn, SDPA with
is_causal, GELU MLP, tied weights) and trained the way its ``train.py`` is on CPU (random windows, AdamW
betas (0.9, 0.99), warmup + cosine, clip 1.0, eager — the README's CPU command passes ``--compile=False``).

It is an independent re-implementation for measuring on this machine, not nanoGPT's code; the throughput
of nanoGPT itself on this machine (measured by the project: ~17.7k tokens/s, val loss 1.883 in 101 s) is
quoted next to it in docs/benchmarks.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RefConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128


class RefLayerNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class RefAttention(nn.Module):
    def __init__(self, c: RefConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=False)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.n_head = c.n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class RefBlock(nn.Module):
    def __init__(self, c: RefConfig) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = RefLayerNorm(c.n_embd), RefAttention(c), RefLayerNorm(c.n_embd)
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    def __init__(self, c: RefConfig) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.ModuleList(RefBlock(c) for _ in range(c.n_layer))
        self.ln_f = RefLayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * c.n_layer) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def train_reference(
    train_ids: torch.Tensor,
    vocab_size: int,
    iters: int = 2000,
    batch_size: int = 12,
    block_size: int = 64,
    lr: float = 1e-3,
    seed: int = 1337,
    max_seconds: float = 0.0,
) -> tuple[RefGPT, dict]:
    """Train; return the model and ``{"steps", "seconds", "tokens_per_s"}`` (training time only)."""
    torch.manual_seed(seed)
    model = RefGPT(RefConfig(vocab_size=vocab_size, block_size=block_size))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.99),
    )
    seconds, step = 0.0, 0
    for step in range(iters):
        t0 = time.perf_counter()
        warm = 100
        if step < warm:
            cur = lr * (step + 1) / (warm + 1)
        else:
            ratio = (step - warm) / (iters - warm)
            cur = 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - 1e-4)
        for g in opt.param_groups:
            g["lr"] = cur
        ix = torch.randint(len(train_ids) - block_size, (batch_size,))
        x = torch.stack([train_ids[i : i + block_size] for i in ix])
        y = torch.stack([train_ids[i + 1 : i + 1 + block_size] for i in ix])
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t0
        if max_seconds and seconds >= max_seconds:
            break
    steps = step + 1
    return model, {
        "steps": steps,
        "seconds": seconds,
        "tokens_per_s": steps * batch_size * block_size / seconds,
    }
