"""Eq. 1 and multi-head attention, checked against hand computations and torch.nn.MultiheadAttention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformers.core import attention
from tinyformers.core.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    fast_attention,
    fused_sdpa,
    merge_masks,
    scaled_dot_product_attention,
)
from tinyformers.core.positions import RotaryEmbedding

B, H, T, S, DK = 2, 3, 5, 7, 8


def qkv(t: int = T, s: int = S) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(B, H, t, DK), torch.randn(B, H, s, DK), torch.randn(B, H, s, DK)


def hand_attention(q, k, v, allowed=None, additive=None):
    """softmax(Q K^T / sqrt(d_k)) V, written with explicit loops over batch, head and query."""
    out = torch.zeros(q.shape[:-1] + (v.size(-1),))
    w = torch.zeros(q.shape[:-1] + (k.size(-2),))
    for b in range(q.size(0)):
        for h in range(q.size(1)):
            for i in range(q.size(2)):
                scores = torch.stack([q[b, h, i].dot(k[b, h, j]) for j in range(k.size(2))]) / math.sqrt(q.size(-1))
                if additive is not None:
                    scores = scores + additive[i]
                keep = torch.ones(k.size(2), dtype=torch.bool) if allowed is None else allowed[b, i]
                if not keep.any():
                    continue  # a fully-masked row: zero weights, zero output
                e = torch.where(keep, torch.exp(scores - scores[keep].max()), torch.zeros(()))
                w[b, h, i] = e / e.sum()
                out[b, h, i] = w[b, h, i] @ v[b, h]
    return out, w


def mask_kinds() -> dict[str, dict]:
    """Every way of masking, as keyword arguments of merge_masks, for T queries over S keys."""
    g = torch.Generator().manual_seed(1)
    bool_mask = torch.rand(T, S, generator=g) > 0.3
    bool_mask[:, 0] = True  # every row keeps at least one key
    float_mask = torch.randn(T, S, generator=g)
    float_mask[0, 2] = float("-inf")
    kpm = torch.zeros(B, S, dtype=torch.bool)
    kpm[1, -3:] = True
    empty_row = torch.ones(T, S, dtype=torch.bool)
    empty_row[2] = False
    return {
        "none": {},
        "bool": {"attn_mask": bool_mask},
        "float": {"attn_mask": float_mask},
        "key_padding": {"key_padding_mask": kpm},
        "causal_offset": {"is_causal": True},  # T=5 queries are the last 5 of S=7 keys
        "causal_padding_float": {"is_causal": True, "key_padding_mask": kpm, "attn_mask": float_mask},
        "fully_masked_row": {"attn_mask": empty_row},
        "fully_padded_batch_row": {"key_padding_mask": torch.tensor([[False] * S, [True] * S])},
        "fully_padded_float": {
            "key_padding_mask": torch.tensor([[False] * S, [True] * S]),
            "attn_mask": float_mask,
        },
    }


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "kernel_zeroes"])
@pytest.mark.parametrize("kind", list(mask_kinds()))
def test_readable_equals_fast_path(kind: str, guard: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both fast paths (the empty-row guard, and the kernel's own zeroing where it has it) equal the readable
    path, forward and backward: the same output and the same gradients for q, k and v."""
    if not guard and not attention.kernel_zeroes_empty_rows("cpu"):
        pytest.skip("this PyTorch's CPU kernel returns NaN for a fully-masked row: only the guarded path runs")
    monkeypatch.setitem(attention._ZEROES_EMPTY_ROWS, "cpu", not guard)
    mask = merge_masks(T, S, device=None, **mask_kinds()[kind])
    slow_in = [t.requires_grad_() for t in qkv()]
    fast_in = [t.detach().clone().requires_grad_() for t in slow_in]
    slow, _ = scaled_dot_product_attention(*slow_in, mask)
    fast = fast_attention(*fast_in, mask)
    assert not torch.isnan(slow).any() and not torch.isnan(fast).any()
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    grad = torch.randn_like(slow)
    slow.backward(grad)
    fast.backward(grad)
    for a, b in zip(fast_in, slow_in, strict=True):
        assert a.grad is not None and b.grad is not None and not torch.isnan(a.grad).any()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)


def test_kernel_question_is_asked_once_and_not_inside_a_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "_ZEROES_EMPTY_ROWS", {})
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert attention.kernel_zeroes_empty_rows("cpu") is False and not calls  # traced: keep the guard, ask nothing
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    first = attention.kernel_zeroes_empty_rows("cpu")
    assert attention.kernel_zeroes_empty_rows("cpu") is first and len(calls) == 1
    assert dict(attention._ZEROES_EMPTY_ROWS) == {"cpu": first}


