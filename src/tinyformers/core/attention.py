"""Attention: Eq. 1 of "Attention Is All You Need", multi-head attention (§3.2.2), grouped-query attention and a
KV cache.

Mask conventions, chosen to match what users already know from PyTorch:

* ``attn_mask`` — boolean, ``True`` = *may attend* (as ``F.scaled_dot_product_attention``), or a float
  tensor added to the scores. Broadcastable to ``(B, H, T, S)``.
* ``key_padding_mask`` — ``(B, S)``: boolean, ``True`` = *padding, ignore*, or a float tensor added to the
  scores of each key (``-inf`` = ignore), both as ``nn.MultiheadAttention``.
* ``is_causal`` — query ``i`` may attend to key ``j`` only if ``j <= i`` *in absolute position*. With a
  KV cache holding ``P`` past positions, query ``i`` sits at position ``P + i`` (bottom-right alignment);
  getting this wrong is the classic bug of cached decoding with multi-token queries.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def causal_mask(t: int, s: int, device: torch.device | None = None) -> Tensor:
    """Boolean ``(T, S)`` mask, ``True`` = may attend, for ``T`` queries that are the last ``T`` of ``S`` keys.

    Query ``i`` is at absolute position ``S - T + i`` and sees keys ``0 .. S - T + i``.
    """
    q_pos = torch.arange(s - t, s, device=device).unsqueeze(1)  # (T, 1)
    k_pos = torch.arange(s, device=device).unsqueeze(0)  # (1, S)
    return k_pos <= q_pos


def merge_masks(
    t: int,
    s: int,
    attn_mask: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    is_causal: bool = False,
    device: torch.device | None = None,
) -> Tensor | None:
    """Combine every mask kind into one tensor for Eq. 1: boolean (``True`` = may attend) or additive float.

    Returns ``None`` when nothing is masked. Shape broadcastable to ``(B, H, T, S)``.
    """
    parts = []
    if is_causal:
        parts.append(causal_mask(t, s, device))  # (T, S)
    if key_padding_mask is not None:
        if not (key_padding_mask.dtype == torch.bool or key_padding_mask.is_floating_point()):
            raise ValueError(
                f"key_padding_mask must be boolean (True = padding) or float (added to the scores), "
                f"got {key_padding_mask.dtype}; from HF's attention_mask use attention_mask == 0"
            )
        kpm = key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        parts.append(~kpm if kpm.dtype == torch.bool else kpm)  # boolean: True = padding -> True = may attend
    if attn_mask is not None:
        parts.append(attn_mask)
    mask: Tensor | None = None
    for part in parts:
        mask = part if mask is None else _both(mask, part)
    return mask


def _both(a: Tensor, b: Tensor) -> Tensor:
    """Two masks at once: boolean AND, else additive float with a boolean part folded in as -inf."""
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    if a.dtype == torch.bool:
        a, b = b, a  # a is the float one
    return torch.where(b, a, float("-inf")) if b.dtype == torch.bool else a + b  # floats add, as torch.nn


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Eq. 1, the readable path: ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V``.

    Args:
        q: queries ``(B, H, T, d_k)``; k: keys ``(B, H, S, d_k)``; v: values ``(B, H, S, d_v)``.
        mask: boolean (``True`` = may attend) or additive float, broadcastable to ``(B, H, T, S)``.
        dropout_p: dropout on the attention weights (§5.4), applied only when > 0.

    Returns:
        ``(output (B, H, T, d_v), weights (B, H, T, S))``. A query row with no key to attend to
        (every key masked) gets zero weights and a zero output instead of NaN.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S); d_k of a head, not d_model
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    # A fully-masked row (every score -inf) has no softmax: give it zero weights, and keep its NaN out of the
    # backward too (a softmax of all -inf is NaN, and so is its gradient, whatever is done to it afterwards).
    empty = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (B, H, T, 1)
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, T, d_v)


def fused_sdpa(q: Tensor, k: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
    """``F.scaled_dot_product_attention``, kept in fp32 on a CPU under bf16 autocast.

    There, PyTorch's fused CPU kernel in bf16 is the slow part of a small model's step: in a profile of the
    nanoGPT configuration (4 heads of 32 dims, 64 tokens; torch 2.13, AVX-512 bf16 CPU) its backward was the
    largest item of the bf16 step and took several times the fp32 kernel's time (``benchmarks/cpu_kernels.py``
    measures both), cancelling what the bf16 matmuls save. The projections around it still run in bf16
    (autocast casts the fp32 output back at ``out_proj``). Elsewhere (CUDA, no autocast) the call is unchanged.
    """
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


_ZEROES_EMPTY_ROWS: dict[str, bool] = {}  # device type -> whether the fused kernel zeroes a fully-masked row


def kernel_zeroes_empty_rows(device_type: str) -> bool:
    """Whether ``F.scaled_dot_product_attention`` on this kind of device already returns 0 (not NaN) for a query
    row whose keys are all masked. Asked once per device type, with a 2-query call, and remembered.

    PyTorch 2.13's CPU kernels do (checked eager and compiled, forward and backward, fp32 and bf16); older
    versions and other backends may return NaN, and then the guard stays. Inside a ``torch.compile`` trace an
    unanswered question is not asked (it would read a tensor on the host): the answer is then "no" and the
    caller keeps its guard. The CPU's answer is settled at import, so compiled CPU graphs never need that.
    """
    known = _ZEROES_EMPTY_ROWS.get(device_type)
    if known is None:
        if torch.compiler.is_compiling():
            return False
        with torch.no_grad():
            x = torch.ones(1, 1, 2, 2, device=device_type)
            mask = torch.tensor([[False, False], [True, True]], device=device_type)  # query 0 sees no key
            known = bool((F.scaled_dot_product_attention(x, x, x, attn_mask=mask)[0, 0, 0] == 0).all())
        _ZEROES_EMPTY_ROWS[device_type] = known
    return known


kernel_zeroes_empty_rows("cpu")


def fast_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """Eq. 1, the fast path: PyTorch's fused kernel. Same inputs and result as the readable path."""
    if mask is not None and mask.dtype == torch.bool and not kernel_zeroes_empty_rows(q.device.type):
        # This kernel returns NaN for a row with every key masked; the readable path returns 0.
        # Let such rows attend everywhere, then zero them, so both paths agree exactly. Done for every
        # boolean mask, without first asking whether such a row exists: that question would read a tensor
        # on the host each call (a sync) and break a torch.compile graph in two. Where the kernel zeroes such
        # rows itself (PyTorch 2.13's CPU kernels) the guard's four extra operations and their backward
        # are skipped: small models call attention with a padding mask in every layer of every step.
        empty = ~mask.any(dim=-1, keepdim=True)  # (…, T, 1)
        out = fused_sdpa(q, k, v, attn_mask=mask | empty, dropout_p=dropout_p)
        return out.masked_fill(empty, 0.0)
    return fused_sdpa(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class KVCache:
    """Keys and values of the positions already processed, one ``(k, v)`` pair per layer.

    Shapes ``(B, H_kv, S, d_head)``: with grouped-query attention only the ``H_kv`` key/value heads are stored,
    which is the point of it (a cache ``H / H_kv`` times smaller). Incremental decoding feeds only new tokens;
    each attention layer appends their keys/values here and attends over the whole history.
    """

    def __init__(self, n_layers: int) -> None:
        self.layers: list[tuple[Tensor, Tensor] | None] = [None] * n_layers

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def seq_len(self) -> int:
        """Number of cached positions (0 when empty)."""
        first = self.layers[0]
        return 0 if first is None else first[0].size(2)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append new ``k, v`` ``(B, H_kv, T, d)`` for ``layer`` and return the full ``(B, H_kv, S, d)`` pair."""
        past = self.layers[layer]
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search keeps the cache of the beams it continues)."""
        self.layers = [None if kv is None else (kv[0][index], kv[1][index]) for kv in self.layers]

    def crop(self, max_len: int) -> None:
        """Keep only the first ``max_len`` positions."""
        self.layers = [None if kv is None else (kv[0][:, :, :max_len], kv[1][:, :, :max_len]) for kv in self.layers]


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Grouped-query attention's sharing: ``(B, H_kv, S, d)`` -> ``(B, H_kv * n_rep, S, d)``, where query head
    ``h`` reads key/value head ``h // n_rep`` (consecutive query heads form a group, as in Llama)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, §3.2.2: ``MultiHead(Q, K, V) = Concat(head_1..head_h) W^O``,
    ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``.

    The three input projections live in one ``(3 d_model, d_model)`` weight, like
    ``nn.MultiheadAttention.in_proj_weight`` and GPT-2's ``c_attn``: self-attention does one matmul;
    cross-attention projects queries from ``x`` and keys/values from ``memory`` with slices of it.
    Cross-attention to a memory of another width (``kdim``/``vdim``, as ``nn.MultiheadAttention``) keeps
    ``W^Q`` in ``in_proj`` and has its own ``k_proj`` ``(d_kv, kdim)`` and ``v_proj`` ``(d_kv, vdim)``.

    Grouped-query attention (Ainslie et al. 2023, "GQA"; Llama 2/3, Qwen2) projects keys and values to only
    ``n_kv_heads`` heads, each shared by ``n_heads / n_kv_heads`` query heads; ``n_kv_heads=1`` is multi-query
    attention (Shazeer 2019). The projection is then ``(d_model + 2 n_kv_heads d_head, d_model)`` and the cache
    holds ``n_kv_heads`` heads; the shared heads are repeated (:func:`repeat_kv`) only for Eq. 1 itself.

    Args:
        d_model: model width; split into ``n_heads`` heads of ``d_model // n_heads``.
        n_heads: number of (query) heads.
        dropout: dropout on attention weights.
        bias: whether projections have biases.
        rotary: a :class:`~tinyformers.core.positions.RotaryEmbedding` applied to queries and keys, or None.
        layer_idx: this layer's slot in a :class:`KVCache`.
        kdim, vdim: widths of the keys' and values' inputs (cross-attention's memory); default ``d_model``.
        n_kv_heads: key/value heads, a divisor of ``n_heads`` (None = ``n_heads``: plain multi-head attention).
        qkv_bias: biases on the query/key/value projection only (None = ``bias``); Qwen2 has them, its output
            projection has none.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: nn.Module | None = None,
        layer_idx: int = 0,
        kdim: int | None = None,
        vdim: int | None = None,
        n_kv_heads: int | None = None,
        qkv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.n_kv_heads, self.d_kv = n_kv_heads, n_kv_heads * self.d_head  # d_kv: width of the keys (and values)
        in_bias = bias if qkv_bias is None else qkv_bias
        self.kdim, self.vdim = kdim or d_model, vdim or d_model
        fused = self.kdim == self.vdim == d_model
        # [W^Q; W^K; W^V] in one weight, or W^Q alone when the memory has another width
        self.in_proj = nn.Linear(d_model, d_model + 2 * self.d_kv if fused else d_model, bias=in_bias)
        self.k_proj = None if fused else nn.Linear(self.kdim, self.d_kv, bias=in_bias)  # W^K from kdim
        self.v_proj = None if fused else nn.Linear(self.vdim, self.d_kv, bias=in_bias)  # W^V from vdim
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.dropout = dropout
        self.rotary = rotary
        self.layer_idx = layer_idx

    def _heads(self, x: Tensor) -> Tensor:
        b, t, width = x.shape
        return x.view(b, t, width // self.d_head, self.d_head).transpose(1, 2)  # (B, H or H_kv, T, d_head)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
        value: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` ``(B, T, d_model)`` to itself, or to ``memory`` ``(B, S, kdim)`` (cross).

        Cross-attention's values come from ``memory`` too, or from ``value`` ``(B, S, vdim)`` if given
        (``nn.MultiheadAttention``'s separate key and value inputs).
        With ``cache``, ``x`` holds only the new positions; keys/values of earlier positions come from
        the cache (for cross-attention the memory's keys/values are computed once and reused).
        Returns ``(output (B, T, d_model), weights (B, H, T, S) or None)``.
        """
        b, t, d = x.shape
        past = 0
        if memory is None and self.k_proj is not None:
            raise ValueError(f"kdim={self.kdim}, vdim={self.vdim}: this attention needs a memory to attend to")
        if memory is None:  # self-attention: one fused projection
            qkv = self.in_proj(x)  # (B, T, d + 2 d_kv): queries, keys, values side by side
            cached = cache.layers[self.layer_idx] if cache is not None else None
            if cached is not None:
                past = cached[0].size(2)  # positions already processed
            if self.rotary is not None:  # queries and keys rotated in one call, as (B, T, H + H_kv, d_head)
                qk, v = qkv.split([d + self.d_kv, self.d_kv], dim=-1)  # split: its backward is one cat
                qk = qk.view(b, t, self.n_heads + self.n_kv_heads, self.d_head)
                q, k = self.rotary(qk, past, seq_dim=-3).split([self.n_heads, self.n_kv_heads], dim=2)
                q, k, v = q.transpose(1, 2), k.transpose(1, 2), self._heads(v)
            else:
                q, k, v = (self._heads(z) for z in qkv.split([d, self.d_kv, self.d_kv], dim=-1))
            # q (B, H, T, d_head); k, v (B, H_kv, T, d_head)
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)  # (B, H_kv, past + T, d_head)
        else:  # cross-attention: queries from x, keys and values from the encoder's memory
            w, bias = self.in_proj.weight, self.in_proj.bias
            q = self._heads(F.linear(x, w[:d], None if bias is None else bias[:d]))
            cached = cache.layers[self.layer_idx] if cache is not None else None
            if cached is None:
                value = memory if value is None else value
                kv_bias = None if bias is None else bias[d:]
                if self.k_proj is not None and self.v_proj is not None:  # memory of another width
                    k, v = self._heads(self.k_proj(memory)), self._heads(self.v_proj(value))
                elif value is memory:  # keys and values in one matmul
                    kv = F.linear(memory, w[d:], kv_bias)
                    k, v = (self._heads(z) for z in kv.split(self.d_kv, dim=-1))  # (B, H_kv, S, d_head)
                else:
                    wk, wv = w[d:].split(self.d_kv)
                    bk, bv = (None, None) if kv_bias is None else kv_bias.split(self.d_kv)
                    k, v = self._heads(F.linear(memory, wk, bk)), self._heads(F.linear(value, wv, bv))
                if cache is not None:
                    cache.layers[self.layer_idx] = (k, v)
            else:
                k, v = cached
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, d_head)
        p = self.dropout if self.training else 0.0
        if is_causal and attn_mask is None and key_padding_mask is None and t == k.size(2) and not need_weights:
            # plain causal self-attention (training, prefill): the fused kernel's own causal path, no mask tensor
            out, weights = fused_sdpa(q, k, v, dropout_p=p, is_causal=True), None
            return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), weights
        mask = merge_masks(t, k.size(2), attn_mask, key_padding_mask, is_causal, x.device)
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, p)
        else:
            out, weights = fast_attention(q, k, v, mask, p), None
        out = out.transpose(1, 2).reshape(b, t, d)  # (B, T, H * d_head): concatenate the heads
        return self.out_proj(out), weights
