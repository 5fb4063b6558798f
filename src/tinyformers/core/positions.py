"""Positional information: sinusoidal (§3.5), learned (GPT-2, BERT, ViT) and rotary (RoPE, Su et al. 2021).

Attention is permutation-invariant, so without these a transformer cannot tell "dog bites man" from
"man bites dog". Sinusoidal and learned encodings are *added* to the token embeddings; rotary
embeddings *rotate* queries and keys inside attention so that their dot product depends only on the
relative distance between positions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """§3.5: ``PE(pos, 2i) = sin(pos / base^(2i/d))``, ``PE(pos, 2i+1) = cos(pos / base^(2i/d))``. ``(max_len, d)``."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(base) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq[: d_model // 2])
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal encodings (§3.5). Not a parameter and not saved: it is a pure function of position."""

    table: Tensor  # (max_len, d_model), a buffer

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """``positions`` (T,) or (B, T) integer -> encodings (…, T, d_model)."""
        return self.table[positions]


class LearnedPositions(nn.Module):
    """One trained vector per position (GPT-2 ``wpe``, BERT ``position_embeddings``)."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, positions: Tensor) -> Tensor:
        """``positions`` (T,) or (B, T) integer -> encodings (…, T, d_model)."""
        return self.embedding(positions)


ROPE_SCALINGS = ("linear", "llama3")


def rope_frequencies(d_head: int, base: float = 10000.0, scaling: Mapping[str, Any] | None = None) -> Tensor:
    """RoPE's ``theta_i = base^(-2i/d)``, ``i < d/2`` (Su et al. 2021, Eq. 15), optionally rescaled for contexts
    longer than the model was trained on. ``scaling`` takes Hugging Face's ``rope_scaling`` fields:

    * ``{"rope_type": "linear", "factor": s}``: position interpolation (Chen et al. 2023), every
      ``theta_i / s``, i.e. position ``m`` is read as ``m / s``.
    * ``{"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
      "original_max_position_embeddings"}`` (Llama 3.1): wavelengths longer than ``L / low_freq_factor`` are
      divided by ``factor``, shorter than ``L / high_freq_factor`` are kept, and those between are interpolated
      linearly in ``L / wavelength``.
    """
    theta = 1.0 / base ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (d/2,)
    kind = None if scaling is None else scaling.get("rope_type", scaling.get("type"))
    if scaling is None or kind in (None, "default"):
        return theta
    if kind not in ROPE_SCALINGS:
        raise ValueError(f"rope scaling {kind!r} is not supported: choose {', '.join(ROPE_SCALINGS)}")
    factor = float(scaling["factor"])
    if kind == "linear":
        return theta / factor
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    trained = float(scaling["original_max_position_embeddings"])
    wavelength = 2 * math.pi / theta
    smooth = ((trained / wavelength - low) / (high - low)).clamp(0.0, 1.0)  # 0: long wavelength, 1: short
    return (1 - smooth) * theta / factor + smooth * theta


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): rotate each pair of query/key features by an angle ``pos * theta_i``.

    ``q_m . k_n`` then depends on ``m - n`` only. Uses the half-split pairing of GPT-NeoX / LLaMA
    (feature ``i`` pairs with ``i + d/2``). ``base`` is Llama's ``rope_theta``; ``scaling`` as
    :func:`rope_frequencies`.

    With ``x = [x1, x2]`` (the two halves) the rotation is ``[x1 cos - x2 sin, x2 cos + x1 sin]``, computed as
    ``x * cos + [x2, x1] * [-sin, sin]``: the sign lives in the ``sin`` buffer, so a call is three operations
    (a concatenation, a product, a fused multiply-add), not five; :class:`~tinyformers.core.attention.
    MultiHeadAttention` rotates queries and keys in one call. (That did not change the step's time measurably on
    the AVX2 host, ``benchmarks/step_ab.py``: what rotary cost there was fresh memory faulted in every step, see
    :func:`tinyformers.engine.accel.keep_freed_memory`.)
    """

    cos: Tensor  # (max_len, d_head) buffers: cos of the angles, and sin with its first half negated
    sin: Tensor

    def __init__(
        self, d_head: int, max_len: int = 4096, base: float = 10000.0, scaling: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        if d_head % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {d_head}")
        inv_freq = rope_frequencies(d_head, base, scaling)  # (d/2,)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, d/2)
        self.register_buffer("cos", torch.cat([angles.cos(), angles.cos()], dim=-1), persistent=False)
        self.register_buffer("sin", torch.cat([-angles.sin(), angles.sin()], dim=-1), persistent=False)

    def forward(self, x: Tensor, offset: int = 0, seq_dim: int = -2) -> Tensor:
        """Rotate ``x`` whose first position is ``offset``: ``(..., T, d_head)`` (``seq_dim=-2``, e.g.
        ``(B, H, T, d_head)``) or ``(..., T, heads, d_head)`` (``seq_dim=-3``, heads not yet moved forward)."""
        if seq_dim not in (-2, -3):
            raise ValueError(f"seq_dim={seq_dim}: -2 (..., T, d_head) or -3 (..., T, heads, d_head)")
        t = x.size(seq_dim)
        if offset + t > self.cos.size(0):  # a short slice would broadcast one angle over several positions
            raise ValueError(f"sequence of {offset + t} positions is longer than max_len={self.cos.size(0)}")
        cos, sin = self.cos[offset : offset + t].to(x.dtype), self.sin[offset : offset + t].to(x.dtype)
        if seq_dim == -3:
            cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (T, 1, d_head): the same angle for every head
        x1, x2 = x.chunk(2, dim=-1)
        return torch.addcmul(x * cos, torch.cat([x2, x1], dim=-1), sin)


def make_positions(kind: str, max_len: int, d_model: int) -> nn.Module | None:
    """The additive encoding for ``kind`` ('learned', 'sinusoidal'); None for 'rotary' and 'none'."""
    if kind == "learned":
        return LearnedPositions(max_len, d_model)
    if kind == "sinusoidal":
        return SinusoidalPositions(max_len, d_model)
    if kind in ("rotary", "none"):
        return None
    raise ValueError(f"unknown positions {kind!r}: choose learned, sinusoidal, rotary or none")