def test_causal_same_length() -> None:
    q, k, v = qkv(T, T)
    mask = merge_masks(T, T, is_causal=True)
    slow, w = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(slow, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast_attention(q, k, v, mask), ref, atol=1e-6, rtol=0)
    assert (w.triu(1) == 0).all()


def test_readable_path_equals_hand_computation() -> None:
    q, k, v = qkv()
    out, w = scaled_dot_product_attention(q, k, v)
    ref_out, ref_w = hand_attention(q, k, v)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)


def test_readable_path_masks_equal_hand_computation() -> None:
    q, k, v = qkv()
    kinds = mask_kinds()
    additive = kinds["float"]["attn_mask"]
    kpm = kinds["key_padding"]["key_padding_mask"]
    allowed = causal_mask(T, S).expand(B, T, S) & ~kpm[:, None, :] & torch.isfinite(additive)
    mask = merge_masks(T, S, attn_mask=additive, key_padding_mask=kpm, is_causal=True)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    ref_out, ref_w = hand_attention(q, k, v, allowed, torch.where(torch.isfinite(additive), additive, 0.0))
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)


def test_fully_masked_row_is_zero() -> None:
    q, k, v = qkv()
    mask = mask_kinds()["fully_masked_row"]["attn_mask"]
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert (w[:, :, 2] == 0).all() and (out[:, :, 2] == 0).all()
    assert (fast_attention(q, k, v, mask)[:, :, 2] == 0).all()
    torch.testing.assert_close(w[:, :, 3].sum(-1), torch.ones(B, H))


def test_causal_mask_bottom_right() -> None:
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 3).tolist() == torch.ones(3, 3, dtype=torch.bool).tril().tolist()


def test_merge_masks_conventions() -> None:
    assert merge_masks(2, 3) is None
    kpm = torch.tensor([[False, False, True]])
    m = merge_masks(2, 3, key_padding_mask=kpm)
    assert m.dtype == torch.bool and m.shape == (1, 1, 1, 3) and m.flatten().tolist() == [True, True, False]
    kpm = torch.tensor([[True, False, False, False]])
    f = merge_masks(2, 4, attn_mask=torch.zeros(2, 4), key_padding_mask=kpm, is_causal=True)
    assert f.dtype == torch.float32
    assert torch.isinf(f[0, 0]).tolist() == [[True, False, False, True], [True, False, False, False]]


