"""Grouped-query and multi-query attention (``n_kv_heads``): equal to the expanded (repeat-KV) multi-head
computation and to ``torch.nn.functional.scaled_dot_product_attention(enable_gqa=True)``; the KV cache holds only
the key/value heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinyformers.core.attention import KVCache, MultiHeadAttention, repeat_kv
from tinyformers.core.lora import LoRAConfig, apply_lora, merge_lora
from tinyformers.core.positions import RotaryEmbedding

ATOL = 1e-6
D, H = 24, 6  # d_head 4


def expanded(gqa: MultiHeadAttention) -> MultiHeadAttention:
    """The same attention as plain multi-head attention: each key/value head's projection rows repeated for
    every query head of its group."""
    mha = MultiHeadAttention(D, H, bias=gqa.in_proj.bias is not None, rotary=gqa.rotary)
    n_rep, d, dk = H // gqa.n_kv_heads, gqa.d_head, gqa.d_kv

    def rows(t: torch.Tensor) -> torch.Tensor:  # (d_kv, ...) -> (D, ...)
        return t.view(gqa.n_kv_heads, d, *t.shape[1:]).repeat_interleave(n_rep, dim=0).reshape(D, *t.shape[1:])

    with torch.no_grad():
        for name in ("weight", "bias"):
            src = getattr(gqa.in_proj, name)
            if src is None:
                continue
            q, k, v = src.split([D, dk, dk])
            getattr(mha.in_proj, name).copy_(torch.cat([q, rows(k), rows(v)]))
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
    return mha.eval()


@pytest.mark.parametrize("n_kv", [1, 2, 3, 6])
@pytest.mark.parametrize("need_weights", [False, True])
def test_gqa_equals_expanded_multi_head(n_kv: int, need_weights: bool) -> None:
    torch.manual_seed(n_kv)
    gqa = MultiHeadAttention(D, H, n_kv_heads=n_kv, rotary=RotaryEmbedding(D // H, 32)).eval()
    assert gqa.in_proj.weight.shape == (D + 2 * n_kv * (D // H), D)
    mha = expanded(gqa)
    x, memory = torch.randn(2, 7, D), torch.randn(2, 5, D)
    pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    with torch.no_grad():
        for kw in ({"is_causal": True}, {"key_padding_mask": pad}):
            a, wa = gqa(x, need_weights=need_weights, **kw)
            b, wb = mha(x, need_weights=need_weights, **kw)
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
            if need_weights:
                torch.testing.assert_close(wa, wb, atol=ATOL, rtol=0)
        gqa.rotary = mha.rotary = None  # cross-attention has no positions
        a, _ = gqa(x, memory, need_weights=need_weights)
        b, _ = mha(x, memory, need_weights=need_weights)
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.skipif(
    tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 5), reason="torch < 2.5 has no enable_gqa"
)
@pytest.mark.parametrize("n_kv", [1, 3])
def test_gqa_equals_torch_sdpa_enable_gqa(n_kv: int) -> None:
    torch.manual_seed(0)
    attn = MultiHeadAttention(D, H, n_kv_heads=n_kv).eval()
    x = torch.randn(3, 9, D)
    with torch.no_grad():
        ours, _ = attn(x, is_causal=True)
        q, k, v = attn.in_proj(x).split([D, attn.d_kv, attn.d_kv], dim=-1)
        q, k, v = (z.view(3, 9, -1, D // H).transpose(1, 2) for z in (q, k, v))  # (B, H or H_kv, T, d_head)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        theirs = attn.out_proj(out.transpose(1, 2).reshape(3, 9, D))
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("n_kv", [1, 2])
def test_gqa_cache_holds_only_kv_heads_and_equals_full_pass(n_kv: int) -> None:
    torch.manual_seed(1)
    attn = MultiHeadAttention(D, H, n_kv_heads=n_kv, rotary=RotaryEmbedding(D // H, 32)).eval()
    x = torch.randn(2, 8, D)
    cache = KVCache(1)
    with torch.no_grad():
        full, _ = attn(x, is_causal=True)
        parts = [attn(x[:, a:b], is_causal=True, cache=cache)[0] for a, b in ((0, 3), (3, 4), (4, 8))]
    k, v = cache.layers[0]
    assert k.shape == v.shape == (2, n_kv, 8, D // H)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=ATOL, rtol=0)


def test_repeat_kv_groups_consecutive_query_heads() -> None:
    kv = torch.arange(2.0).view(1, 2, 1, 1)  # two key/value heads
    assert repeat_kv(kv, 3).flatten().tolist() == [0, 0, 0, 1, 1, 1]
    assert repeat_kv(kv, 1) is kv


@pytest.mark.parametrize("n_kv", [0, 4, 7])
def test_gqa_rejects_kv_heads_that_do_not_divide_heads(n_kv: int) -> None:
    with pytest.raises(ValueError, match="n_kv_heads"):
        MultiHeadAttention(D, H, n_kv_heads=n_kv)


def test_lora_adapts_the_right_rows_of_a_grouped_projection() -> None:
    """With q, k and v adapters on a GQA projection, the adapted layer equals its merged weight."""
    torch.manual_seed(2)
    attn = MultiHeadAttention(D, H, n_kv_heads=2)
    apply_lora(attn, LoRAConfig(r=2, targets=("q", "k", "v")))
    assert attn.in_proj.blocks == [(0, D), (D, D + 8), (D + 8, D + 16)]
    with torch.no_grad():
        for b in attn.in_proj.lora_B:
            b.normal_()
    x = torch.randn(2, 5, D)
    with torch.no_grad():
        adapted, _ = attn.eval()(x, is_causal=True)
        merged, _ = merge_lora(attn)(x, is_causal=True)
    torch.testing.assert_close(adapted, merged, atol=1e-5, rtol=0)
