"""The layers every family is built from: feed-forward (§3.3), norms, encoder and decoder blocks (§3.1).

A block is a stack of residual sublayers. The paper (post-norm) computes ``LayerNorm(x + Sublayer(x))``;
GPT-2, ViT and most modern models (pre-norm) compute ``x + Sublayer(LayerNorm(x))``, which keeps an
identity path from input to output and trains deep stacks without warmup tricks (Xiong et al. 2020).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.attention import KVCache, MultiHeadAttention
from tinyformers.core.dropout import Dropout
from tinyformers.core.positions import ROPE_SCALINGS, RotaryEmbedding

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact erf form (BERT, ViT)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
}


@dataclass
class CoreConfig:
    """Hyperparameters shared by every family.

    Attributes:
        d_model: width of the residual stream. n_heads: attention heads. n_layers: blocks.
        n_kv_heads: key/value heads of self-attention, a divisor of n_heads (grouped-query attention; None =
            n_heads, 1 = multi-query).
        d_ff: feed-forward inner width (the paper: 4 * d_model).
        dropout: residual, embedding and feed-forward dropout. attn_dropout: on attention weights.
        activation: 'relu' (paper), 'gelu' (BERT, ViT), 'gelu_tanh' (GPT-2) or 'swiglu' (LLaMA).
        norm: 'layernorm' or 'rmsnorm'. norm_eps: the norm's epsilon.
        norm_first: pre-norm (True) or post-norm as in the paper (False).
        bias: biases in linear layers and norms. qkv_bias: biases on the query/key/value projection alone
            (None = bias; Qwen2: bias=False, qkv_bias=True).
        positions: 'learned', 'sinusoidal', 'rotary' or 'none'. max_len: longest sequence.
        rope_base: rotary's base (Llama's ``rope_theta``). rope_scaling: None, or Hugging Face's ``rope_scaling``
            dict for 'linear' or 'llama3' (see :func:`~tinyformers.core.positions.rope_frequencies`).
    """

    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.0
    attn_dropout: float = 0.0
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = True
    bias: bool = True
    positions: str = "learned"
    max_len: int = 512
    n_kv_heads: int | None = None
    qkv_bias: bool | None = None
    rope_base: float = 10000.0
    rope_scaling: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        kind = None if self.rope_scaling is None else self.rope_scaling.get("rope_type")
        if kind not in (None, "default", *ROPE_SCALINGS):
            raise ValueError(f"unknown rope_scaling type {kind!r}: choose {', '.join(ROPE_SCALINGS)}")
        if self.activation not in (*ACTIVATIONS, "swiglu"):
            raise ValueError(f"unknown activation {self.activation!r}: choose {', '.join([*ACTIVATIONS, 'swiglu'])}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"unknown norm {self.norm!r}: choose layernorm or rmsnorm")
        if self.positions not in ("learned", "sinusoidal", "rotary", "none"):
            raise ValueError(f"unknown positions {self.positions!r}: choose learned, sinusoidal, rotary or none")


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): ``x / sqrt(mean(x^2) + eps) * g``, no centring, no bias."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(cfg: CoreConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class FeedForward(nn.Module):
    """§3.3 position-wise feed-forward: ``FFN(x) = act(x W_1 + b_1) W_2 + b_2``.

    With 'swiglu' (Shazeer 2020): ``(SiLU(x W_1) * x W_3) W_2``.
    """

    def __init__(self, cfg: CoreConfig) -> None:
        super().__init__()
        self.activation = cfg.activation
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if cfg.activation == "swiglu" else None
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate is not None:
            h = F.silu(self.gate(x)) * self.fc1(x)
        else:
            h = ACTIVATIONS[self.activation](self.fc1(x))
        return self.fc2(self.dropout(h))


class _ResidualBlock(nn.Module):
    """What the encoder and decoder blocks share: self-attention and feed-forward sublayers, each residual."""

    def __init__(self, cfg: CoreConfig, layer_idx: int = 0, rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = MultiHeadAttention(
            cfg.d_model,
            cfg.n_heads,
            cfg.attn_dropout,
            cfg.bias,
            rotary,
            layer_idx,
            n_kv_heads=cfg.n_kv_heads,
            qkv_bias=cfg.qkv_bias,
        )
        self.norm_attn = make_norm(cfg)
        self.ff = FeedForward(cfg)
        self.norm_ff = make_norm(cfg)
        self.dropout = Dropout(cfg.dropout)

    def _residual(self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        """Pre-norm ``x + drop(f(norm(x)))`` or the paper's post-norm ``norm(x + drop(f(x)))``."""
        if self.norm_first:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))

    def _self_attention(self, x: Tensor, weights: list[Tensor | None], **kw: object) -> Tensor:
        def attend(h: Tensor) -> Tensor:
            out, w = self.self_attn(h, **kw)
            weights.append(w)
            return out

        return self._residual(x, self.norm_attn, attend)