def test_scale_uses_d_head_not_d_model() -> None:
    d_model, n_heads = 16, 4
    mha = MultiHeadAttention(d_model, n_heads).eval()
    x = torch.randn(1, 3, d_model)
    _, w = mha(x, need_weights=True)
    q, k, _ = F.linear(x, mha.in_proj.weight, mha.in_proj.bias).split(d_model, -1)
    q = q.view(1, 3, n_heads, 4).transpose(1, 2)
    k = k.view(1, 3, n_heads, 4).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_model // n_heads), -1)
    wrong = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_model), -1)
    torch.testing.assert_close(w, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(w, wrong, atol=1e-3)


# --- MultiHeadAttention vs torch.nn.MultiheadAttention ------------------------------------------------------

D_MODEL, N_HEADS = 24, 4


def pair(bias: bool = True) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    ours = MultiHeadAttention(D_MODEL, N_HEADS, bias=bias).eval()
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        ours.in_proj.weight.normal_(0, 0.3)
        ours.out_proj.weight.normal_(0, 0.3)
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ours.in_proj.bias.normal_(0, 0.3)
            ours.out_proj.bias.normal_(0, 0.3)
            ref.in_proj_bias.copy_(ours.in_proj.bias)
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, ref


@pytest.mark.parametrize("bias", [True, False])
def test_mha_self_attention(bias: bool) -> None:
    ours, ref = pair(bias)
    x = torch.randn(2, 6, D_MODEL)
    out, _ = ours(x)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_mha_cross_attention() -> None:
    ours, ref = pair()
    x, mem = torch.randn(2, 4, D_MODEL), torch.randn(2, 9, D_MODEL)
    out, w = ours(x, mem, need_weights=True)
    expected, ref_w = ref(x, mem, mem, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=0)
    assert w.shape == (2, N_HEADS, 4, 9)


def test_mha_key_padding_mask() -> None:
    ours, ref = pair()
    x, mem = torch.randn(2, 5, D_MODEL), torch.randn(2, 8, D_MODEL)
    kpm = torch.zeros(2, 8, dtype=torch.bool)
    kpm[0, 5:] = True
    kpm[1, 2:4] = True
    for need_weights in (False, True):
        out, _ = ours(x, mem, key_padding_mask=kpm, need_weights=need_weights)
        expected, _ = ref(x, mem, mem, key_padding_mask=kpm, need_weights=False)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_causal(need_weights: bool) -> None:
    ours, ref = pair()
    x = torch.randn(2, 6, D_MODEL)
    out, _ = ours(x, is_causal=True, need_weights=need_weights)
    not_allowed = ~torch.ones(6, 6, dtype=torch.bool).tril()  # torch.nn: True = NOT allowed
    expected, _ = ref(x, x, x, attn_mask=not_allowed, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_mha_bool_attn_mask_convention_is_inverted_from_torch_nn() -> None:
    ours, ref = pair()
    x = torch.randn(2, 6, D_MODEL)
    allowed = torch.rand(6, 6) > 0.4
    allowed.fill_diagonal_(True)
    out, _ = ours(x, attn_mask=allowed)
    expected, _ = ref(x, x, x, attn_mask=~allowed, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_mha_per_head_weights() -> None:
    ours, ref = pair()
    x = torch.randn(2, 6, D_MODEL)
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[1, -2:] = True
    not_allowed = ~torch.ones(6, 6, dtype=torch.bool).tril()
    out, w = ours(x, key_padding_mask=kpm, is_causal=True, need_weights=True)
    expected, ref_w = ref(
        x, x, x, key_padding_mask=kpm, attn_mask=not_allowed, need_weights=True, average_attn_weights=False
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=0)


def test_mha_rejects_indivisible_heads() -> None:
    with pytest.raises(ValueError):
        MultiHeadAttention(10, 3)


# --- KV cache -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [[1] * 8, [3, 4, 1], [5, 3], [8]])
@pytest.mark.parametrize("rotary", [False, True])
def test_mha_cache_chunks_equal_full_causal_pass(chunks: list[int], rotary: bool) -> None:
    rope = RotaryEmbedding(D_MODEL // N_HEADS, 32) if rotary else None
    mha = MultiHeadAttention(D_MODEL, N_HEADS, rotary=rope).eval()
    x = torch.randn(2, sum(chunks), D_MODEL)
    full, _ = mha(x, is_causal=True)
    cache, outs, start = KVCache(1), [], 0
    for n in chunks:
        out, _ = mha(x[:, start : start + n], is_causal=True, cache=cache)
        outs.append(out)
        start += n
        assert cache.seq_len == start
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0)


def test_mha_cross_cache_reuses_memory_projection() -> None:
    mha = MultiHeadAttention(D_MODEL, N_HEADS).eval()
    x, mem = torch.randn(2, 4, D_MODEL), torch.randn(2, 9, D_MODEL)
    full, _ = mha(x, mem)
    cache = KVCache(1)
    first, _ = mha(x[:, :2], mem, cache=cache)
    k0 = cache.layers[0][0]
    second, _ = mha(x[:, 2:], mem, cache=cache)
    assert cache.layers[0][0] is k0 and cache.seq_len == 9
    torch.testing.assert_close(torch.cat([first, second], 1), full, atol=1e-6, rtol=0)


def test_kv_cache_reorder_and_crop() -> None:
    cache = KVCache(2)
    assert cache.seq_len == 0 and len(cache) == 2
    k = torch.arange(3 * 1 * 4 * 2, dtype=torch.float32).view(3, 1, 4, 2)
    for layer in range(2):
        cache.update(layer, k, -k)
    cache.update(0, k[:, :, :1], -k[:, :, :1])
    assert cache.layers[0][0].size(2) == 5
    cache.reorder(torch.tensor([2, 0]))
    assert torch.equal(cache.layers[1][0], k[[2, 0]])
    cache.crop(3)
    assert cache.seq_len == 3 and torch.equal(cache.layers[1][1], -k[[2, 0]][:, :, :3])


# --- float key_padding_mask and keys/values of other widths, against torch.nn.MultiheadAttention ------------


def test_mha_float_key_padding_mask_is_added_as_torch_nn() -> None:
    ours, ref = pair()
    x, mem = torch.randn(2, 5, D_MODEL), torch.randn(2, 8, D_MODEL)
    kpm = torch.randn(2, 8)  # an additive bias per key, -inf = padding
    kpm[0, 6:] = float("-inf")
    for need_weights in (False, True):
        out, w = ours(x, mem, key_padding_mask=kpm, need_weights=need_weights)
        expected, ref_w = ref(x, mem, mem, key_padding_mask=kpm, need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        if need_weights:
            torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=0)
    # with the causal mask (torch.nn: a float attn_mask, -inf above the diagonal) on self-attention
    kpm = torch.randn(2, 5)
    out, _ = ours(x, key_padding_mask=kpm, is_causal=True)
    causal = torch.zeros(5, 5).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    expected, _ = ref(x, x, x, key_padding_mask=kpm, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # 0 / -inf floats mean exactly what the boolean mask means
    padding = torch.zeros(2, 8, dtype=torch.bool)
    padding[1, 3:] = True
    as_float = torch.zeros(2, 8).masked_fill(padding, float("-inf"))
    torch.testing.assert_close(ours(x, mem, key_padding_mask=as_float)[0], ours(x, mem, key_padding_mask=padding)[0])


def test_merge_masks_float_key_padding_and_integer_refused() -> None:
    kpm = torch.tensor([[0.5, float("-inf"), 0.0]])
    m = merge_masks(2, 3, key_padding_mask=kpm, attn_mask=torch.ones(2, 3))
    assert m.dtype == torch.float32 and m.shape == (1, 1, 2, 3)
    assert m[0, 0].tolist() == [[1.5, float("-inf"), 1.0]] * 2
    causal = merge_masks(2, 2, key_padding_mask=torch.tensor([[0.25, 0.0]]), is_causal=True)
    assert causal[0, 0].tolist() == [[0.25, float("-inf")], [0.25, 0.0]]
    with pytest.raises(ValueError, match="attention_mask == 0"):
        merge_masks(2, 3, key_padding_mask=torch.tensor([[1, 1, 0]]))


def pair_kv(kdim: int, vdim: int, bias: bool = True) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    ours = MultiHeadAttention(D_MODEL, N_HEADS, bias=bias, kdim=kdim, vdim=vdim).eval()
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, bias=bias, kdim=kdim, vdim=vdim, batch_first=True).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)
        ours.in_proj.weight.copy_(ref.q_proj_weight)
        ours.k_proj.weight.copy_(ref.k_proj_weight)
        ours.v_proj.weight.copy_(ref.v_proj_weight)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            q_b, k_b, v_b = ref.in_proj_bias.split(D_MODEL)
            ours.in_proj.bias.copy_(q_b)
            ours.k_proj.bias.copy_(k_b)
            ours.v_proj.bias.copy_(v_b)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


@pytest.mark.parametrize(("kdim", "vdim"), [(10, 14), (16, 16), (D_MODEL, 9)])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_kdim_vdim_match_torch_nn(kdim: int, vdim: int, bias: bool) -> None:
    ours, ref = pair_kv(kdim, vdim, bias)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x, key, value = torch.randn(2, 4, D_MODEL), torch.randn(2, 7, kdim), torch.randn(2, 7, vdim)
    kpm = torch.zeros(2, 7, dtype=torch.bool)
    kpm[1, 4:] = True
    out, w = ours(x, key, key_padding_mask=kpm, need_weights=True, value=value)
    expected, ref_w = ref(x, key, value, key_padding_mask=kpm, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=0)
    cache = KVCache(1)  # the memory's keys/values are projected once, then reused
    steps = [ours(x[:, i : i + 1], key, key_padding_mask=kpm, cache=cache, value=value)[0] for i in range(4)]
    torch.testing.assert_close(torch.cat(steps, 1), out, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="memory"):
        ours(x)


def test_mha_separate_value_of_model_width_matches_torch_nn() -> None:
    ours, ref = pair()
    x, key, value = torch.randn(2, 4, D_MODEL), torch.randn(2, 6, D_MODEL), torch.randn(2, 6, D_MODEL)
    out, _ = ours(x, key, value=value)
    expected, _ = ref(x, key, value, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_decoder_stack_with_a_memory_of_another_width() -> None:
    from tinyformers.core.blocks import CoreConfig, DecoderStack

    cfg = CoreConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32)
    stack = DecoderStack(cfg, memory_dim=12).eval()
    assert all(layer.cross_attn.k_proj.in_features == 12 for layer in stack.layers)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 12)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 7:] = True
    full, _, cross = stack(x, memory, memory_key_padding_mask=mask, output_attentions=True)
    assert full.shape == (2, 5, 16) and cross[0].shape == (2, 2, 5, 9)
    assert (cross[0][0, :, :, 7:] == 0).all()  # padded memory positions get no weight
    cache, cross_cache = KVCache(2), KVCache(2)
    steps = [stack(x[:, i : i + 1], memory, None, mask, cache, cross_cache)[0] for i in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_fused_attention_runs_in_fp32_under_cpu_bf16_autocast() -> None:
    """On a CPU, bf16 autocast leaves the fused attention kernel in fp32 (its bf16 backward is the slow part of a
    small model's step); the result is the fp32 kernel's on the bf16 inputs, and gradients reach the bf16 inputs."""
    q, k, v = (torch.randn(2, 4, 8, 16).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_sdpa(q, k, v, is_causal=True)
    assert out.dtype == torch.float32
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16
    x = torch.randn(2, 4, 8, 16)  # no autocast: exactly torch's call
    assert torch.equal(fused_sdpa(x, x, x), F.scaled_dot_product_attention(x, x, x))


def test_attention_module_under_bf16_autocast_is_close_to_fp32() -> None:
    mha = MultiHeadAttention(32, 4, dropout=0.0).eval()
    x = torch.randn(2, 10, 32)
    ref, _ = mha(x, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = mha(x, is_causal=True)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
