"""Attention: Eq. 1 of "Attention Is All You Need", multi-head attention (§3.2.2) and a KV cache.

Mask conventions, chosen to match what users already know from PyTorch:

* ``attn_mask`` — boolean, ``True`` = *may attend* (as ``F.scaled_dot_product_attention``), or a float
  tensor added to the scores. Broadcastable to ``(B, H, T, S)``.
* ``key_padding_mask`` — boolean ``(B, S)``, ``True`` = *padding, ignore* (as ``nn.MultiheadAttention``).
* ``is_causal`` — query ``i`` may attend to key ``j`` only if ``j <= i`` *in absolute position*. With a
  KV cache holding ``P`` past positions, query ``i`` sits at position ``P + i`` (bottom-right alignment);
  getting this wrong is the classic bug of cached decoding with multi-token queries.
"""

from __future__ import annotations

import math

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
    mask: Tensor | None = None
    if is_causal:
        mask = causal_mask(t, s, device)  # (T, S)
    if key_padding_mask is not None:
        keep = ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        mask = keep if mask is None else mask & keep
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            mask = attn_mask if mask is None else mask & attn_mask
        else:  # additive float mask: fold the boolean part in as -inf
            mask = attn_mask if mask is None else attn_mask.masked_fill(~mask, float("-inf"))
    return mask


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
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # fully-masked rows: softmax of all -inf
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, T, d_v)


def fast_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """Eq. 1, the fast path: PyTorch's fused kernel. Same inputs and result as the readable path."""
    if mask is not None and mask.dtype == torch.bool:
        # The fused kernel returns NaN for a row with every key masked; the readable path returns 0.
        # Let such rows attend everywhere, then zero them, so both paths agree exactly. Done for every
        # boolean mask, without first asking whether such a row exists: that question would read a tensor
        # on the host each call (a sync) and break a torch.compile graph in two.
        empty = ~mask.any(dim=-1, keepdim=True)  # (…, T, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout_p)
        return out.masked_fill(empty, 0.0)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class KVCache:
    """Keys and values of the positions already processed, one ``(k, v)`` pair per layer.

    Shapes ``(B, H, S, d_head)``. Incremental decoding feeds only new tokens; each attention layer
    appends their keys/values here and attends over the whole history.
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
        """Append new ``k, v`` ``(B, H, T, d)`` for ``layer`` and return the full ``(B, H, S, d)`` pair."""
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


class MultiHeadAttention(nn.Module):
    """Multi-head attention, §3.2.2: ``MultiHead(Q, K, V) = Concat(head_1..head_h) W^O``,
    ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``.

    The three input projections live in one ``(3 d_model, d_model)`` weight, like
    ``nn.MultiheadAttention.in_proj_weight`` and GPT-2's ``c_attn``: self-attention does one matmul;
    cross-attention projects queries from ``x`` and keys/values from ``memory`` with slices of it.

    Args:
        d_model: model width; split into ``n_heads`` heads of ``d_model // n_heads``.
        n_heads: number of heads.
        dropout: dropout on attention weights.
        bias: whether projections have biases.
        rotary: a :class:`~tinyformers.core.positions.RotaryEmbedding` applied to queries and keys, or None.
        layer_idx: this layer's slot in a :class:`KVCache`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: nn.Module | None = None,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)  # [W^Q; W^K; W^V]
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.dropout = dropout
        self.rotary = rotary
        self.layer_idx = layer_idx

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, d_head)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` ``(B, T, d_model)`` to itself, or to ``memory`` ``(B, S, d_model)`` (cross).

        With ``cache``, ``x`` holds only the new positions; keys/values of earlier positions come from
        the cache (for cross-attention the memory's keys/values are computed once and reused).
        Returns ``(output (B, T, d_model), weights (B, H, T, S) or None)``.
        """
        b, t, d = x.shape
        past = 0
        if memory is None:  # self-attention: one fused projection
            q, k, v = self.in_proj(x).split(d, dim=-1)  # 3 x (B, T, d)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, T, d_head)
            if cache is not None and cache.layers[self.layer_idx] is not None:
                past = cache.layers[self.layer_idx][0].size(2)  # positions already processed
            if self.rotary is not None:
                q, k = self.rotary(q, past), self.rotary(k, past)
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)  # (B, H, past + T, d_head)
        else:  # cross-attention: queries from x, keys and values from the encoder's memory
            w, bias = self.in_proj.weight, self.in_proj.bias
            q = self._heads(F.linear(x, w[:d], None if bias is None else bias[:d]))
            cached = cache.layers[self.layer_idx] if cache is not None else None
            if cached is None:
                kv = F.linear(memory, w[d:], None if bias is None else bias[d:])
                k, v = (self._heads(z) for z in kv.split(d, dim=-1))  # (B, H, S, d_head)
                if cache is not None:
                    cache.layers[self.layer_idx] = (k, v)
            else:
                k, v = cached
        p = self.dropout if self.training else 0.0
        if is_causal and attn_mask is None and key_padding_mask is None and t == k.size(2) and not need_weights:
            # plain causal self-attention (training, prefill): the fused kernel's own causal path, no mask tensor
            out, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True), None
            return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), weights
        mask = merge_masks(t, k.size(2), attn_mask, key_padding_mask, is_causal, x.device)
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, p)
        else:
            out, weights = fast_attention(q, k, v, mask, p), None
        out = out.transpose(1, 2).reshape(b, t, d)  # (B, T, H * d_head): concatenate the heads
        return self.out_proj(out), weights