class EncoderBlock(_ResidualBlock):
    """Self-attention then feed-forward, each a residual sublayer (§3.1, "Encoder").

    With ``is_causal=True`` this is also the block of a decoder-only language model (GPT).
    """

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` (B, T, d_model) -> (B, T, d_model), and the attention weights (B, H, T, S) if asked."""
        weights: list[Tensor | None] = []
        x = self._self_attention(
            x,
            weights,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal,
            need_weights=output_attentions,
            cache=cache,
        )
        x = self._residual(x, self.norm_ff, self.ff)
        return x, weights[0]


class DecoderBlock(_ResidualBlock):
    """Masked self-attention, cross-attention over the encoder's memory, feed-forward (§3.1, "Decoder").

    ``memory_dim``: width of the memory when it differs from ``d_model`` (e.g. an encoder of another width).
    """

    def __init__(
        self,
        cfg: CoreConfig,
        layer_idx: int = 0,
        rotary: RotaryEmbedding | None = None,
        memory_dim: int | None = None,
    ) -> None:
        super().__init__(cfg, layer_idx, rotary)
        self.cross_attn = MultiHeadAttention(
            cfg.d_model, cfg.n_heads, cfg.attn_dropout, cfg.bias, None, layer_idx, kdim=memory_dim, vdim=memory_dim
        )
        self.norm_cross = make_norm(cfg)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = True,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns ``(x, self-attention weights, cross-attention weights)``; weights only if asked."""
        self_w: list[Tensor | None] = []
        x = self._self_attention(
            x,
            self_w,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal,
            need_weights=output_attentions,
            cache=cache,
        )
        cross_w: list[Tensor | None] = []

        def cross(h: Tensor) -> Tensor:
            out, w = self.cross_attn(
                h,
                memory,
                key_padding_mask=memory_key_padding_mask,
                need_weights=output_attentions,
                cache=cross_cache,
            )
            cross_w.append(w)
            return out

        x = self._residual(x, self.norm_cross, cross)
        x = self._residual(x, self.norm_ff, self.ff)
        return x, self_w[0], cross_w[0]


class EncoderStack(nn.Module):
    """``n_layers`` encoder blocks, plus a final norm for pre-norm stacks (whose blocks end un-normalised)."""

    def __init__(self, cfg: CoreConfig, final_norm: bool | None = None, rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderBlock(cfg, i, rotary) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg) if (cfg.norm_first if final_norm is None else final_norm) else None

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:
        attentions = []
        for layer in self.layers:
            x, w = layer(x, key_padding_mask, attn_mask, is_causal, cache, output_attentions)
            if output_attentions:
                attentions.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return x, attentions


class DecoderStack(nn.Module):
    """``n_layers`` decoder blocks with cross-attention, plus a final norm for pre-norm stacks.

    ``memory_dim``: width of the memory when it differs from ``d_model``.
    """

    def __init__(
        self,
        cfg: CoreConfig,
        final_norm: bool | None = None,
        rotary: RotaryEmbedding | None = None,
        memory_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderBlock(cfg, i, rotary, memory_dim) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg) if (cfg.norm_first if final_norm is None else final_norm) else None

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        self_attns, cross_attns = [], []
        for layer in self.layers:
            x, sw, cw = layer(
                x,
                memory,
                key_padding_mask,
                memory_key_padding_mask,
                is_causal=True,
                cache=cache,
                cross_cache=cross_cache,
                output_attentions=output_attentions,
            )
            if output_attentions:
                self_attns.append(sw)
                cross_attns.append(cw)
        if self.norm is not None:
            x = self.norm(x)
        return x, self_attns, cross_attns
